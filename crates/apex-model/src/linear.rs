//! The projections of a decoder layer (q, k, v, o, gate, up, down) in the forms
//! the training methods need: a dense weight (trainable or frozen) and a LoRA
//! adapter on a frozen weight. Every form maps `x` (`[T, in]`) to `x·Wᵀ`
//! (`[T, out]`) for some effective `W` (`[out, in]`, nn.Linear convention) and
//! can be folded back into a plain dense weight for export.

use crate::grads::Gradients;
use crate::params::{elem, ParamGroup, ParamVisitor};
use apex_core::ops::{self, dims2, gemm_into, one, zero};
use apex_core::{Backend, MatView, Result};

/// A dense `[out, in]` weight. A frozen one never gets a weight gradient.
#[derive(Clone, Debug)]
pub struct Dense<B: Backend> {
    pub weight: B::Tensor,
    pub trainable: bool,
}

/// LoRA on a frozen base: `W_eff = W + scale·B·A` with `A`: `[r, in]` (random
/// init) and `B`: `[out, r]` (zero init, so training starts at the base model),
/// `scale = alpha / r`.
#[derive(Clone, Debug)]
pub struct Lora<B: Backend> {
    pub base: B::Tensor,
    pub lora_a: B::Tensor,
    pub lora_b: B::Tensor,
    pub scale: f64,
}

/// One projection of a decoder layer.
#[derive(Clone, Debug)]
pub enum Linear<B: Backend> {
    Dense(Dense<B>),
    Lora(Lora<B>),
}

/// What the backward of a [`Linear`] needs from its forward.
#[derive(Clone, Debug)]
pub struct LinearCache<B: Backend> {
    input: B::Tensor,
    /// LoRA only: `x·Aᵀ` (`[T, r]`).
    lora_hidden: Option<B::Tensor>,
}

fn xw_t<B: Backend>(backend: &B, x: &B::Tensor, w: &B::Tensor) -> Result<B::Tensor> {
    let xv = ops::full(backend, x, "linear.x")?;
    let wv = ops::full(backend, w, "linear.weight")?;
    ops::matmul(backend, x, xv, w, wv.t())
}

/// `slot += α·Gᵀ·X`: the weight gradient of `y = x·Wᵀ` for output gradient `G`.
fn accumulate_weight_grad<B: Backend>(
    backend: &B,
    grads: &mut Gradients<B>,
    name: &str,
    alpha: B::Elem,
    grad_out: &B::Tensor,
    input: &B::Tensor,
) -> Result<()> {
    let gv = ops::full(backend, grad_out, "linear.grad_out")?;
    let xv = ops::full(backend, input, "linear.x")?;
    let slot = grads.slot(backend, name, &[gv.cols, xv.cols])?;
    gemm_into(
        backend,
        alpha,
        grad_out,
        gv.t(),
        input,
        xv,
        one::<B>(),
        slot,
        MatView::full(gv.cols, xv.cols),
    )
}

impl<B: Backend> Linear<B> {
    /// A dense projection.
    pub fn dense(weight: B::Tensor, trainable: bool) -> Self {
        Linear::Dense(Dense { weight, trainable })
    }

    /// `(out, in)` of the effective weight.
    pub fn dims(&self, backend: &B) -> Result<(usize, usize)> {
        match self {
            Linear::Dense(d) => dims2(backend, &d.weight, "linear.weight"),
            Linear::Lora(l) => dims2(backend, &l.base, "lora.base"),
        }
    }

    /// `y = x·W_effᵀ` (`[T, out]`) and the cache for [`Linear::backward`].
    pub fn forward(&self, backend: &B, x: &B::Tensor) -> Result<(B::Tensor, LinearCache<B>)> {
        match self {
            Linear::Dense(d) => Ok((
                xw_t(backend, x, &d.weight)?,
                LinearCache {
                    input: x.clone(),
                    lora_hidden: None,
                },
            )),
            Linear::Lora(l) => {
                let mut y = xw_t(backend, x, &l.base)?;
                let hidden = xw_t(backend, x, &l.lora_a)?;
                let hv = ops::full(backend, &hidden, "lora.hidden")?;
                let bv = ops::full(backend, &l.lora_b, "lora.b")?;
                let yv = ops::full(backend, &y, "lora.y")?;
                gemm_into(
                    backend,
                    elem::<B>(l.scale),
                    &hidden,
                    hv,
                    &l.lora_b,
                    bv.t(),
                    one::<B>(),
                    &mut y,
                    yv,
                )?;
                Ok((
                    y,
                    LinearCache {
                        input: x.clone(),
                        lora_hidden: Some(hidden),
                    },
                ))
            }
        }
    }

