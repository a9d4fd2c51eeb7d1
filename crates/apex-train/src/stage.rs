//! The APEX stage machinery of the trainer (spec §6.1): the assessment pass,
//! online score recording, selection, permutation + conversion into expansion
//! modules, and fusion back into a plain dense model.
//!
//! The S2-only baseline runs the same machinery with `mix = false`: the same
//! selected rows/heads become plain S2 modules and no mixer is created.

use crate::data::BatchSampler;
use crate::error::{Result, TrainError};
use apex_core::permute::{
    permute_attention, permute_ffn, AttentionGeometry, AttentionWeights, FfnWeights,
};
use apex_core::recorder::ModelRecorder;
use apex_core::selection::SelectionState;
use apex_core::settings::HeadStatistic;
use apex_core::{ApexSettings, MixColumn, MixRow, Mixer, ModelConfig, S2Linear, TransformerOps};
use apex_model::{LayerStats, Linear, LlamaModel, ReplicatedMixRow};

/// Selection state and the score recorders across the stages of one run.
pub struct StageSetup {
    settings: ApexSettings,
    config: ModelConfig,
    state: SelectionState,
    recorder: ModelRecorder,
}

/// A seed for layer `layer`'s mixer of `kind` in selection `selection`.
fn mixer_seed(seed: u64, selection: u32, layer: usize, kind: u64) -> u64 {
    seed ^ (u64::from(selection) << 40) ^ ((layer as u64) << 8) ^ kind
}

impl StageSetup {
    /// Fresh recorders for the first selection.
    pub fn new(config: &ModelConfig, settings: &ApexSettings) -> Result<Self> {
        settings.validate()?;
        if settings.head_statistic != HeadStatistic::ContextNorm {
            return Err(TrainError::option(
                "head_statistic",
                "the trainer records the context-norm statistic (A1) only",
            ));
        }
        let state = SelectionState::new(config.num_hidden_layers);
        let recorder = ModelRecorder::new(settings, config, state.next_m(settings.k_schedule))?;
        Ok(StageSetup {
            settings: settings.clone(),
            config: config.clone(),
            state,
            recorder,
        })
    }

    /// Folds one forward's activation norms into the recorders.
    pub fn record(&mut self, stats: &[LayerStats]) -> Result<()> {
        for ((ffn, heads), layer) in self
            .recorder
            .ffn
            .iter_mut()
            .zip(self.recorder.heads.iter_mut())
            .zip(stats)
        {
            ffn.update(&layer.ffn_norms)?;
            heads.update(&layer.head_norms)?;
        }
        Ok(())
    }

    /// The assessment pass before stage 1 (§2.4): `batches` training batches
    /// through the plain model, statistics recorded, no gradients.
    pub fn assess<B: TransformerOps>(
        &mut self,
        backend: &B,
        model: &LlamaModel<B>,
        sampler: &mut BatchSampler<'_>,
        batches: usize,
    ) -> Result<()> {
        for _ in 0..batches.max(1) {
            let batch = sampler.next_batch()?;
            let out = model.forward(backend, &batch.tokens, batch.batch, batch.seq_len, true)?;
            if let Some(stats) = out.stats {
                self.record(&stats)?;
            }
        }
        Ok(())
    }

