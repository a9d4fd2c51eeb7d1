//! A tiny model trained with APEX on the wgpu backend follows the CPU run: the
//! same training losses step by step and, after the stage is fused, the same
//! dense weights — which also shows that both runs selected the same units
//! (another selection permutes and mixes other rows and would not match).
//!
//! Needs an adapter (lavapipe on CI); without one the trial is ignored and
//! "SKIPPED backend wgpu: <reason>" is printed — never passed.

use apex_core::transformer_ops::TransformerOps;
use apex_core::ApexSettings;
use apex_cpu::CpuBackend;
use apex_model::{LlamaModel, WEIGHTS_FILE};
use apex_train::{train, EmbeddedSizes, Event, Method, TokenSplit, TrainOptions};
use apex_wgpu::WgpuBackend;
use libtest_mimic::{Arguments, Trial};
use std::path::Path;

fn main() {
    let args = Arguments::from_args();
    const NAME: &str = "apex_on_wgpu_follows_the_cpu_trajectory";
    let trial = match WgpuBackend::new() {
        Ok(gpu) => Trial::test(NAME, move || {
            follows_the_cpu(&gpu);
            Ok(())
        }),
        Err(why) => {
            eprintln!("SKIPPED backend wgpu: {why}");
            Trial::test(NAME, || Ok(())).with_ignored_flag(true)
        }
    };
    libtest_mimic::run(&args, vec![trial]).exit();
}

fn data() -> TokenSplit {
    let text = "abcabd abcabe, the quick fox. ".repeat(40);
    let tokens: Vec<usize> = text.bytes().map(usize::from).collect();
    TokenSplit::from_documents(&[tokens], 0.25).unwrap()
}

fn options() -> TrainOptions {
    TrainOptions {
        steps: 10,
        batch_size: 4,
        seq_len: 16,
        lr: 1e-2,
        warmup_ratio: 0.0,
        eval_every: 5,
        stages: 1,
        assess_batches: 2,
        apex: ApexSettings {
            u_ratio: 0.25,
            v_ratio: 0.5,
            tuned_ffn_ratio: Some(0.5),
            tuned_attn_ratio: Some(1.0),
            finetune_qk: true,
            ..ApexSettings::default()
        },
        ..TrainOptions::default()
    }
}

/// Trains the seeded tiny model with APEX on `backend`; returns the step
/// losses and the fused weights file.
fn run<B: TransformerOps>(backend: &B, dir: &Path) -> (Vec<f64>, Vec<u8>) {
    let sizes = EmbeddedSizes {
        hidden_size: 16,
        intermediate_size: 32,
        heads: 4,
        kv_heads: 2,
        layers: 2,
        corpus_bytes: 0,
    };
    let model = LlamaModel::init_random(backend, &sizes.config().unwrap(), 0.1, 5).unwrap();
    let mut losses = Vec::new();
    let outcome = train(
        backend,
        &model,
        &data(),
        &Method::Apex,
        &options(),
        &mut |e| {
            if let Event::Train { loss, .. } = e {
                losses.push(*loss);
            }
        },
    )
    .unwrap();
    outcome.model.save(backend, dir).unwrap();
    (losses, std::fs::read(dir.join(WEIGHTS_FILE)).unwrap())
}

fn follows_the_cpu(gpu: &WgpuBackend) {
    let base = std::env::temp_dir().join(format!("apex-wgpu-trajectory-{}", std::process::id()));
    let (cpu_losses, cpu_weights) = run(&CpuBackend::<f32>::new(), &base.join("cpu"));
    let (gpu_losses, gpu_weights) = run(gpu, &base.join("wgpu"));
    let _ = std::fs::remove_dir_all(&base);

    assert_eq!(cpu_losses.len(), options().steps);
    assert_eq!(gpu_losses.len(), cpu_losses.len());
    for (step, (g, c)) in gpu_losses.iter().zip(&cpu_losses).enumerate() {
        assert!(
            (g - c).abs() <= 1e-3 * c.abs(),
            "step {step}: wgpu loss {g} vs cpu {c}"
        );
    }
    assert!(
        cpu_losses.last() < cpu_losses.first(),
        "the run trains: {cpu_losses:?}"
    );

    let cpu_file = safetensors::SafeTensors::deserialize(&cpu_weights).unwrap();
    let gpu_file = safetensors::SafeTensors::deserialize(&gpu_weights).unwrap();
    let mut names = cpu_file.names();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        let floats = |file: &safetensors::SafeTensors, name: &str| -> Vec<f32> {
            file.tensor(name)
                .unwrap()
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        let (want, got) = (floats(&cpu_file, name), floats(&gpu_file, name));
        assert_eq!(want.len(), got.len(), "{name}");
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-3 * scale,
                "{name}[{i}]: wgpu {g} vs cpu {w}"
            );
        }
    }
}
