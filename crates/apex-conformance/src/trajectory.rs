//! Training trajectories: the same short run (same model, data, seeds,
//! method) on two backends must follow the same loss curve step by step.
//! This is the end-to-end check of a backend's `TransformerOps` and APEX
//! operators under the real trainer (selection, mixers, AdamW, fusion): after
//! the stage is fused, both runs must also hold the same dense weights, which
//! shows they selected the same units (another selection permutes and mixes
//! other rows and would not match).

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

    /// The same run with `steps` optimizer steps (a slow emulator takes fewer).
    pub fn with_steps(self, steps: usize) -> Self {
        TrajectorySpec { steps, ..self }
    }
}

/// Per-step training losses and throughput of one run.
#[derive(Clone, Debug)]
pub struct Trajectory {
    pub losses: Vec<f64>,
    /// Median over the run's steps of the trainer's tokens/s, the first step
    /// left out when there are more (it pays one-time kernel compilation).
    pub tokens_per_second: f64,
    /// The trained model's tensors with every APEX module fused into its
    /// dense weight, by name: `(name, values)`.
    pub fused_weights: Vec<(String, Vec<f32>)>,
}

/// Trains `spec` on `backend` from fixed seeds and records every step's loss.
pub fn run_trajectory<B: TransformerOps>(
    backend: &B,
    spec: &TrajectorySpec,
) -> Result<Trajectory, String> {
    let config = spec.model.config().map_err(|e| e.to_string())?;
    let model = LlamaModel::init_random(backend, &config, 0.1, 5).map_err(|e| e.to_string())?;
    // Enough text for the batches and validation windows of longer sequences.
    let repeats = 60 * (spec.seq_len / 16).max(1);
    let text = "abcabd abcabe, the quick brown fox jumps over the lazy dog. ".repeat(repeats);
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
    let outcome = train(
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
    let tokens_per_second = steady_median(&throughput);
    let fused_weights = outcome
        .model
        .named_tensors(backend)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(name, _, values)| (name, values))
        .collect();
    Ok(Trajectory {
        losses,
        tokens_per_second,
        fused_weights,
    })
}

/// Fails unless both runs took the same steps with losses within `rtol`, the
/// reference run trained (its last loss below its first), and every fused
/// tensor agrees within `rtol` of that tensor's largest magnitude.
pub fn compare_trajectories(got: &Trajectory, want: &Trajectory, rtol: f64) -> Result<(), String> {
    if got.losses.len() != want.losses.len() {
        return Err(format!(
            "{} steps, expected {}",
            got.losses.len(),
            want.losses.len()
        ));
    }
    for (step, (g, w)) in got.losses.iter().zip(&want.losses).enumerate() {
        if !within(*g, *w, rtol * w.abs()) {
            return Err(format!("step {step}: loss {g}, expected {w} (rtol {rtol})"));
        }
    }
    let trains = matches!(
        want.losses.last().partial_cmp(&want.losses.first()),
        Some(std::cmp::Ordering::Less)
    );
    if !trains {
        return Err(format!(
            "the reference run does not train: {:?}",
            want.losses
        ));
    }
    if got.fused_weights.len() != want.fused_weights.len() || want.fused_weights.is_empty() {
        return Err(format!(
            "{} fused tensors, expected {}",
            got.fused_weights.len(),
            want.fused_weights.len()
        ));
    }
    for ((name, g), (want_name, w)) in got.fused_weights.iter().zip(&want.fused_weights) {
        if name != want_name || g.len() != w.len() {
            return Err(format!(
                "fused tensor {name} ({} values), expected {want_name} ({})",
                g.len(),
                w.len()
            ));
        }
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        for (i, (g, w)) in g.iter().zip(w).enumerate() {
            if !within(*g as f64, *w as f64, rtol * scale) {
                return Err(format!(
                    "fused {name}[{i}]: {g}, expected {w} (rtol {rtol} of {scale})"
                ));
            }
        }
    }
    Ok(())
}

/// |got − want| ≤ tolerance; false when either is NaN.
fn within(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance
}

/// The median of `values` without the first one (when there are more).
fn steady_median(values: &[f64]) -> f64 {
    let mut steady: Vec<f64> = values
        .iter()
        .skip(usize::from(values.len() > 1))
        .copied()
        .collect();
    if steady.is_empty() {
        return 0.0;
    }
    steady.sort_by(f64::total_cmp);
    steady[steady.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use apex_cpu::CpuBackend;

    /// The throughput runs of `apex-gpu-check` use batches of 8 × 256 tokens:
    /// the generated text must hold enough windows for them and for validation.
    #[test]
    fn long_sequences_have_enough_data() {
        let spec = TrajectorySpec {
            batch_size: 8,
            seq_len: 256,
            ..TrajectorySpec::tiny(Method::Apex).with_steps(2)
        };
        let run = run_trajectory(&CpuBackend::<f32>::new(), &spec).unwrap();
        assert_eq!(run.losses.len(), 2);
        assert!(run.tokens_per_second > 0.0);
        assert!(!run.fused_weights.is_empty());
    }

    #[test]
    fn steady_median_skips_the_first_step() {
        assert_eq!(steady_median(&[1.0, 5.0, 3.0, 4.0]), 4.0);
        assert_eq!(steady_median(&[7.0]), 7.0);
        assert_eq!(steady_median(&[]), 0.0);
    }
}
