//! The fused row-wise primitives a LLaMA-family decoder needs beyond [`Backend`].
//!
//! Everything else a transformer does is already a base primitive: projections
//! and the attention products are [`Backend::gemm`] calls on strided views,
//! SwiGLU is [`Backend::unary`] + [`Backend::binary`], residual adds are
//! [`Backend::axpby`], and embedding lookup is [`Backend::gather_rows`]. What
//! remains are the ops whose every output element depends on a whole row (norms,
//! softmax, cross-entropy), the rotary embedding, the embedding scatter-add and
//! the optimizer update. Each one is small and fully specified here so a GPU
//! backend can implement it as one kernel.
//!
//! Conventions: activations are 2-D `[T, width]` with `T = batch·seq_len` rows,
//! sequence `b` occupying rows `[b·seq_len, (b+1)·seq_len)`; the position of row
//! `t` is `t mod seq_len`.

use crate::backend::Backend;
use crate::error::Result;

/// The label value that excludes a position from the loss (HF's `-100`).
pub const IGNORE_INDEX: i64 = -100;

/// Hyper-parameters of one AdamW update (decoupled weight decay, PyTorch's
/// `AdamW` / DeepSpeed `FusedAdam` in AdamW mode).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate of this step.
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled decay: `p ← p − lr·weight_decay·p` before the Adam update.
    pub weight_decay: f64,
    /// 1-based step count of this parameter's moments (for bias correction).
    pub step: u64,
    /// Multiplies the raw gradient before it enters the moments; global-norm
    /// clipping passes `min(1, max_norm / norm)` here so no scaled copy of the
    /// gradient is ever materialised.
    pub grad_scale: f64,
}

/// Transformer primitives on top of [`Backend`]. Shapes are in the `///` of each
/// method; every method validates them and returns an error instead of panicking.
pub trait TransformerOps: Backend {
    /// RMSNorm forward. `x`: `[T, d]`, `weight`: `[d]`.
    /// Returns `(y, inv_rms)` with `inv_rms[t] = 1/sqrt(mean_j x[t,j]² + eps)`
    /// (`[T]`, kept for the backward) and `y[t,j] = x[t,j]·inv_rms[t]·weight[j]`.
    fn rms_norm(
        &self,
        x: &Self::Tensor,
        weight: &Self::Tensor,
        eps: f64,
    ) -> Result<(Self::Tensor, Self::Tensor)>;

    /// RMSNorm backward. With `n[t,j] = x[t,j]·inv_rms[t]` and `g = grad_y ⊙ weight`:
    /// `grad_x[t,j] = inv_rms[t]·(g[t,j] − n[t,j]·mean_i(g[t,i]·n[t,i]))` (`[T, d]`).
    /// When `grad_weight` (`[d]`) is given, `Σ_t grad_y[t,j]·n[t,j]` is **added** to
    /// it; pass `None` for a frozen norm so no weight gradient is computed.
    fn rms_norm_backward(
        &self,
        x: &Self::Tensor,
        weight: &Self::Tensor,
        inv_rms: &Self::Tensor,
        grad_y: &Self::Tensor,
        grad_weight: Option<&mut Self::Tensor>,
    ) -> Result<Self::Tensor>;

    /// Rotary position embedding in place, HF LLaMA "rotate_half" layout.
    /// `x`: `[T, heads·head_dim]` (any number of heads). For each head, with
    /// `h = head_dim/2`, `i < h`, `pos = t mod seq_len` and
    /// `f = pos·theta^(−2i/head_dim)`:
    /// `x'[i] = x[i]·cos f − x[i+h]·sin f`, `x'[i+h] = x[i+h]·cos f + x[i]·sin f`.
    /// `inverse` rotates by `−f`: that is the backward (the rotation is orthogonal).
    fn rope(
        &self,
        x: &mut Self::Tensor,
        head_dim: usize,
        seq_len: usize,
        theta: f64,
        inverse: bool,
    ) -> Result<()>;

    /// Causal softmax in place over `scores`: `[n, S, S]` (n = batch·heads).
    /// Row `i` of each `S×S` matrix becomes `softmax_j(scale·scores[i, j])` over
    /// `j ≤ i`, and exactly 0 for `j > i` (the future is masked).
    fn causal_softmax(&self, scores: &mut Self::Tensor, scale: f64) -> Result<()>;

    /// Softmax backward in place: `grad` (`[n, S, S]`, holding ∂L/∂P on entry)
    /// becomes ∂L/∂scores = `scale·P ⊙ (grad − rowsum(grad ⊙ P))`, where `probs` is
    /// the output `P` of [`TransformerOps::causal_softmax`] with the same `scale`.
    fn softmax_backward(
        &self,
        probs: &Self::Tensor,
        grad: &mut Self::Tensor,
        scale: f64,
    ) -> Result<()>;

    /// Token cross-entropy. `logits`: `[T, V]`, `labels`: `T` entries, each in
    /// `0..V` or [`IGNORE_INDEX`]. Returns `(Σ loss, count)` over the labelled
    /// rows (the sum is accumulated in f64) and, when `grad_scale` is given, the
    /// gradient `[T, V]`: `grad_scale·(softmax(logits[t]) − onehot(labels[t]))`
    /// on labelled rows and 0 on ignored rows. Callers pass `1/count` for a mean.
    #[allow(clippy::type_complexity)]
    fn cross_entropy(
        &self,
        logits: &Self::Tensor,
        labels: &[i64],
        grad_scale: Option<f64>,
    ) -> Result<(f64, usize, Option<Self::Tensor>)>;

    /// Embedding backward: `table[index[i], :] += rows[i, :]`. `rows`: `[n, d]`,
    /// `table`: `[V, d]`; repeated indices accumulate.
    fn scatter_add_rows(
        &self,
        rows: &Self::Tensor,
        index: &[usize],
        table: &mut Self::Tensor,
    ) -> Result<()>;

    /// One AdamW update in place, elementwise over equal-shaped `param`, `grad`,
    /// `m`, `v` (any shape). With `g = grad_scale·grad`:
    /// `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
    /// `p ← p − lr·wd·p − lr·(m/(1−β1^step)) / (sqrt(v/(1−β2^step)) + eps)`.
    fn adamw_step(
        &self,
        param: &mut Self::Tensor,
        grad: &Self::Tensor,
        m: &mut Self::Tensor,
        v: &mut Self::Tensor,
        step: &AdamWStep,
    ) -> Result<()>;
}
