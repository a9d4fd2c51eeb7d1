//! One training run of any [`Method`] in the same harness: same data order,
//! steps, schedule and seeds for every method.
//!
//! The run is a sequence of stages (one for `full` and `lora`). Each stage
//! converts the plain dense model into the method's trainable form, makes a
//! fresh optimizer, trains its share of the steps, and folds the result back
//! into a plain dense model (spec §6.1). Between stages the learning-rate
//! schedule restarts from its current value over the remaining steps (§6.3),
//! unless `restart_schedule` is off.

use crate::data::{eval_batches, BatchSampler, TokenSplit};
use crate::erank::effective_rank;
use crate::error::{Result, TrainError};
use crate::methods::{make_full, make_lora, Method};
use crate::metrics::{Event, RunSummary};
use crate::optim::{AdamW, AdamWConfig};
use crate::schedule::CosineSchedule;
use crate::stage::StageSetup;
use apex_core::{ops, ApexSettings, TransformerOps};
use apex_model::{Batch, CvRegulariser, Gradients, LlamaModel, StepConfig};
use std::time::Instant;

/// Options shared by every method of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Optimizer steps of the whole run (all stages).
    pub steps: usize,
    /// Windows per step.
    pub batch_size: usize,
    /// Tokens per window.
    pub seq_len: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warmup as a fraction of `steps` (0.03 in the reference).
    pub warmup_ratio: f64,
    pub optimizer: AdamWConfig,
    /// Seeds the batch order and every random initialisation.
    pub seed: u64,
    /// Validation every this many steps (and always at the start and end).
    pub eval_every: usize,
    /// At most this many validation windows per validation pass.
    pub eval_windows: Option<usize>,
    /// Stages of the selection methods (`s2`, `apex`); ignored by the others.
    pub stages: usize,
    /// Restart the cosine at each stage boundary (§6.3); off = one schedule.
    pub restart_schedule: bool,
    /// Warmup of a restarted schedule as a fraction of the remaining steps.
    pub restart_warmup_ratio: f64,
    /// Training batches of the assessment pass before the first stage (§2.4).
    pub assess_batches: usize,
    /// Log the effective rank of every projection before/after each stage.
    pub effective_rank: bool,
    /// APEX settings (ratios, options, presets) for `s2` and `apex`.
    pub apex: ApexSettings,
    /// λ of the CV regulariser (spec §6.6) over the reference's share of the
    /// layers; `None` turns it off (the reference script's setting).
    pub lambda_reg: Option<f64>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            steps: 100,
            batch_size: 8,
            seq_len: 128,
            lr: 1e-3,
            warmup_ratio: 0.03,
            optimizer: AdamWConfig::default(),
            seed: 42,
            eval_every: 25,
            eval_windows: Some(64),
            stages: 2,
            restart_schedule: true,
            restart_warmup_ratio: 0.005,
            assess_batches: 8,
            effective_rank: false,
            apex: ApexSettings::default(),
            lambda_reg: None,
        }
    }
}

