//! MixColumnLinear (spec §4.2, gradients §5.2): the output-side expansion used
//! for gate, up and v_proj.
//!
//! Output rows are laid out [D (k) | A (k) | E (t−2k) | frozen]. With
//! Z = X·W̃[0:t]ᵀ + β[0:t] (W̃ = W + S):
//!
//! ```text
//! mix = true  : out_D = Z_D ⊙ v + Z_A·Mᵀ     out_A = Z_A ⊙ c
//! mix = false : out_D = Z_D ⊙ v             out_A = Z_A·Mᵀ + Z_A ⊙ c
//! out_E = Z_E,  out_F = X·W[t:]ᵀ + β[t:]
//! ```

use crate::backend::{Backend, ScaledColumns};
use crate::error::{ApexError, Result};
use crate::layout::MatView;
use crate::mixer::{Mixer, MixerGrads};
use crate::ops::{self, one, zero};
use crate::split_linear::{SplitAxis, SplitLinear};

/// An output-side APEX module over a weight n_out×n_in.
#[derive(Clone, Debug)]
pub struct MixColumn<B: Backend> {
    /// Rows [0, t) trainable (their gradient is ∂S), the rest frozen.
    pub linear: SplitLinear<B>,
    /// c, length k, ones at init (spec name `mixer_scale`; owned, not shared).
    pub mixer_scale: B::Tensor,
    k: usize,
    mix_channels: bool,
}

/// What the backward needs from the forward.
#[derive(Clone, Debug)]
pub struct MixColumnCache<B: Backend> {
    x: B::Tensor,
    /// [Z_D | Z_A], T×2k.
    z: B::Tensor,
    /// Monarch stage-1 output of Z_A, T×k.
    z_a_stage1: B::Tensor,
}

/// Gradients of a MixColumn's own parameters.
#[derive(Clone, Debug)]
pub struct MixColumnGrads<B: Backend> {
    /// ∂S = ∂tuned, t×n_in.
    pub s2: B::Tensor,
    /// ∂c, length k.
    pub mixer_scale: B::Tensor,
}

