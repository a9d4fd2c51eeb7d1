//! The projections of a decoder layer (q, k, v, o, gate, up, down) in the forms
//! the training methods need: a dense weight (trainable or frozen), a LoRA
//! adapter on a frozen weight, and the APEX expansion modules of apex-core
//! (S2, MixColumn, MixRow, and the GQA o_proj [`ReplicatedMixRow`]). Every form
//! maps `x` (`[T, in]`) to `x·W_effᵀ` (`[T, out]`) for some effective `W_eff`
//! (`[out, in]`, nn.Linear convention) and folds back into a plain dense weight.
//!
//! The APEX modules read the layer's shared [`Mixer`]; their backward adds the
//! mixer's gradients into the layer's [`MixerGrads`] (spec §5.4).

use crate::grads::Gradients;
use crate::params::{elem, ParamGroup, ParamVisitor};
use crate::replicated_mix_row::{ReplicatedCache, ReplicatedMixRow};
use apex_core::ops::{self, dims2, gemm_into, one, zero};
use apex_core::{
    ApexError, Backend, MatView, MixColumn, MixColumnCache, MixRow, MixRowCache, Mixer, MixerGrads,
    Result, S2Linear,
};

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
    /// Direct update of rows (q, k, v, gate, up) or columns (o, down) `[0, t)`.
    S2(S2Linear<B>),
    /// Output-side expansion (gate, up, v_proj).
    MixColumn(MixColumn<B>),
    /// Input-side expansion (down_proj).
    MixRow(MixRow<B>),
    /// Input-side expansion over the query-head replicas (o_proj).
    ReplicatedMixRow(ReplicatedMixRow<B>),
}

/// What the backward of a [`Linear`] needs from its forward.
#[derive(Clone, Debug)]
pub enum LinearCache<B: Backend> {
    /// Dense and S2: the input.
    Input(B::Tensor),
    /// LoRA: the input and `x·Aᵀ` (`[T, r]`).
    Lora {
        input: B::Tensor,
        hidden: B::Tensor,
    },
    MixColumn(MixColumnCache<B>),
    MixRow(MixRowCache<B>),
    ReplicatedMixRow(ReplicatedCache<B>),
}

/// The layer's shared mixer and the buffer its gradients accumulate in.
pub type SharedMixer<'a, B> = (&'a Mixer<B>, &'a mut MixerGrads<B>);

fn need_mixer<'a, B: Backend>(mixer: Option<&'a Mixer<B>>, name: &str) -> Result<&'a Mixer<B>> {
    mixer.ok_or_else(|| {
        ApexError::config(
            name.to_string(),
            "an APEX module needs its layer's shared mixer",
        )
    })
}

