//! MixRowLinear (spec §4.3, gradients §5.3): the input-side expansion used for
//! down_proj and o_proj. It has no `mixer_scale`; M and v are the partner
//! column modules' (shared [`Mixer`]).
//!
//! Computed in the input-side form (spec §4.3), which acts on T×k activations
//! instead of rebuilding the n_out×k weight on every call. With input columns
//! [D | A | E | F] and U = W[:, 0:t] + S:
//!
//! ```text
//! mix = true  : X'_D = X_D ⊙ v     X'_A = X_A + X_D·M
//! mix = false : X'_D = X_D ⊙ v     X'_A = X_A + X_A·M
//! out = [X'_D | X'_A | X_E]·Uᵀ + X_F·W[:, t:]ᵀ + β
//! ```
//! which equals `X·Ŵᵀ + β` for the reference's materialised weight Ŵ.

use crate::backend::{Backend, ScaledColumns};
use crate::error::{ApexError, Result};
use crate::layout::MatView;
use crate::mixer::{Mixer, MixerGrads};
use crate::ops::{self, one, zero};
use crate::split_linear::{SplitAxis, SplitLinear};

/// An input-side APEX module over a weight n_out×n_in.
#[derive(Clone, Debug)]
pub struct MixRow<B: Backend> {
    /// Columns [0, t) trainable (their gradient is ∂S), the rest frozen.
    pub linear: SplitLinear<B>,
    k: usize,
    mix_channels: bool,
}

/// What the backward needs from the forward.
#[derive(Clone, Debug)]
pub struct MixRowCache<B: Backend> {
    x: B::Tensor,
    /// X' restricted to the tuned columns, T×t.
    x_mixed: B::Tensor,
    /// Intermediate of the transposed Monarch apply in the forward, T×k.
    mixed_mid: B::Tensor,
}

impl<B: Backend> MixRow<B> {
    /// Wraps `weight` (n_out×n_in, columns permuted to [D|A|E|rest]).
    pub fn new(
        backend: &B,
        weight: &B::Tensor,
        bias: Option<B::Tensor>,
        k: usize,
        t: usize,
        mix_channels: bool,
    ) -> Result<Self> {
        if k == 0 || 2 * k > t {
            return Err(ApexError::config(
                "mix_row.k",
                format!("need 0 < 2k ≤ t, got k = {k}, t = {t}"),
            ));
        }
        let linear = SplitLinear::new(backend, weight, bias, SplitAxis::Columns, t)?;
        Ok(MixRow {
            linear,
            k,
            mix_channels,
        })
    }

    /// k, the size of D and of A.
    pub fn half(&self) -> usize {
        self.k
    }

    fn check(
        &self,
        backend: &B,
        mixer: &Mixer<B>,
        x: &B::Tensor,
        op: &'static str,
    ) -> Result<usize> {
        if mixer.size() != self.k {
            return Err(ApexError::shape(op, &[self.k], &[mixer.size()]));
        }
        let (rows, cols) = ops::dims2(backend, x, op)?;
        let (_, n_in) = self.linear.dims();
        if cols != n_in {
            return Err(ApexError::shape(op, &[rows, n_in], &[rows, cols]));
        }
        Ok(rows)
    }

    /// The column that feeds the Monarch in the input-side form: D when mixing
    /// channels, A otherwise.
    fn mixed_source(&self, view: MatView) -> MatView {
        let k = self.k;
        if self.mix_channels {
            view.columns(0..k)
        } else {
            view.columns(k..2 * k)
        }
    }

    /// out (T×n_out) for x (T×n_in), and the cache for [`Self::backward`].
    pub fn forward(
        &self,
        backend: &B,
        mixer: &Mixer<B>,
        x: &B::Tensor,
    ) -> Result<(B::Tensor, MixRowCache<B>)> {
        let rows = self.check(backend, mixer, x, "mix_row.forward")?;
        let k = self.k;
        let t = self.linear.tuned_size();
        let (_, n_in) = self.linear.dims();
        let x_view = MatView::full(rows, n_in);
        // X' = [X_D ⊙ v | X_A | X_E], then the Monarch mix is added to A.
        let mut x_mixed = backend.empty(&[rows, t])?;
        let xm_view = MatView::full(rows, t);
        backend.axpby(
            one::<B>(),
            x,
            x_view.columns(k..t),
            zero::<B>(),
            &mut x_mixed,
            xm_view.columns(k..t),
        )?;
        backend.scale_columns(
            x,
            x_view.columns(0..k),
            &mixer.mixer_vec,
            0,
            zero::<B>(),
            &mut x_mixed,
            xm_view.columns(0..k),
        )?;
        let mixed_mid = mixer.monarch.apply_transposed_into(
            backend,
            x,
            self.mixed_source(x_view),
            one::<B>(),
            &mut x_mixed,
            xm_view.columns(k..2 * k),
        )?;
        let out = self.linear.forward_parts(
            backend,
            (&x_mixed, xm_view),
            (x, x_view.columns(t..n_in)),
        )?;
        Ok((
            out,
            MixRowCache {
                x: x.clone(),
                x_mixed,
                mixed_mid,
            },
        ))
    }

