//! One decoder layer: pre-norm GQA self-attention with RoPE, then a pre-norm
//! SwiGLU FFN, each added to the residual stream. Forward keeps what the
//! backward needs; backward adds trainable gradients to [`Gradients`] and skips
//! every frozen weight gradient.

use crate::attention::{attention_backward, attention_forward, AttentionShape};
use crate::cv::coefficient_of_variation_grad;
use crate::grads::Gradients;
use crate::linear::{Linear, LinearCache};
use crate::params::{ParamGroup, ParamVisitor};
use apex_core::ops::{self, one, zero};
use apex_core::recorder;
use apex_core::{Backend, BinaryOp, Mixer, MixerGrads, Result, TransformerOps, UnaryOp};

/// A tensor plus whether the optimizer may change it.
#[derive(Clone, Debug)]
pub struct Param<B: Backend> {
    pub value: B::Tensor,
    pub trainable: bool,
}

/// The weights of decoder layer `ℓ` (HF names `model.layers.ℓ.*`).
#[derive(Clone, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// `input_layernorm.weight`: `[d]`.
    pub input_norm: Param<B>,
    /// `self_attn.q_proj`: `[H·d_h, d]`.
    pub q_proj: Linear<B>,
    /// `self_attn.k_proj`: `[H_kv·d_h, d]`.
    pub k_proj: Linear<B>,
    /// `self_attn.v_proj`: `[H_kv·d_h, d]`.
    pub v_proj: Linear<B>,
    /// `self_attn.o_proj`: `[d, H·d_h]`.
    pub o_proj: Linear<B>,
    /// `post_attention_layernorm.weight`: `[d]`.
    pub post_attention_norm: Param<B>,
    /// `mlp.gate_proj`: `[N, d]`.
    pub gate_proj: Linear<B>,
    /// `mlp.up_proj`: `[N, d]`.
    pub up_proj: Linear<B>,
    /// `mlp.down_proj`: `[d, N]`.
    pub down_proj: Linear<B>,
    /// APEX: the Monarch + `mixer_vec` shared by v_proj and o_proj.
    pub attn_mixer: Option<Mixer<B>>,
    /// APEX: the Monarch + `mixer_vec` shared by gate, up and down.
    pub ffn_mixer: Option<Mixer<B>>,
}

/// Sizes a layer needs at run time.
#[derive(Clone, Copy, Debug)]
pub struct LayerDims {
    pub attention: AttentionShape,
    pub rope_theta: f64,
    pub rms_eps: f64,
}

/// Per-forward activation norms, the raw material of APEX scoring (spec §2).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerStats {
    /// `‖SiLU(x·W_gᵀ)[:, j]‖₂` over all rows, per FFN channel (`N`).
    pub ffn_norms: Vec<f64>,
    /// `‖ctx[:, h·d_h..(h+1)·d_h]‖_F` over all rows, per query head (`H`): the
    /// context before `o_proj` (statistic A1).
    pub head_norms: Vec<f64>,
}

/// What [`DecoderLayer::backward`] needs from the forward.
pub struct LayerCache<B: Backend> {
    h_in: B::Tensor,
    inv_rms1: B::Tensor,
    q_cache: LinearCache<B>,
    k_cache: LinearCache<B>,
    v_cache: LinearCache<B>,
    q: B::Tensor,
    k: B::Tensor,
    v: B::Tensor,
    probs: B::Tensor,
    o_cache: LinearCache<B>,
    h_mid: B::Tensor,
    inv_rms2: B::Tensor,
    gate_cache: LinearCache<B>,
    up_cache: LinearCache<B>,
    gate: B::Tensor,
    up: B::Tensor,
    gate_act: B::Tensor,
    down_cache: LinearCache<B>,
}