impl<B: Backend> MixColumn<B> {
    /// Wraps `weight` (n_out×n_in, already permuted to [D|A|E|rest]) with D = rows
    /// [0,k), A = [k,2k), E = [2k,t); c = 1.
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
                "mix_column.k",
                format!("need 0 < 2k ≤ t, got k = {k}, t = {t}"),
            ));
        }
        let linear = SplitLinear::new(backend, weight, bias, SplitAxis::Rows, t)?;
        Ok(MixColumn {
            linear,
            mixer_scale: ops::ones(backend, k)?,
            k,
            mix_channels,
        })
    }

    /// k, the size of D and of A.
    pub fn half(&self) -> usize {
        self.k
    }

    fn check_mixer(&self, mixer: &Mixer<B>) -> Result<()> {
        if mixer.size() != self.k {
            return Err(ApexError::shape(
                "mix_column.mixer",
                &[self.k],
                &[mixer.size()],
            ));
        }
        Ok(())
    }

    /// out (T×n_out) for x (T×n_in), and the cache for [`Self::backward`].
    pub fn forward(
        &self,
        backend: &B,
        mixer: &Mixer<B>,
        x: &B::Tensor,
    ) -> Result<(B::Tensor, MixColumnCache<B>)> {
        self.check_mixer(mixer)?;
        let k = self.k;
        let mut out = self.linear.forward(backend, x)?;
        let (rows, n_out) = ops::dims2(backend, &out, "mix_column.forward")?;
        let out_view = MatView::full(rows, n_out);
        let z = ops::copy_view(backend, &out, out_view.columns(0..2 * k))?;
        let z_view = MatView::full(rows, 2 * k);
        let (z_d, z_a) = (z_view.columns(0..k), z_view.columns(k..2 * k));
        let (out_d, out_a) = (out_view.columns(0..k), out_view.columns(k..2 * k));
        let v = &mixer.mixer_vec;
        let c = &self.mixer_scale;
        // The Monarch mix of Z_A lands on D (mixing channels) or on A, added
        // to that half's own scaled Z in the same pass.
        let (plain, mixed) = if self.mix_channels {
            ((z_a, c, out_a), (z_d, v, out_d))
        } else {
            ((z_d, v, out_d), (z_a, c, out_a))
        };
        backend.scale_columns(&z, plain.0, plain.1, 0, zero::<B>(), &mut out, plain.2)?;
        let scaled = ScaledColumns {
            y: &z,
            view: mixed.0,
            scale: mixed.1,
        };
        let z_a_stage1 = mixer.monarch.add_scaled_into(
            backend,
            false,
            &z,
            z_a,
            scaled,
            zero::<B>(),
            &mut out,
            mixed.2,
        )?;
        Ok((
            out,
            MixColumnCache {
                x: x.clone(),
                z,
                z_a_stage1,
            },
        ))
    }

    /// Backward for output gradient `g` (T×n_out): returns this module's own
    /// gradients and ∂x (if `need_grad_x`), and adds ∂v, ∂W1, ∂W2 into `shared`.
    /// The frozen rows never get a weight gradient.
    pub fn backward(
        &self,
        backend: &B,
        mixer: &Mixer<B>,
        cache: &MixColumnCache<B>,
        g: &B::Tensor,
        shared: &mut MixerGrads<B>,
        need_grad_x: bool,
    ) -> Result<(MixColumnGrads<B>, Option<B::Tensor>)> {
        self.check_mixer(mixer)?;
        let k = self.k;
        let t = self.linear.tuned_size();
        let (rows, n_out) = ops::dims2(backend, g, "mix_column.backward")?;
        let (want_out, _) = self.linear.dims();
        if n_out != want_out {
            return Err(ApexError::shape(
                "mix_column.backward",
                &[rows, want_out],
                &[rows, n_out],
            ));
        }
        let g_view = MatView::full(rows, n_out);
        let (g_d, g_a) = (g_view.columns(0..k), g_view.columns(k..2 * k));
        let z_view = MatView::full(rows, 2 * k);
        let (z_d, z_a) = (z_view.columns(0..k), z_view.columns(k..2 * k));
        let v = &mixer.mixer_vec;

        backend.column_dot(g, g_d, &cache.z, z_d, one::<B>(), &mut shared.mixer_vec, 0)?;
        let mut grad_c = backend.empty(&[k])?;
        backend.column_dot(g, g_a, &cache.z, z_a, zero::<B>(), &mut grad_c, 0)?;

        // ∂Z (T×t): G[:, 2k:t] for E; D and A below.
        let mut grad_z = backend.empty(&[rows, t])?;
        let gz_view = MatView::full(rows, t);
        if t > 2 * k {
            backend.axpby(
                one::<B>(),
                g,
                g_view.columns(2 * k..t),
                zero::<B>(),
                &mut grad_z,
                gz_view.columns(2 * k..t),
            )?;
        }
        backend.scale_columns(
            g,
            g_d,
            v,
            0,
            zero::<B>(),
            &mut grad_z,
            gz_view.columns(0..k),
        )?;
        let mixed_grad = if self.mix_channels { g_d } else { g_a };
        let scaled_a = ScaledColumns {
            y: g,
            view: g_a,
            scale: &self.mixer_scale,
        };
        let g_mid = mixer.monarch.add_scaled_into(
            backend,
            true,
            g,
            mixed_grad,
            scaled_a,
            zero::<B>(),
            &mut grad_z,
            gz_view.columns(k..2 * k),
        )?;
        mixer.monarch.accumulate_grads(
            backend,
            &cache.z,
            z_a,
            &cache.z_a_stage1,
            g,
            mixed_grad,
            &g_mid,
            one::<B>(),
            &mut shared.monarch,
        )?;

        let x_view = ops::full(backend, &cache.x, "mix_column.cache")?;
        let grad_s2 = self.linear.tuned_grad(
            backend,
            (&grad_z, gz_view.columns(0..t)),
            (&cache.x, x_view),
        )?;
        let grad_x = if need_grad_x {
            Some(self.linear.input_grad_rows(
                backend,
                (&grad_z, gz_view),
                (g, g_view.columns(t..n_out)),
            )?)
        } else {
            None
        };
        Ok((
            MixColumnGrads {
                s2: grad_s2,
                mixer_scale: grad_c,
            },
            grad_x,
        ))
    }

    /// The fused dense weight (n_out×n_in) and bias (spec §4.2, bias transformed
    /// like a weight column so fused forward == unfused forward).
    pub fn fuse(&self, backend: &B, mixer: &Mixer<B>) -> Result<(B::Tensor, Option<B::Tensor>)> {
        self.check_mixer(mixer)?;
        let weight = self.linear.dense_weight(backend)?;
        let (n_out, n_in) = self.linear.dims();
        let fused_weight =
            self.mix_rows(backend, mixer, &weight, MatView::full(n_out, n_in).t())?;
        let fused_bias = match &self.linear.bias {
            Some(bias) => {
                let row = backend.reshape(bias, &[1, n_out])?;
                let mixed = self.mix_rows(backend, mixer, &row, MatView::full(1, n_out))?;
                Some(backend.reshape(&mixed, &[n_out])?)
            }
            None => None,
        };
        Ok((fused_weight, fused_bias))
    }

    /// Applies the output-side mixing to the columns [0, 2k) of `view` of `src`
    /// (an r×n_out view whose columns are output channels) and returns `src` with
    /// them replaced, in `src`'s own layout.
    fn mix_rows(
        &self,
        backend: &B,
        mixer: &Mixer<B>,
        src: &B::Tensor,
        view: MatView,
    ) -> Result<B::Tensor> {
        let k = self.k;
        let original = ops::copy_view(backend, src, view.columns(0..2 * k))?;
        let o_view = MatView::full(view.rows, 2 * k);
        let mut out = src.clone();
        let (dst_d, dst_a) = (view.columns(0..k), view.columns(k..2 * k));
        backend.scale_columns(
            &original,
            o_view.columns(0..k),
            &mixer.mixer_vec,
            0,
            zero::<B>(),
            &mut out,
            dst_d,
        )?;
        backend.scale_columns(
            &original,
            o_view.columns(k..2 * k),
            &self.mixer_scale,
            0,
            zero::<B>(),
            &mut out,
            dst_a,
        )?;
        let target = if self.mix_channels { dst_d } else { dst_a };
        mixer.monarch.forward_into(
            backend,
            &original,
            o_view.columns(k..2 * k),
            one::<B>(),
            &mut out,
            target,
        )?;
        Ok(out)
    }
}