    /// Selects from the recorded scores, resets the recorders (§0.6), permutes
    /// `dense` into the selection's layout and converts it: with `mix`, the
    /// APEX modules (MixColumn on gate/up/v, MixRow on down, replicated MixRow
    /// on o, S2 on q/k with `finetune_qk`); without, S2 modules on the same
    /// rows and columns.
    pub fn convert<B: TransformerOps>(
        &mut self,
        backend: &B,
        dense: &LlamaModel<B>,
        mix: bool,
    ) -> Result<LlamaModel<B>> {
        let scores = self.recorder.scores();
        let selection = self.state.select(&self.settings, &self.config, &scores)?;
        self.recorder = ModelRecorder::new(
            &self.settings,
            &self.config,
            self.state.next_m(self.settings.k_schedule),
        )?;
        let geometry = AttentionGeometry::from_config(&self.config);
        let (dh, group) = (geometry.head_dim, geometry.group_size());
        let s = &self.settings;
        let mut model = dense.clone();
        for (index, layer) in model.layers.iter_mut().enumerate() {
            let ffn_plan = &selection.ffn[index];
            let attn_plan = &selection.attention[index];
            let w = |l: &Linear<B>| l.dense_weight(backend, None);
            let ffn = permute_ffn(
                backend,
                ffn_plan,
                &FfnWeights {
                    gate: w(&layer.gate_proj)?,
                    up: w(&layer.up_proj)?,
                    down: w(&layer.down_proj)?,
                    gate_bias: None,
                    up_bias: None,
                },
            )?;
            let attn = permute_attention(
                backend,
                attn_plan,
                geometry,
                &AttentionWeights {
                    q: w(&layer.q_proj)?,
                    k: w(&layer.k_proj)?,
                    v: w(&layer.v_proj)?,
                    o: w(&layer.o_proj)?,
                    q_bias: None,
                    k_bias: None,
                    v_bias: None,
                },
            )?;
            let frozen = |t: &B::Tensor| Linear::dense(t.clone(), false);
            let (k_f, t_f) = (ffn_plan.k(), ffn_plan.tuned());
            layer.ffn_mixer = None;
            if mix && k_f > 0 {
                layer.gate_proj = Linear::MixColumn(MixColumn::new(
                    backend,
                    &ffn.gate,
                    None,
                    k_f,
                    t_f,
                    s.mix_channels,
                )?);
                layer.up_proj = Linear::MixColumn(MixColumn::new(
                    backend,
                    &ffn.up,
                    None,
                    k_f,
                    t_f,
                    s.mix_channels,
                )?);
                layer.down_proj = Linear::MixRow(MixRow::new(
                    backend,
                    &ffn.down,
                    None,
                    k_f,
                    t_f,
                    s.mix_channels,
                )?);
                let seed = mixer_seed(s.seed, self.state.completed(), index, 1);
                layer.ffn_mixer = Some(Mixer::new(
                    backend,
                    k_f,
                    s.init_method,
                    s.find_largest_divisor,
                    seed,
                )?);
            } else if t_f > 0 {
                layer.gate_proj = Linear::S2(S2Linear::column(backend, &ffn.gate, None, t_f)?);
                layer.up_proj = Linear::S2(S2Linear::column(backend, &ffn.up, None, t_f)?);
                layer.down_proj = Linear::S2(S2Linear::row(backend, &ffn.down, None, t_f)?);
            } else {
                layer.gate_proj = frozen(&ffn.gate);
                layer.up_proj = frozen(&ffn.up);
                layer.down_proj = frozen(&ffn.down);
            }
            let (k_dims, t_dims) = (attn_plan.k() * dh, attn_plan.tuned() * dh);
            layer.attn_mixer = None;
            if mix && k_dims > 0 {
                layer.v_proj = Linear::MixColumn(MixColumn::new(
                    backend,
                    &attn.v,
                    None,
                    k_dims,
                    t_dims,
                    s.mix_channels,
                )?);
                layer.o_proj = Linear::ReplicatedMixRow(ReplicatedMixRow::new(
                    backend,
                    &attn.o,
                    geometry.kv_heads,
                    dh,
                    k_dims,
                    t_dims,
                    s.mix_channels,
                )?);
                let seed = mixer_seed(s.seed, self.state.completed(), index, 2);
                layer.attn_mixer = Some(Mixer::new(
                    backend,
                    k_dims,
                    s.init_method,
                    s.find_largest_divisor,
                    seed,
                )?);
            } else if t_dims > 0 {
                layer.v_proj = Linear::S2(S2Linear::column(backend, &attn.v, None, t_dims)?);
                layer.o_proj = Linear::S2(S2Linear::row(backend, &attn.o, None, t_dims * group)?);
            } else {
                layer.v_proj = frozen(&attn.v);
                layer.o_proj = frozen(&attn.o);
            }
            if s.finetune_qk && t_dims > 0 {
                layer.q_proj =
                    Linear::S2(S2Linear::column(backend, &attn.q, None, t_dims * group)?);
                layer.k_proj = Linear::S2(S2Linear::column(backend, &attn.k, None, t_dims)?);
            } else {
                layer.q_proj = frozen(&attn.q);
                layer.k_proj = frozen(&attn.k);
            }
        }
        model.set_embeddings_trainable(s.train_embeddings_and_lm_head);
        model.set_norms_trainable(s.train_norms);
        Ok(model)
    }
}