impl TrainOptions {
    fn validate(&self) -> Result<()> {
        let positive = [
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("eval_every", self.eval_every),
            ("stages", self.stages),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(TrainError::option(*field, "must be positive"));
        }
        if self.seq_len < 2 {
            return Err(TrainError::option("seq_len", "must be at least 2"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(TrainError::option("lr", "must be a positive number"));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(TrainError::option("warmup_ratio", "must be in [0, 1)"));
        }
        Ok(())
    }
}

/// A finished run: the plain dense model it produced and its summary.
pub struct TrainOutcome<B: TransformerOps> {
    pub model: LlamaModel<B>,
    pub summary: RunSummary,
}

/// Mean validation loss over `batches`.
fn validation_loss<B: TransformerOps>(
    backend: &B,
    model: &LlamaModel<B>,
    batches: &[Batch],
) -> Result<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    for batch in batches {
        let loss = model.loss(backend, batch)?;
        sum += loss.sum;
        count += loss.count;
    }
    Ok(sum / count as f64)
}

/// Per layer, every projection's (fused) dense weight as host f64 with its shape.
type HostWeights = Vec<Vec<(String, usize, usize, Vec<f64>)>>;

/// Dense weights of every projection, as host f64 with their shape.
fn dense_weights<B: TransformerOps>(backend: &B, model: &LlamaModel<B>) -> Result<HostWeights> {
    let mut out = Vec::new();
    for layer in &model.layers {
        let mut weights = Vec::new();
        for (name, _) in layer.projections() {
            let w = layer.dense_weight(backend, name)?;
            let (rows, cols) = ops::dims2(backend, &w, "effective rank")?;
            weights.push((
                name.to_string(),
                rows,
                cols,
                ops::download_f64(backend, &w)?,
            ));
        }
        out.push(weights);
    }
    Ok(out)
}

/// Trains `base` (a plain dense model, left untouched) with `method` on `data`.
/// `observer` sees every [`Event`] as it happens.
pub fn train<B: TransformerOps>(
    backend: &B,
    base: &LlamaModel<B>,
    data: &TokenSplit,
    method: &Method,
    options: &TrainOptions,
    observer: &mut dyn FnMut(&Event),
) -> Result<TrainOutcome<B>> {
    options.validate()?;
    data.check(options.seq_len, base.config.vocab_size)?;
    let started = Instant::now();
    let name = method.name().to_string();
    let stages = if method.uses_selection() {
        options.stages
    } else {
        1
    };
    if stages > options.steps {
        return Err(TrainError::option(
            "stages",
            "cannot exceed the number of steps",
        ));
    }
    let mut sampler = BatchSampler::new(
        &data.train,
        options.seq_len,
        options.batch_size,
        options.seed,
    )?;
    let validation = eval_batches(
        &data.validation,
        options.seq_len,
        options.batch_size,
        options.eval_windows,
    )?;
    let model_parameters = base.config.parameter_count();
    let mut schedule = CosineSchedule::new(options.lr, options.steps, options.warmup_ratio);
    let mut schedule_origin = 0usize;
    let mut dense = base.clone();
    let mut setup = StageSetup::new(&base.config, &options.apex)?;
    if method.uses_selection() {
        setup.assess(backend, &dense, &mut sampler, options.assess_batches)?;
    }
    let mut step = 0usize;
    let mut first_trainable = None;
    let mut train_seconds = 0.0;
    let mut last_validation = f64::NAN;
    let emit_validation = |model: &LlamaModel<B>,
                           stage: usize,
                           step: usize,
                           observer: &mut dyn FnMut(&Event)|
     -> Result<f64> {
        let loss = validation_loss(backend, model, &validation)?;
        observer(&Event::Validation {
            method: name.clone(),
            stage,
            step,
            loss,
            perplexity: loss.exp(),
        });
        Ok(loss)
    };
    for stage in 0..stages {
        let stage_end = ((stage + 1) * options.steps).div_ceil(stages);
        let mut working = match method {
            Method::Full => {
                let mut m = dense.clone();
                make_full(&mut m);
                m
            }
            Method::Lora { rank, alpha } => {
                let mut m = dense.clone();
                make_lora(backend, &mut m, *rank, *alpha, options.seed)?;
                m.set_embeddings_trainable(options.apex.train_embeddings_and_lm_head);
                m.set_norms_trainable(options.apex.train_norms);
                m
            }
            Method::S2 | Method::Apex => setup.convert(backend, &dense, *method == Method::Apex)?,
        };
        let trainable = working.trainable_parameter_count(backend)?;
        first_trainable.get_or_insert(trainable);
        observer(&Event::StageStart {
            method: name.clone(),
            stage,
            step,
            trainable,
            model_parameters,
        });
        if stage == 0 {
            last_validation = emit_validation(&working, stage, step, observer)?;
        } else if options.restart_schedule {
            schedule = schedule.restart_at(step - schedule_origin, options.restart_warmup_ratio);
            schedule_origin = step;
        }
        let before = if options.effective_rank {
            Some(dense_weights(backend, &working)?)
        } else {
            None
        };
        let mut optimizer = AdamW::new(options.optimizer);
        let record = method.uses_selection();
        while step < stage_end {
            let t0 = Instant::now();
            let batch = sampler.next_batch()?;
            let mut grads = Gradients::new();
            let step_config = StepConfig {
                loss_scale: 1.0,
                stats: record,
                cv: options
                    .lambda_reg
                    .map(|w| CvRegulariser::reference_range(w, working.layers.len())),
            };
            let out = working.forward_backward(backend, &batch, &step_config, &mut grads)?;
            let loss = out.loss.mean();
            if !loss.is_finite() {
                return Err(TrainError::Diverged {
                    step,
                    what: "the training loss".into(),
                });
            }
            if let Some(stats) = out.stats.as_ref() {
                setup.record(stats)?;
            }
            let lr = schedule.lr(step - schedule_origin);
            let grad_norm =
                optimizer
                    .step(backend, &mut working, &grads, lr)
                    .map_err(|e| match e {
                        TrainError::Diverged { what, .. } => TrainError::Diverged { step, what },
                        other => other,
                    })?;
            let seconds = t0.elapsed().as_secs_f64();
            train_seconds += seconds;
            step += 1;
            observer(&Event::Train {
                method: name.clone(),
                stage,
                step,
                loss,
                lr,
                grad_norm,
                tokens_per_second: (batch.tokens.len() as f64) / seconds,
            });
            if step % options.eval_every == 0 || step == options.steps {
                last_validation = emit_validation(&working, stage, step, observer)?;
            }
        }
        dense = working.to_dense(backend)?;
        if let Some(before) = before {
            let after = dense_weights(backend, &dense)?;
            for (layer, (b_layer, a_layer)) in before.iter().zip(&after).enumerate() {
                for ((module, rows, cols, b), (_, _, _, a)) in b_layer.iter().zip(a_layer) {
                    let delta: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
                    observer(&Event::EffectiveRank {
                        method: name.clone(),
                        stage,
                        layer,
                        module: module.clone(),
                        before: effective_rank(b, *rows, *cols),
                        after: effective_rank(a, *rows, *cols),
                        update: effective_rank(&delta, *rows, *cols),
                    });
                }
            }
        }
    }
    let trainable = first_trainable.unwrap_or(0);
    let summary = RunSummary {
        method: name,
        trainable,
        model_parameters,
        trainable_fraction: trainable as f64 / model_parameters as f64,
        steps: options.steps,
        final_validation_loss: last_validation,
        final_validation_perplexity: last_validation.exp(),
        seconds: started.elapsed().as_secs_f64(),
        train_tokens_per_second: (options.steps * options.batch_size * options.seq_len) as f64
            / train_seconds.max(1e-9),
    };
    observer(&Event::RunEnd {
        summary: summary.clone(),
    });
    Ok(TrainOutcome {
        model: dense,
        summary,
    })
}