fn mismatched_cache(name: &str) -> ApexError {
    ApexError::config(
        name.to_string(),
        "backward cache does not match the projection",
    )
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
            Linear::S2(m) => Ok(m.linear.dims()),
            Linear::MixColumn(m) => Ok(m.linear.dims()),
            Linear::MixRow(m) => Ok(m.linear.dims()),
            Linear::ReplicatedMixRow(m) => {
                let (out, per_replica) = m.replicas[0].linear.dims();
                Ok((out, per_replica * m.replicas.len()))
            }
        }
    }

    /// True for the APEX forms that read the layer's shared mixer.
    pub fn uses_mixer(&self) -> bool {
        matches!(
            self,
            Linear::MixColumn(_) | Linear::MixRow(_) | Linear::ReplicatedMixRow(_)
        )
    }

    /// `y = x·W_effᵀ` (`[T, out]`) and the cache for [`Linear::backward`];
    /// `mixer` is the layer's shared mixer (required by the Mix forms).
    pub fn forward(
        &self,
        backend: &B,
        mixer: Option<&Mixer<B>>,
        x: &B::Tensor,
    ) -> Result<(B::Tensor, LinearCache<B>)> {
        match self {
            Linear::Dense(d) => Ok((xw_t(backend, x, &d.weight)?, LinearCache::Input(x.clone()))),
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
                    LinearCache::Lora {
                        input: x.clone(),
                        hidden,
                    },
                ))
            }
            Linear::S2(m) => Ok((m.forward(backend, x)?, LinearCache::Input(x.clone()))),
            Linear::MixColumn(m) => {
                let (y, c) = m.forward(backend, need_mixer(mixer, "mix_column")?, x)?;
                Ok((y, LinearCache::MixColumn(c)))
            }
            Linear::MixRow(m) => {
                let (y, c) = m.forward(backend, need_mixer(mixer, "mix_row")?, x)?;
                Ok((y, LinearCache::MixRow(c)))
            }
            Linear::ReplicatedMixRow(m) => {
                let (y, c) = m.forward(backend, need_mixer(mixer, "o_proj")?, x)?;
                Ok((y, LinearCache::ReplicatedMixRow(c)))
            }
        }
    }

    /// Backward of [`Linear::forward`] for output gradient `grad_out` (`[T, out]`).
    /// Adds the gradients of this projection's trainable tensors to `grads`
    /// under `name.<tensor>` (`weight`, `lora_A`, `lora_B`, `s2`,
    /// `mixer_scale`, `replica{j}.s2`) and the shared mixer's into `shared`;
    /// returns `∂L/∂x` (`[T, in]`) when `need_grad_x`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        backend: &B,
        shared: Option<SharedMixer<'_, B>>,
        cache: &LinearCache<B>,
        grad_out: &B::Tensor,
        name: &str,
        grads: &mut Gradients<B>,
        need_grad_x: bool,
    ) -> Result<Option<B::Tensor>> {
        let gv = ops::full(backend, grad_out, "linear.grad_out")?;
        match (self, cache) {
            (Linear::Dense(d), LinearCache::Input(input)) => {
                if d.trainable {
                    let slot_name = format!("{name}.weight");
                    accumulate_weight_grad(
                        backend,
                        grads,
                        &slot_name,
                        one::<B>(),
                        grad_out,
                        input,
                    )?;
                }
                if !need_grad_x {
                    return Ok(None);
                }
                let wv = ops::full(backend, &d.weight, "linear.weight")?;
                Ok(Some(ops::matmul(backend, grad_out, gv, &d.weight, wv)?))
            }
            (Linear::Lora(l), LinearCache::Lora { input, hidden }) => {
                let scale = elem::<B>(l.scale);
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
                    input,
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
            (Linear::S2(m), LinearCache::Input(input)) => {
                let (grad_s2, gx) = m.backward(backend, input, grad_out, need_grad_x)?;
                grads.accumulate(backend, &format!("{name}.s2"), &grad_s2)?;
                Ok(gx)
            }
            (Linear::MixColumn(m), LinearCache::MixColumn(c)) => {
                let (mixer, mixer_grads) = shared.ok_or_else(|| mismatched_cache(name))?;
                let (own, gx) =
                    m.backward(backend, mixer, c, grad_out, mixer_grads, need_grad_x)?;
                grads.accumulate(backend, &format!("{name}.s2"), &own.s2)?;
                grads.accumulate(backend, &format!("{name}.mixer_scale"), &own.mixer_scale)?;
                Ok(gx)
            }
            (Linear::MixRow(m), LinearCache::MixRow(c)) => {
                let (mixer, mixer_grads) = shared.ok_or_else(|| mismatched_cache(name))?;
                let (grad_s2, gx) =
                    m.backward(backend, mixer, c, grad_out, mixer_grads, need_grad_x)?;
                grads.accumulate(backend, &format!("{name}.s2"), &grad_s2)?;
                Ok(gx)
            }
            (Linear::ReplicatedMixRow(m), LinearCache::ReplicatedMixRow(c)) => {
                let (mixer, mixer_grads) = shared.ok_or_else(|| mismatched_cache(name))?;
                let (grad_s2, gx) =
                    m.backward(backend, mixer, c, grad_out, mixer_grads, need_grad_x)?;
                for (j, g) in grad_s2.iter().enumerate() {
                    grads.accumulate(backend, &format!("{name}.replica{j}.s2"), g)?;
                }
                Ok(gx)
            }
            _ => Err(mismatched_cache(name)),
        }
    }

    /// The plain dense weight this projection computes with (LoRA merged, APEX
    /// modules fused exactly with `mixer`), for export and for the next stage.
    pub fn dense_weight(&self, backend: &B, mixer: Option<&Mixer<B>>) -> Result<B::Tensor> {
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
            Linear::S2(m) => Ok(m.fuse(backend)?.0),
            Linear::MixColumn(m) => Ok(m.fuse(backend, need_mixer(mixer, "mix_column")?)?.0),
            Linear::MixRow(m) => Ok(m.fuse(backend, need_mixer(mixer, "mix_row")?)?.0),
            Linear::ReplicatedMixRow(m) => m.fuse(backend, need_mixer(mixer, "o_proj")?),
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
            Linear::S2(m) => visit(
                &format!("{name}.s2"),
                ParamGroup::Decay,
                &mut m.linear.tuned,
            ),
            Linear::MixColumn(m) => {
                visit(
                    &format!("{name}.s2"),
                    ParamGroup::Decay,
                    &mut m.linear.tuned,
                )?;
                visit(
                    &format!("{name}.mixer_scale"),
                    ParamGroup::Decay,
                    &mut m.mixer_scale,
                )
            }
            Linear::MixRow(m) => visit(
                &format!("{name}.s2"),
                ParamGroup::Decay,
                &mut m.linear.tuned,
            ),
            Linear::ReplicatedMixRow(m) => {
                for (j, r) in m.replicas.iter_mut().enumerate() {
                    visit(
                        &format!("{name}.replica{j}.s2"),
                        ParamGroup::Decay,
                        &mut r.linear.tuned,
                    )?;
                }
                Ok(())
            }
        }
    }
}
