//! The LLaMA-family causal LM: token embedding, decoder layers, final RMSNorm,
//! LM head (tied to the embedding or not), and mean cross-entropy over the
//! supervised tokens.

use crate::attention::AttentionShape;
use crate::cv::CvRegulariser;
use crate::error::{ModelError, Result};
use crate::grads::Gradients;
use crate::layer::{DecoderLayer, LayerCache, LayerDims, LayerStats, Param};
use crate::linear::Linear;
use crate::params::{ParamGroup, ParamVisitor};
use apex_core::ops::{self, gemm_into, one};
use apex_core::{Backend, MatView, ModelConfig, TransformerOps, IGNORE_INDEX};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// HF name of the token embedding.
pub const EMBED_NAME: &str = "model.embed_tokens.weight";
/// HF name of the final norm.
pub const FINAL_NORM_NAME: &str = "model.norm.weight";
/// HF name of an untied LM head.
pub const LM_HEAD_NAME: &str = "lm_head.weight";

/// HF prefix of decoder layer `index`.
pub fn layer_prefix(index: usize) -> String {
    format!("model.layers.{index}")
}

/// A batch of `batch` sequences of `seq_len` tokens, flattened row-major.
/// `labels[t]` is the target of position `t` (already shifted: usually the
/// token at `t+1`), or [`IGNORE_INDEX`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub tokens: Vec<usize>,
    pub labels: Vec<i64>,
    pub batch: usize,
    pub seq_len: usize,
}

impl Batch {
    /// Next-token batch from windows of equal length: position `t` predicts
    /// token `t+1` of its window; the last position of each window is ignored.
    pub fn next_token(windows: &[&[usize]]) -> Result<Self> {
        let seq_len = windows.first().map_or(0, |w| w.len());
        if seq_len == 0 || windows.iter().any(|w| w.len() != seq_len) {
            return Err(ModelError::Input(
                "a batch needs non-empty windows of equal length".into(),
            ));
        }
        let mut tokens = Vec::with_capacity(windows.len() * seq_len);
        let mut labels = Vec::with_capacity(windows.len() * seq_len);
        for w in windows {
            tokens.extend_from_slice(w);
            labels.extend(w[1..].iter().map(|&t| t as i64));
            labels.push(IGNORE_INDEX);
        }
        Ok(Batch {
            tokens,
            labels,
            batch: windows.len(),
            seq_len,
        })
    }
}

/// Loss of one forward: `sum` of token cross-entropies over `count` labelled
/// positions (mean = sum / count).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossSum {
    pub sum: f64,
    pub count: usize,
}

impl LossSum {
    /// Mean cross-entropy (NaN when no position is labelled).
    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// A LLaMA-family decoder on backend `B`.
#[derive(Clone, Debug)]
pub struct LlamaModel<B: Backend> {
    pub config: ModelConfig,
    /// The config.json this model was read from (unknown keys kept), written
    /// back unchanged on save so a saved model is the same HF architecture.
    pub config_json: serde_json::Value,
    /// `[V, d]`.
    pub embed_tokens: Param<B>,
    pub layers: Vec<DecoderLayer<B>>,
    /// `[d]`.
    pub norm: Param<B>,
    /// `[V, d]`; `None` when tied to the embedding.
    pub lm_head: Option<Param<B>>,
}

/// What the backward needs from [`LlamaModel::forward`].
pub struct ModelCache<B: Backend> {
    tokens: Vec<usize>,
    layers: Vec<LayerCache<B>>,
    final_in: B::Tensor,
    final_inv_rms: B::Tensor,
    final_out: B::Tensor,
}

/// A forward's logits (`[T, V]`), backward cache and optional statistics.
pub struct ForwardOutput<B: Backend> {
    pub logits: B::Tensor,
    pub cache: ModelCache<B>,
    /// Per layer, when requested.
    pub stats: Option<Vec<LayerStats>>,
}

/// What one [`LlamaModel::forward_backward`] computes besides the gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepConfig {
    /// Multiplies the whole objective (`1/micro_batches` for accumulation).
    pub loss_scale: f64,
    /// Return the per-layer activation norms (APEX scoring).
    pub stats: bool,
    /// Add `λ·R`, the CV regulariser (spec §6.6).
    pub cv: Option<CvRegulariser>,
}