/// `op(x, z)` into a new tensor of the same 2-D shape.
pub(crate) fn binary_new<B: Backend>(
    backend: &B,
    op: BinaryOp,
    x: &B::Tensor,
    z: &B::Tensor,
) -> Result<B::Tensor> {
    let view = ops::full(backend, x, "binary")?;
    let mut y = backend.zeros(&[view.rows, view.cols])?;
    backend.binary(op, x, view, z, view, zero::<B>(), &mut y, view)?;
    Ok(y)
}

/// `y += x` for equal 2-D shapes.
pub(crate) fn add_assign<B: Backend>(backend: &B, y: &mut B::Tensor, x: &B::Tensor) -> Result<()> {
    let view = ops::full(backend, x, "add")?;
    backend.axpby(one::<B>(), x, view, one::<B>(), y, view)
}

impl<B: TransformerOps> DecoderLayer<B> {
    /// `h_out = h + Attn(norm1(h))`, then `+ FFN(norm2(·))`. `h`: `[T, d]`.
    /// With `stats`, also returns the activation norms of this forward.
    pub fn forward(
        &self,
        backend: &B,
        dims: &LayerDims,
        h: &B::Tensor,
        stats: bool,
    ) -> Result<(B::Tensor, LayerCache<B>, Option<LayerStats>)> {
        let shape = &dims.attention;
        let (xn1, inv_rms1) = backend.rms_norm(h, &self.input_norm.value, dims.rms_eps)?;
        let (mut q, q_cache) = self
            .q_proj
            .forward(backend, self.attn_mixer.as_ref(), &xn1)?;
        let (mut k, k_cache) = self
            .k_proj
            .forward(backend, self.attn_mixer.as_ref(), &xn1)?;
        let (v, v_cache) = self
            .v_proj
            .forward(backend, self.attn_mixer.as_ref(), &xn1)?;
        backend.rope(
            &mut q,
            shape.head_dim,
            shape.seq_len,
            dims.rope_theta,
            false,
        )?;
        backend.rope(
            &mut k,
            shape.head_dim,
            shape.seq_len,
            dims.rope_theta,
            false,
        )?;
        let (ctx, probs) = attention_forward(backend, shape, &q, &k, &v)?;
        // Every row of a batch is a real token (windows are never padded), so
        // the statistics need no row mask.
        let head_norms = if stats {
            recorder::head_norms(backend, &ctx, shape.heads, None)?
        } else {
            Vec::new()
        };
        let (o, o_cache) = self
            .o_proj
            .forward(backend, self.attn_mixer.as_ref(), &ctx)?;
        let h_mid = binary_new(backend, BinaryOp::Add, h, &o)?;

        let (xn2, inv_rms2) =
            backend.rms_norm(&h_mid, &self.post_attention_norm.value, dims.rms_eps)?;
        let (gate, gate_cache) = self
            .gate_proj
            .forward(backend, self.ffn_mixer.as_ref(), &xn2)?;
        let (up, up_cache) = self
            .up_proj
            .forward(backend, self.ffn_mixer.as_ref(), &xn2)?;
        let gv = ops::full(backend, &gate, "swiglu")?;
        let mut gate_act = backend.zeros(&[gv.rows, gv.cols])?;
        backend.unary(UnaryOp::Silu, &gate, gv, &mut gate_act, gv)?;
        let ffn_norms = if stats {
            recorder::channel_norms(backend, &gate_act, None)?
        } else {
            Vec::new()
        };
        let act = binary_new(backend, BinaryOp::Mul, &gate_act, &up)?;
        let (down, down_cache) = self
            .down_proj
            .forward(backend, self.ffn_mixer.as_ref(), &act)?;
        let h_out = binary_new(backend, BinaryOp::Add, &h_mid, &down)?;
        let cache = LayerCache {
            h_in: h.clone(),
            inv_rms1,
            q_cache,
            k_cache,
            v_cache,
            q,
            k,
            v,
            probs,
            o_cache,
            h_mid,
            inv_rms2,
            gate_cache,
            up_cache,
            gate,
            up,
            gate_act,
            down_cache,
        };
        let stats = stats.then_some(LayerStats {
            ffn_norms,
            head_norms,
        });
        Ok((h_out, cache, stats))
    }

