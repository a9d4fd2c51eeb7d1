//! Causal grouped-query attention, composed from batched strided GEMMs and the
//! two softmax primitives of [`TransformerOps`].
//!
//! Query head `h` reads KV head `g = h / r` (`r = H / H_kv`). For a fixed
//! sequence `b` and a fixed position `j` inside the group, the heads
//! `h = g·r + j` (`g < H_kv`) sit at a constant stride in q, k, v and in the
//! score buffer, so one batched GEMM covers all KV groups and no k/v head is
//! ever copied or repeated.

use apex_core::ops::{one as elem_one, zero};
use apex_core::{BatchView, MatView, Result, TransformerOps};

/// The sizes of one attention call. Activations are `[T, width]` with
/// `T = batch·seq_len`; q and the context have width `heads·head_dim`, k and v
/// `kv_heads·head_dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub seq_len: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// `1/√d_h`, the score scale.
    pub fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }

    /// Query/context head `j, j+r, j+2r, …` of sequence `b` as a batch of
    /// `S×d_h` views, one per KV group.
    fn q_heads(&self, b: usize, j: usize) -> BatchView {
        let width = self.heads * self.head_dim;
        let s = self.seq_len;
        BatchView::strided(
            MatView {
                offset: b * s * width + j * self.head_dim,
                rows: s,
                cols: self.head_dim,
                row_stride: width,
                col_stride: 1,
            },
            self.group() * self.head_dim,
        )
    }

    /// KV head `g` of sequence `b` for every group `g`: a batch of `S×d_h` views.
    fn kv_heads(&self, b: usize) -> BatchView {
        let width = self.kv_heads * self.head_dim;
        let s = self.seq_len;
        BatchView::strided(
            MatView {
                offset: b * s * width,
                rows: s,
                cols: self.head_dim,
                row_stride: width,
                col_stride: 1,
            },
            self.head_dim,
        )
    }

    /// The `S×S` score matrices of heads `j, j+r, …` of sequence `b`.
    fn score_heads(&self, b: usize, j: usize) -> BatchView {
        let s = self.seq_len;
        BatchView::strided(
            MatView {
                offset: (b * self.heads + j) * s * s,
                ..MatView::full(s, s)
            },
            self.group() * s * s,
        )
    }
}

fn transpose(view: BatchView) -> BatchView {
    BatchView::strided(view.mat.t(), view.batch_stride)
}

/// Forward: `ctx[b, h] = P[b, h]·V[b, g(h)]` with
/// `P[b, h] = causal_softmax(Q[b, h]·K[b, g(h)]ᵀ / √d_h)`.
/// q: `[T, H·d_h]`, k, v: `[T, H_kv·d_h]` (both after RoPE for q, k).
/// Returns the context `[T, H·d_h]` and the probabilities `[B·H, S, S]` that the
/// backward needs.
pub fn attention_forward<B: TransformerOps>(
    backend: &B,
    shape: &AttentionShape,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
) -> Result<(B::Tensor, B::Tensor)> {
    let (s, hkv) = (shape.seq_len, shape.kv_heads);
    let mut probs = backend.zeros(&[shape.batch * shape.heads, s, s])?;
    let mut ctx = backend.zeros(&[shape.batch * s, shape.heads * shape.head_dim])?;
    for b in 0..shape.batch {
        for j in 0..shape.group() {
            backend.gemm(
                hkv,
                elem_one::<B>(),
                q,
                shape.q_heads(b, j),
                k,
                transpose(shape.kv_heads(b)),
                zero::<B>(),
                &mut probs,
                shape.score_heads(b, j),
            )?;
        }
    }
    backend.causal_softmax(&mut probs, shape.scale())?;
    for b in 0..shape.batch {
        for j in 0..shape.group() {
            backend.gemm(
                hkv,
                elem_one::<B>(),
                &probs,
                shape.score_heads(b, j),
                v,
                shape.kv_heads(b),
                zero::<B>(),
                &mut ctx,
                shape.q_heads(b, j),
            )?;
        }
    }
    Ok((ctx, probs))
}

/// Backward of [`attention_forward`] for the context gradient `grad_ctx`
/// (`[T, H·d_h]`). Returns `(∂q, ∂k, ∂v)` with the shapes of q, k, v; the k and
/// v gradients sum over the `r` query heads of each group.
pub fn attention_backward<B: TransformerOps>(
    backend: &B,
    shape: &AttentionShape,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
    probs: &B::Tensor,
    grad_ctx: &B::Tensor,
) -> Result<(B::Tensor, B::Tensor, B::Tensor)> {
    let (s, hkv) = (shape.seq_len, shape.kv_heads);
    let rows = shape.batch * s;
    let mut grad_scores = backend.zeros(&[shape.batch * shape.heads, s, s])?;
    let mut gq = backend.zeros(&[rows, shape.heads * shape.head_dim])?;
    let mut gk = backend.zeros(&[rows, hkv * shape.head_dim])?;
    let mut gv = backend.zeros(&[rows, hkv * shape.head_dim])?;
    let accumulate = |j: usize| if j == 0 { zero::<B>() } else { elem_one::<B>() };
    for b in 0..shape.batch {
        for j in 0..shape.group() {
            // ∂P = ∂ctx·Vᵀ and ∂V += Pᵀ·∂ctx
            backend.gemm(
                hkv,
                elem_one::<B>(),
                grad_ctx,
                shape.q_heads(b, j),
                v,
                transpose(shape.kv_heads(b)),
                zero::<B>(),
                &mut grad_scores,
                shape.score_heads(b, j),
            )?;
            backend.gemm(
                hkv,
                elem_one::<B>(),
                probs,
                transpose(shape.score_heads(b, j)),
                grad_ctx,
                shape.q_heads(b, j),
                accumulate(j),
                &mut gv,
                shape.kv_heads(b),
            )?;
        }
    }
    backend.softmax_backward(probs, &mut grad_scores, shape.scale())?;
    for b in 0..shape.batch {
        for j in 0..shape.group() {
            // ∂Q = ∂S·K and ∂K += ∂Sᵀ·Q
            backend.gemm(
                hkv,
                elem_one::<B>(),
                &grad_scores,
                shape.score_heads(b, j),
                k,
                shape.kv_heads(b),
                zero::<B>(),
                &mut gq,
                shape.q_heads(b, j),
            )?;
            backend.gemm(
                hkv,
                elem_one::<B>(),
                &grad_scores,
                transpose(shape.score_heads(b, j)),
                q,
                shape.q_heads(b, j),
                accumulate(j),
                &mut gk,
                shape.kv_heads(b),
            )?;
        }
    }
    Ok((gq, gk, gv))
}