    /// Backward of [`Linear::forward`] for output gradient `grad_out` (`[T, out]`).
    /// Adds the gradients of this projection's trainable tensors to `grads`
    /// under `name.<tensor>`; returns `∂L/∂x` (`[T, in]`) when `need_grad_x`.
    pub fn backward(
        &self,
        backend: &B,
        cache: &LinearCache<B>,
        grad_out: &B::Tensor,
        name: &str,
        grads: &mut Gradients<B>,
        need_grad_x: bool,
    ) -> Result<Option<B::Tensor>> {
        let gv = ops::full(backend, grad_out, "linear.grad_out")?;
        match self {
            Linear::Dense(d) => {
                if d.trainable {
                    let slot_name = format!("{name}.weight");
                    accumulate_weight_grad(
                        backend,
                        grads,
                        &slot_name,
                        one::<B>(),
                        grad_out,
                        &cache.input,
                    )?;
                }
                if !need_grad_x {
                    return Ok(None);
                }
                let wv = ops::full(backend, &d.weight, "linear.weight")?;
                Ok(Some(ops::matmul(backend, grad_out, gv, &d.weight, wv)?))
            }
            Linear::Lora(l) => {
                let scale = elem::<B>(l.scale);
                let hidden = cache.lora_hidden.as_ref().ok_or_else(|| {
                    apex_core::ApexError::config(
                        "lora.cache",
                        "forward cache has no LoRA hidden state",
                    )
                })?;
                accumulate_weight_grad(
                    backend,
                    grads,
                    &format!("{name}.lora_B"),
                    scale,
                    grad_out,
                    hidden,
                )?;
                let bv = ops::full(backend, &l.lora_b, "lora.b")?;
                let mut grad_hidden = backend.zeros(&[gv.rows, bv.cols])?;
                let ghv = MatView::full(gv.rows, bv.cols);
                gemm_into(
                    backend,
                    scale,
                    grad_out,
                    gv,
                    &l.lora_b,
                    bv,
                    zero::<B>(),
                    &mut grad_hidden,
                    ghv,
                )?;
                accumulate_weight_grad(
                    backend,
                    grads,
                    &format!("{name}.lora_A"),
                    one::<B>(),
                    &grad_hidden,
                    &cache.input,
                )?;
                if !need_grad_x {
                    return Ok(None);
                }
                let wv = ops::full(backend, &l.base, "lora.base")?;
                let mut gx = ops::matmul(backend, grad_out, gv, &l.base, wv)?;
                let av = ops::full(backend, &l.lora_a, "lora.a")?;
                let gxv = ops::full(backend, &gx, "lora.grad_x")?;
                gemm_into(
                    backend,
                    one::<B>(),
                    &grad_hidden,
                    ghv,
                    &l.lora_a,
                    av,
                    one::<B>(),
                    &mut gx,
                    gxv,
                )?;
                Ok(Some(gx))
            }
        }
    }

    /// The plain dense weight this projection computes with (LoRA merged:
    /// `W + scale·B·A`), for export and for converting to another method.
    pub fn dense_weight(&self, backend: &B) -> Result<B::Tensor> {
        match self {
            Linear::Dense(d) => Ok(d.weight.clone()),
            Linear::Lora(l) => {
                let mut w =
                    ops::copy_view(backend, &l.base, ops::full(backend, &l.base, "lora.base")?)?;
                let wv = ops::full(backend, &w, "lora.base")?;
                let bv = ops::full(backend, &l.lora_b, "lora.b")?;
                let av = ops::full(backend, &l.lora_a, "lora.a")?;
                gemm_into(
                    backend,
                    elem::<B>(l.scale),
                    &l.lora_b,
                    bv,
                    &l.lora_a,
                    av,
                    one::<B>(),
                    &mut w,
                    wv,
                )?;
                Ok(w)
            }
        }
    }

    /// Offers each trainable tensor of this projection to `visit` as `name.<tensor>`.
    pub fn visit_trainable(&mut self, name: &str, visit: &mut ParamVisitor<'_, B>) -> Result<()> {
        match self {
            Linear::Dense(d) if d.trainable => {
                visit(&format!("{name}.weight"), ParamGroup::Decay, &mut d.weight)
            }
            Linear::Dense(_) => Ok(()),
            Linear::Lora(l) => {
                visit(&format!("{name}.lora_A"), ParamGroup::Decay, &mut l.lora_a)?;
                visit(&format!("{name}.lora_B"), ParamGroup::Decay, &mut l.lora_b)
            }
        }
    }
}