    /// Backward for `grad_h` = ∂L/∂h_out (`[T, d]`); parameter gradients go to
    /// `grads` under `prefix` (`model.layers.ℓ`). With `cv_weight = Some(w)`,
    /// the gradient of `w·CV(a)` over this layer's FFN channel norms is added
    /// (spec §5.6). Returns ∂L/∂h when `need_grad_h`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        backend: &B,
        dims: &LayerDims,
        cache: &LayerCache<B>,
        grad_h: &B::Tensor,
        prefix: &str,
        grads: &mut Gradients<B>,
        need_grad_h: bool,
        cv_weight: Option<f64>,
    ) -> Result<Option<B::Tensor>> {
        let shape = &dims.attention;
        let lin = |n: &str| format!("{prefix}.{n}");
        let mut attn_grads = mixer_grads(backend, &self.attn_mixer)?;
        let mut ffn_grads = mixer_grads(backend, &self.ffn_mixer)?;
        // FFN block.
        let grad_act = self
            .down_proj
            .backward(
                backend,
                shared(&self.ffn_mixer, &mut ffn_grads),
                &cache.down_cache,
                grad_h,
                &lin("mlp.down_proj"),
                grads,
                true,
            )?
            .expect("requested");
        let grad_up = binary_new(backend, BinaryOp::Mul, &grad_act, &cache.gate_act)?;
        let mut grad_gate_act = binary_new(backend, BinaryOp::Mul, &grad_act, &cache.up)?;
        let gv = ops::full(backend, &cache.gate, "swiglu")?;
        if let Some(weight) = cv_weight {
            // ∂(w·CV)/∂G[t, j] = w·∂CV/∂a_j · G[t, j]/a_j.
            let norms = recorder::channel_norms(backend, &cache.gate_act, None)?;
            let coef: Vec<f64> = coefficient_of_variation_grad(&norms)
                .iter()
                .zip(&norms)
                .map(|(g, a)| if *a > 0.0 { weight * g / a } else { 0.0 })
                .collect();
            let coef = ops::upload_f64(backend, &coef, &[coef.len()])?;
            backend.scale_columns(
                &cache.gate_act,
                gv,
                &coef,
                0,
                one::<B>(),
                &mut grad_gate_act,
                gv,
            )?;
        }
        let mut silu_grad = backend.zeros(&[gv.rows, gv.cols])?;
        backend.unary(UnaryOp::SiluGrad, &cache.gate, gv, &mut silu_grad, gv)?;
        let grad_gate = binary_new(backend, BinaryOp::Mul, &grad_gate_act, &silu_grad)?;
        let mut grad_xn2 = self
            .gate_proj
            .backward(
                backend,
                shared(&self.ffn_mixer, &mut ffn_grads),
                &cache.gate_cache,
                &grad_gate,
                &lin("mlp.gate_proj"),
                grads,
                true,
            )?
            .expect("requested");
        let from_up = self
            .up_proj
            .backward(
                backend,
                shared(&self.ffn_mixer, &mut ffn_grads),
                &cache.up_cache,
                &grad_up,
                &lin("mlp.up_proj"),
                grads,
                true,
            )?
            .expect("requested");
        add_assign(backend, &mut grad_xn2, &from_up)?;
        let mut grad_mid = norm_backward(
            backend,
            &self.post_attention_norm,
            &cache.h_mid,
            &cache.inv_rms2,
            &grad_xn2,
            &lin("post_attention_layernorm.weight"),
            grads,
        )?;
        add_assign(backend, &mut grad_mid, grad_h)?;

        // Attention block.
        let grad_ctx = self
            .o_proj
            .backward(
                backend,
                shared(&self.attn_mixer, &mut attn_grads),
                &cache.o_cache,
                &grad_mid,
                &lin("self_attn.o_proj"),
                grads,
                true,
            )?
            .expect("requested");
        let (mut gq, mut gk, gv) = attention_backward(
            backend,
            shape,
            &cache.q,
            &cache.k,
            &cache.v,
            &cache.probs,
            &grad_ctx,
        )?;
        backend.rope(
            &mut gq,
            shape.head_dim,
            shape.seq_len,
            dims.rope_theta,
            true,
        )?;
        backend.rope(
            &mut gk,
            shape.head_dim,
            shape.seq_len,
            dims.rope_theta,
            true,
        )?;
        // Below the first layer only the embedding can use ∂h; skip ∂x when it
        // is frozen and neither the norm weight needs it.
        let need_x = need_grad_h || self.input_norm.trainable;
        let q_part = self.q_proj.backward(
            backend,
            shared(&self.attn_mixer, &mut attn_grads),
            &cache.q_cache,
            &gq,
            &lin("self_attn.q_proj"),
            grads,
            need_x,
        )?;
        let k_part = self.k_proj.backward(
            backend,
            shared(&self.attn_mixer, &mut attn_grads),
            &cache.k_cache,
            &gk,
            &lin("self_attn.k_proj"),
            grads,
            need_x,
        )?;
        let v_part = self.v_proj.backward(
            backend,
            shared(&self.attn_mixer, &mut attn_grads),
            &cache.v_cache,
            &gv,
            &lin("self_attn.v_proj"),
            grads,
            need_x,
        )?;
        store_mixer_grads(backend, grads, &lin("mlp.mixer"), ffn_grads)?;
        store_mixer_grads(backend, grads, &lin("self_attn.mixer"), attn_grads)?;
        let (Some(mut grad_xn1), Some(k_part), Some(v_part)) = (q_part, k_part, v_part) else {
            return Ok(None);
        };
        add_assign(backend, &mut grad_xn1, &k_part)?;
        add_assign(backend, &mut grad_xn1, &v_part)?;
        let mut grad_in = norm_backward(
            backend,
            &self.input_norm,
            &cache.h_in,
            &cache.inv_rms1,
            &grad_xn1,
            &lin("input_layernorm.weight"),
            grads,
        )?;
        if !need_grad_h {
            return Ok(None);
        }
        add_assign(backend, &mut grad_in, &grad_mid)?;
        Ok(Some(grad_in))
    }

    /// Offers every trainable tensor of the layer to `visit`.
    pub fn visit_trainable(&mut self, prefix: &str, visit: &mut ParamVisitor<'_, B>) -> Result<()> {
        for (name, norm) in [
            ("input_layernorm.weight", &mut self.input_norm),
            (
                "post_attention_layernorm.weight",
                &mut self.post_attention_norm,
            ),
        ] {
            if norm.trainable {
                visit(
                    &format!("{prefix}.{name}"),
                    ParamGroup::NoDecay,
                    &mut norm.value,
                )?;
            }
        }
        for (name, linear) in self.projections_mut() {
            linear.visit_trainable(&format!("{prefix}.{name}"), visit)?;
        }
        for (name, mixer) in [
            ("self_attn.mixer", &mut self.attn_mixer),
            ("mlp.mixer", &mut self.ffn_mixer),
        ] {
            if let Some(m) = mixer {
                let p = format!("{prefix}.{name}");
                visit(
                    &format!("{p}.blkdiag1"),
                    ParamGroup::Monarch,
                    &mut m.monarch.blkdiag1,
                )?;
                visit(
                    &format!("{p}.blkdiag2"),
                    ParamGroup::Monarch,
                    &mut m.monarch.blkdiag2,
                )?;
                visit(
                    &format!("{p}.mixer_vec"),
                    ParamGroup::Decay,
                    &mut m.mixer_vec,
                )?;
            }
        }
        Ok(())
    }

    /// The shared mixer the projection `name` (e.g. `mlp.up_proj`) reads.
    pub fn mixer_for(&self, name: &str) -> Option<&Mixer<B>> {
        if name.starts_with("self_attn") {
            self.attn_mixer.as_ref()
        } else {
            self.ffn_mixer.as_ref()
        }
    }

    /// The dense weight of projection `name`, fused with its layer's mixer.
    pub fn dense_weight(&self, backend: &B, name: &str) -> Result<B::Tensor> {
        let linear = self
            .projections()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, l)| l)
            .ok_or_else(|| apex_core::ApexError::config(name.to_string(), "no such projection"))?;
        linear.dense_weight(backend, self.mixer_for(name))
    }

    /// The seven projections with their HF names relative to the layer.
    pub fn projections_mut(&mut self) -> [(&'static str, &mut Linear<B>); 7] {
        [
            ("self_attn.q_proj", &mut self.q_proj),
            ("self_attn.k_proj", &mut self.k_proj),
            ("self_attn.v_proj", &mut self.v_proj),
            ("self_attn.o_proj", &mut self.o_proj),
            ("mlp.gate_proj", &mut self.gate_proj),
            ("mlp.up_proj", &mut self.up_proj),
            ("mlp.down_proj", &mut self.down_proj),
        ]
    }

    /// The seven projections with their HF names relative to the layer.
    pub fn projections(&self) -> [(&'static str, &Linear<B>); 7] {
        [
            ("self_attn.q_proj", &self.q_proj),
            ("self_attn.k_proj", &self.k_proj),
            ("self_attn.v_proj", &self.v_proj),
            ("self_attn.o_proj", &self.o_proj),
            ("mlp.gate_proj", &self.gate_proj),
            ("mlp.up_proj", &self.up_proj),
            ("mlp.down_proj", &self.down_proj),
        ]
    }
}

/// Zero gradients for a layer's mixer, if it has one.
fn mixer_grads<B: Backend>(backend: &B, mixer: &Option<Mixer<B>>) -> Result<Option<MixerGrads<B>>> {
    mixer
        .as_ref()
        .map(|m| MixerGrads::zeros(backend, m))
        .transpose()
}

/// The `(mixer, gradient buffer)` pair a Mix module's backward accumulates into.
fn shared<'a, B: Backend>(
    mixer: &'a Option<Mixer<B>>,
    grads: &'a mut Option<MixerGrads<B>>,
) -> Option<(&'a Mixer<B>, &'a mut MixerGrads<B>)> {
    mixer.as_ref().zip(grads.as_mut())
}