    /// Backward for output gradient `g` (T×n_out): returns ∂S (n_out×t) and ∂x
    /// (if `need_grad_x`), and adds ∂v, ∂W1, ∂W2 into `shared`.
    pub fn backward(
        &self,
        backend: &B,
        mixer: &Mixer<B>,
        cache: &MixRowCache<B>,
        g: &B::Tensor,
        shared: &mut MixerGrads<B>,
        need_grad_x: bool,
    ) -> Result<(B::Tensor, Option<B::Tensor>)> {
        let rows = self.check(backend, mixer, &cache.x, "mix_row.backward")?;
        let (n_out, n_in) = self.linear.dims();
        ops::expect_shape(backend, g, &[rows, n_out], "mix_row.backward")?;
        let k = self.k;
        let t = self.linear.tuned_size();
        let g_view = MatView::full(rows, n_out);
        let x_view = MatView::full(rows, n_in);
        let xm_view = MatView::full(rows, t);

        let grad_s2 = self
            .linear
            .tuned_grad(backend, (g, g_view), (&cache.x_mixed, xm_view))?;
        // P = G·U = [P_D | P_A | P_E], T×t.
        let p = self.linear.tuned_input_grad(backend, (g, g_view))?;
        let (p_d, p_a) = (xm_view.columns(0..k), xm_view.columns(k..2 * k));

        backend.column_dot(
            &cache.x,
            x_view.columns(0..k),
            &p,
            p_d,
            one::<B>(),
            &mut shared.mixer_vec,
            0,
        )?;

        // ∂X[:, 0:t] = [P_D ⊙ v | P_A | P_E] plus P_A·Mᵀ on the mixed source.
        let mut grad_x = backend.empty(&[rows, n_in])?;
        backend.axpby(
            one::<B>(),
            &p,
            xm_view.columns(k..t),
            zero::<B>(),
            &mut grad_x,
            x_view.columns(k..t),
        )?;
        let p_a_stage1 = if self.mix_channels {
            let scaled_d = ScaledColumns {
                y: &p,
                view: p_d,
                scale: &mixer.mixer_vec,
            };
            mixer.monarch.add_scaled_into(
                backend,
                false,
                &p,
                p_a,
                scaled_d,
                zero::<B>(),
                &mut grad_x,
                x_view.columns(0..k),
            )?
        } else {
            backend.scale_columns(
                &p,
                p_d,
                &mixer.mixer_vec,
                0,
                zero::<B>(),
                &mut grad_x,
                x_view.columns(0..k),
            )?;
            mixer.monarch.forward_into(
                backend,
                &p,
                p_a,
                one::<B>(),
                &mut grad_x,
                x_view.columns(k..2 * k),
            )?
        };
        // The transposed apply X_src ↦ X_src·M with output gradient P_A has the
        // factor gradients of the forward with input P_A and gradient X_src.
        mixer.monarch.accumulate_grads(
            backend,
            &p,
            p_a,
            &p_a_stage1,
            &cache.x,
            self.mixed_source(x_view),
            &cache.mixed_mid,
            one::<B>(),
            &mut shared.monarch,
        )?;
        let grad_x = if need_grad_x {
            self.linear
                .frozen_input_grad_into(backend, (g, g_view), &mut grad_x)?;
            Some(grad_x)
        } else {
            None
        };
        Ok((grad_s2, grad_x))
    }

    /// The fused dense weight (n_out×n_in); the bias is unchanged (it is not mixed
    /// on the row side).
    pub fn fuse(&self, backend: &B, mixer: &Mixer<B>) -> Result<(B::Tensor, Option<B::Tensor>)> {
        if mixer.size() != self.k {
            return Err(ApexError::shape("mix_row.fuse", &[self.k], &[mixer.size()]));
        }
        let k = self.k;
        let weight = self.linear.dense_weight(backend)?;
        let (n_out, n_in) = self.linear.dims();
        let view = MatView::full(n_out, n_in);
        let original = ops::copy_view(backend, &weight, view.columns(0..2 * k))?;
        let o_view = MatView::full(n_out, 2 * k);
        let mut fused = weight;
        backend.scale_columns(
            &original,
            o_view.columns(0..k),
            &mixer.mixer_vec,
            0,
            zero::<B>(),
            &mut fused,
            view.columns(0..k),
        )?;
        let target = if self.mix_channels {
            view.columns(0..k)
        } else {
            view.columns(k..2 * k)
        };
        mixer.monarch.forward_into(
            backend,
            &original,
            o_view.columns(k..2 * k),
            one::<B>(),
            &mut fused,
            target,
        )?;
        Ok((fused, self.linear.bias.clone()))
    }
}