impl StepConfig {
    /// Plain mean cross-entropy, no statistics, no regulariser.
    pub fn plain() -> Self {
        StepConfig {
            loss_scale: 1.0,
            ..StepConfig::default()
        }
    }
}

/// Result of [`LlamaModel::forward_backward`].
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// The cross-entropy part of the objective.
    pub loss: LossSum,
    /// `R` of the CV regulariser (0 when off); the objective adds `λ·R`.
    pub regulariser: f64,
    pub stats: Option<Vec<LayerStats>>,
}

/// The HF default config.json fields for a LLaMA model built from scratch.
pub fn hf_config_json(config: &ModelConfig) -> Result<serde_json::Value> {
    let mut value = serde_json::to_value(config)
        .map_err(|e| ModelError::Input(format!("config does not serialise: {e}")))?;
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "architectures".into(),
            serde_json::json!(["LlamaForCausalLM"]),
        );
        map.insert("model_type".into(), "llama".into());
        map.insert("hidden_act".into(), "silu".into());
        map.insert("torch_dtype".into(), "float32".into());
    }
    Ok(value)
}

impl<B: TransformerOps> LlamaModel<B> {
    /// A freshly initialised model (HF's init: weights `N(0, std²)`, norms 1),
    /// every parameter frozen. `seed` makes it reproducible.
    pub fn init_random(backend: &B, config: &ModelConfig, std: f64, seed: u64) -> Result<Self> {
        config.validate()?;
        crate::checkpoint::check_supported(config)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut normal = |shape: &[usize]| -> Result<B::Tensor> {
            let n: usize = shape.iter().product();
            let data: Vec<f64> = (0..n)
                .map(|_| {
                    // Box–Muller: two uniforms in (0, 1] → one standard normal.
                    let u1: f64 = 1.0 - rng.random::<f64>();
                    let u2: f64 = rng.random::<f64>();
                    std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
                })
                .collect();
            Ok(ops::upload_f64(backend, &data, shape)?)
        };
        let d = config.hidden_size;
        let (q, kv) = (
            config.num_attention_heads * config.head_dim(),
            config.kv_heads() * config.head_dim(),
        );
        let n = config.intermediate_size;
        let frozen = |t: B::Tensor| Linear::dense(t, false);
        let ones = |len: usize| -> Result<Param<B>> {
            Ok(Param {
                value: ops::ones(backend, len)?,
                trainable: false,
            })
        };
        let embed = normal(&[config.vocab_size, d])?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for _ in 0..config.num_hidden_layers {
            layers.push(DecoderLayer {
                input_norm: ones(d)?,
                q_proj: frozen(normal(&[q, d])?),
                k_proj: frozen(normal(&[kv, d])?),
                v_proj: frozen(normal(&[kv, d])?),
                o_proj: frozen(normal(&[d, q])?),
                post_attention_norm: ones(d)?,
                gate_proj: frozen(normal(&[n, d])?),
                up_proj: frozen(normal(&[n, d])?),
                down_proj: frozen(normal(&[d, n])?),
                attn_mixer: None,
                ffn_mixer: None,
            });
        }
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(Param {
                value: normal(&[config.vocab_size, d])?,
                trainable: false,
            })
        };
        Ok(LlamaModel {
            config: config.clone(),
            config_json: hf_config_json(config)?,
            embed_tokens: Param {
                value: embed,
                trainable: false,
            },
            layers,
            norm: ones(d)?,
            lm_head,
        })
    }

    fn layer_dims(&self, batch: usize, seq_len: usize) -> LayerDims {
        LayerDims {
            attention: AttentionShape {
                batch,
                seq_len,
                heads: self.config.num_attention_heads,
                kv_heads: self.config.kv_heads(),
                head_dim: self.config.head_dim(),
            },
            rope_theta: self.config.rope_theta(),
            rms_eps: self.config.rms_norm_eps,
        }
    }

    fn lm_head_weight(&self) -> &B::Tensor {
        self.lm_head
            .as_ref()
            .map_or(&self.embed_tokens.value, |p| &p.value)
    }

    /// Logits `[batch·seq_len, V]` for `tokens` (row-major `batch × seq_len`).
    /// With `stats`, also the per-layer activation norms.
    pub fn forward(
        &self,
        backend: &B,
        tokens: &[usize],
        batch: usize,
        seq_len: usize,
        stats: bool,
    ) -> Result<ForwardOutput<B>> {
        if batch == 0 || seq_len == 0 || tokens.len() != batch * seq_len {
            return Err(ModelError::Input(format!(
                "{} tokens do not form {batch} sequences of {seq_len}",
                tokens.len()
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t >= self.config.vocab_size) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab_size
            )));
        }
        let dims = self.layer_dims(batch, seq_len);
        let mut h = backend.gather_rows(&self.embed_tokens.value, tokens)?;
        let mut caches = Vec::with_capacity(self.layers.len());
        let mut all_stats = stats.then(Vec::new);
        for layer in &self.layers {
            let (next, cache, layer_stats) = layer.forward(backend, &dims, &h, stats)?;
            if let (Some(all), Some(s)) = (all_stats.as_mut(), layer_stats) {
                all.push(s);
            }
            caches.push(cache);
            h = next;
        }
        let (final_out, final_inv_rms) =
            backend.rms_norm(&h, &self.norm.value, self.config.rms_norm_eps)?;
        let head = self.lm_head_weight();
        let fv = ops::full(backend, &final_out, "final")?;
        let hv = ops::full(backend, head, "lm_head")?;
        let logits = ops::matmul(backend, &final_out, fv, head, hv.t())?;
        Ok(ForwardOutput {
            logits,
            cache: ModelCache {
                tokens: tokens.to_vec(),
                layers: caches,
                final_in: h,
                final_inv_rms,
                final_out,
            },
            stats: all_stats,
        })
    }

    /// Summed cross-entropy of `batch` without gradients.
    pub fn loss(&self, backend: &B, batch: &Batch) -> Result<LossSum> {
        let out = self.forward(backend, &batch.tokens, batch.batch, batch.seq_len, false)?;
        let (sum, count, _) = backend.cross_entropy(&out.logits, &batch.labels, None)?;
        Ok(LossSum { sum, count })
    }

    /// Forward and backward of the mean cross-entropy of `batch` (plus
    /// `λ·R` with `config.cv`), scaled by `config.loss_scale`. Gradients of
    /// trainable tensors are **added** to `grads`.
    pub fn forward_backward(
        &self,
        backend: &B,
        batch: &Batch,
        config: &StepConfig,
        grads: &mut Gradients<B>,
    ) -> Result<StepOutput> {
        let stats = config.stats || config.cv.is_some();
        let out = self.forward(backend, &batch.tokens, batch.batch, batch.seq_len, stats)?;
        let count = batch.labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
        let scale = if count == 0 {
            0.0
        } else {
            config.loss_scale / count as f64
        };
        let (sum, count, grad_logits) =
            backend.cross_entropy(&out.logits, &batch.labels, Some(scale))?;
        let grad_logits =
            grad_logits.ok_or_else(|| ModelError::Input("no logits gradient".into()))?;
        self.backward(backend, &out.cache, &grad_logits, batch, config, grads)?;
        let regulariser = match (config.cv, out.stats.as_ref()) {
            (Some(cv), Some(stats)) => cv.penalty(stats.iter().map(|s| s.ffn_norms.as_slice())),
            _ => 0.0,
        };
        Ok(StepOutput {
            loss: LossSum { sum, count },
            regulariser,
            stats: out.stats.filter(|_| config.stats),
        })
    }

    /// Backward from ∂L/∂logits (`[T, V]`), plus the CV regulariser's
    /// gradient when `config.cv` is set.
    pub fn backward(
        &self,
        backend: &B,
        cache: &ModelCache<B>,
        grad_logits: &B::Tensor,
        batch: &Batch,
        config: &StepConfig,
        grads: &mut Gradients<B>,
    ) -> Result<()> {
        let dims = self.layer_dims(batch.batch, batch.seq_len);
        let gl = ops::full(backend, grad_logits, "grad_logits")?;
        let fv = ops::full(backend, &cache.final_out, "final")?;
        let head = self.lm_head_weight();
        let head_trainable = match &self.lm_head {
            Some(p) => p.trainable.then_some(LM_HEAD_NAME),
            None => self.embed_tokens.trainable.then_some(EMBED_NAME),
        };
        if let Some(name) = head_trainable {
            let slot = grads.slot(backend, name, &[gl.cols, fv.cols])?;
            gemm_into(
                backend,
                one::<B>(),
                grad_logits,
                gl.t(),
                &cache.final_out,
                fv,
                one::<B>(),
                slot,
                MatView::full(gl.cols, fv.cols),
            )?;
        }
        let hv = ops::full(backend, head, "lm_head")?;
        let grad_final = ops::matmul(backend, grad_logits, gl, head, hv)?;
        let grad_norm_weight = if self.norm.trainable {
            Some(grads.slot(backend, FINAL_NORM_NAME, &[self.config.hidden_size])?)
        } else {
            None
        };
        let mut grad_h = backend.rms_norm_backward(
            &cache.final_in,
            &self.norm.value,
            &cache.final_inv_rms,
            &grad_final,
            grad_norm_weight,
        )?;
        for (index, (layer, layer_cache)) in self.layers.iter().zip(&cache.layers).enumerate().rev()
        {
            let need = index > 0 || self.embed_tokens.trainable;
            let prefix = layer_prefix(index);
            let cv_weight = config
                .cv
                .filter(|cv| cv.covers(index))
                .map(|cv| config.loss_scale * cv.layer_weight(self.layers.len()));
            match layer.backward(
                backend,
                &dims,
                layer_cache,
                &grad_h,
                &prefix,
                grads,
                need,
                cv_weight,
            )? {
                Some(g) => grad_h = g,
                None => return Ok(()),
            }
        }
        let d = self.config.hidden_size;
        let slot = grads.slot(backend, EMBED_NAME, &[self.config.vocab_size, d])?;
        backend.scatter_add_rows(&grad_h, &cache.tokens, slot)?;
        Ok(())
    }

    /// Offers every trainable tensor (name, optimizer group, tensor) to `visit`.
    pub fn visit_trainable(&mut self, visit: &mut ParamVisitor<'_, B>) -> apex_core::Result<()> {
        if self.embed_tokens.trainable {
            visit(EMBED_NAME, ParamGroup::Decay, &mut self.embed_tokens.value)?;
        }
        for (index, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_trainable(&layer_prefix(index), visit)?;
        }
        if self.norm.trainable {
            visit(FINAL_NORM_NAME, ParamGroup::NoDecay, &mut self.norm.value)?;
        }
        if let Some(head) = self.lm_head.as_mut().filter(|h| h.trainable) {
            visit(LM_HEAD_NAME, ParamGroup::Decay, &mut head.value)?;
        }
        Ok(())
    }

    /// Number of trainable scalars (LoRA factors and APEX extras included).
    pub fn trainable_parameter_count(&mut self, backend: &B) -> apex_core::Result<u64> {
        let mut total = 0u64;
        self.visit_trainable(&mut |_, _, t: &mut B::Tensor| {
            total += backend.shape(t).iter().product::<usize>() as u64;
            Ok(())
        })?;
        Ok(total)
    }

    /// Marks the embedding, LM head and final/layer norms trainable or frozen.
    pub fn set_embeddings_trainable(&mut self, trainable: bool) {
        self.embed_tokens.trainable = trainable;
        if let Some(head) = self.lm_head.as_mut() {
            head.trainable = trainable;
        }
    }

    /// Marks every RMSNorm weight trainable or frozen.
    pub fn set_norms_trainable(&mut self, trainable: bool) {
        self.norm.trainable = trainable;
        for layer in &mut self.layers {
            layer.input_norm.trainable = trainable;
            layer.post_attention_norm.trainable = trainable;
        }
    }

    /// Marks every dense projection trainable or frozen (full fine-tuning).
    pub fn set_projections_trainable(&mut self, trainable: bool) {
        for layer in &mut self.layers {
            for (_, linear) in layer.projections_mut() {
                if let Linear::Dense(dense) = linear {
                    dense.trainable = trainable;
                }
            }
        }
    }

    /// A copy with every projection folded to a dense weight (LoRA merged), all
    /// frozen: the plain HF architecture, ready to save or convert again.
    pub fn to_dense(&self, backend: &B) -> Result<Self> {
        let mut out = self.clone();
        for layer in &mut out.layers {
            let fused = layer
                .projections()
                .map(|(name, _)| layer.dense_weight(backend, name));
            for ((_, linear), weight) in layer.projections_mut().into_iter().zip(fused) {
                *linear = Linear::dense(weight?, false);
            }
            layer.attn_mixer = None;
            layer.ffn_mixer = None;
        }
        out.set_embeddings_trainable(false);
        out.set_norms_trainable(false);
        Ok(out)
    }
}