/// Moves a layer's summed mixer gradients into `grads` under `prefix.*`.
fn store_mixer_grads<B: Backend>(
    backend: &B,
    grads: &mut Gradients<B>,
    prefix: &str,
    mixer: Option<MixerGrads<B>>,
) -> Result<()> {
    if let Some(m) = mixer {
        grads.accumulate(backend, &format!("{prefix}.blkdiag1"), &m.monarch.blkdiag1)?;
        grads.accumulate(backend, &format!("{prefix}.blkdiag2"), &m.monarch.blkdiag2)?;
        grads.accumulate(backend, &format!("{prefix}.mixer_vec"), &m.mixer_vec)?;
    }
    Ok(())
}

/// RMSNorm backward with the weight gradient only when the norm is trainable.
fn norm_backward<B: TransformerOps>(
    backend: &B,
    norm: &Param<B>,
    x: &B::Tensor,
    inv_rms: &B::Tensor,
    grad_y: &B::Tensor,
    name: &str,
    grads: &mut Gradients<B>,
) -> Result<B::Tensor> {
    let grad_weight = if norm.trainable {
        let d = backend.shape(&norm.value).to_vec();
        Some(grads.slot(backend, name, &d)?)
    } else {
        None
    };
    backend.rms_norm_backward(x, &norm.value, inv_rms, grad_y, grad_weight)
}
