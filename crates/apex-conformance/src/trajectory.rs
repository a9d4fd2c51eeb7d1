//! Training trajectories: the same short run (same model, data, seeds,
//! method) on two backends must follow the same loss curve step by step.
//! This is the end-to-end check of a backend's `TransformerOps` and APEX
//! operators under the real trainer (selection, mixers, AdamW, fusion).

use apex_core::transformer_ops::TransformerOps;
use apex_core::ApexSettings;
use apex_model::LlamaModel;
use apex_train::{train, EmbeddedSizes, Event, Method, TokenSplit, TrainOptions};

/// Sizes of a trajectory run.
#[derive(Clone, Debug)]
pub struct TrajectorySpec {
    pub model: EmbeddedSizes,
    pub steps: usize,
    pub batch_size: usize,
    pub seq_len: usize,
    pub method: Method,
}

impl TrajectorySpec {
    /// A 2-layer GQA model with hidden size 16: seconds even on an emulator.
    pub fn tiny(method: Method) -> Self {
        TrajectorySpec {
            model: EmbeddedSizes {
                hidden_size: 16,
                intermediate_size: 32,
                heads: 4,
                kv_heads: 2,
                layers: 2,
                corpus_bytes: 0,
            },
            steps: 6,
            batch_size: 4,
            seq_len: 16,
            method,
        }
    }
}

/// Per-step training losses and throughput of one run.
#[derive(Clone, Debug)]
pub struct Trajectory {
    pub losses: Vec<f64>,
    /// Mean over the run's steps, as the trainer reports it.
    pub tokens_per_second: f64,
}

/// Trains `spec` on `backend` from fixed seeds and records every step's loss.
pub fn run_trajectory<B: TransformerOps>(
    backend: &B,
    spec: &TrajectorySpec,
) -> Result<Trajectory, String> {
    let config = spec.model.config().map_err(|e| e.to_string())?;
    let model = LlamaModel::init_random(backend, &config, 0.1, 5).map_err(|e| e.to_string())?;
    let text = "abcabd abcabe, the quick brown fox jumps over the lazy dog. ".repeat(60);
    let tokens: Vec<usize> = text.bytes().map(usize::from).collect();
    let data = TokenSplit::from_documents(&[tokens], 0.2).map_err(|e| e.to_string())?;
    let options = TrainOptions {
        steps: spec.steps,
        batch_size: spec.batch_size,
        seq_len: spec.seq_len,
        lr: 1e-2,
        warmup_ratio: 0.0,
        eval_every: spec.steps,
        eval_windows: Some(4),
        stages: 1,
        assess_batches: 2,
        apex: ApexSettings {
            u_ratio: 0.25,
            v_ratio: 0.5,
            tuned_ffn_ratio: Some(0.5),
            tuned_attn_ratio: Some(1.0),
            ..ApexSettings::default()
        },
        ..TrainOptions::default()
    };
    let mut losses = Vec::new();
    let mut throughput = Vec::new();
    train(
        backend,
        &model,
        &data,
        &spec.method,
        &options,
        &mut |event| {
            if let Event::Train {
                loss,
                tokens_per_second,
                ..
            } = event
            {
                losses.push(*loss);
                throughput.push(*tokens_per_second);
            }
        },
    )
    .map_err(|e| e.to_string())?;
    let tokens_per_second = throughput.iter().sum::<f64>() / throughput.len().max(1) as f64;
    Ok(Trajectory {
        losses,
        tokens_per_second,
    })
}

/// Fails unless both runs took the same steps with losses within `rtol`.
pub fn compare_trajectories(got: &Trajectory, want: &Trajectory, rtol: f64) -> Result<(), String> {
    if got.losses.len() != want.losses.len() {
        return Err(format!(
            "{} steps, expected {}",
            got.losses.len(),
            want.losses.len()
        ));
    }
    for (step, (g, w)) in got.losses.iter().zip(&want.losses).enumerate() {
        if !((g - w).abs() <= rtol * w.abs()) {
            return Err(format!("step {step}: loss {g}, expected {w} (rtol {rtol})"));
        }
    }
    Ok(())
}
