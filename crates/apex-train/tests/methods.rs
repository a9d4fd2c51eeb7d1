//! Every method trains in the shared harness on a tiny model: APEX lowers the
//! training loss within one stage, the baselines run and report what they train.

use apex_core::ApexSettings;
use apex_cpu::CpuBackend;
use apex_model::LlamaModel;
use apex_train::{evaluate, train, EmbeddedSizes, Event, Method, TokenSplit, TrainOptions};

type Cpu = CpuBackend<f32>;

fn tiny() -> (LlamaModel<Cpu>, TokenSplit) {
    let sizes = EmbeddedSizes {
        hidden_size: 16,
        intermediate_size: 32,
        heads: 4,
        kv_heads: 2,
        layers: 2,
        corpus_bytes: 0,
    };
    let cpu = Cpu::new();
    let model = LlamaModel::init_random(&cpu, &sizes.config().unwrap(), 0.1, 5).unwrap();
    let text = "abcabd abcabe, the quick fox. ".repeat(40);
    let tokens: Vec<usize> = text.bytes().map(usize::from).collect();
    (model, TokenSplit::from_documents(&[tokens], 0.25).unwrap())
}

fn options(stages: usize) -> TrainOptions {
    TrainOptions {
        steps: 12,
        batch_size: 4,
        seq_len: 16,
        lr: 1e-2,
        warmup_ratio: 0.0,
        eval_every: 6,
        stages,
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

fn train_loss(model: &LlamaModel<Cpu>, data: &TokenSplit) -> f64 {
    evaluate(&Cpu::new(), model, &data.train, 16, 8, None)
        .unwrap()
        .mean_cross_entropy
}

#[test]
fn one_apex_stage_decreases_the_training_loss() {
    let (model, data) = tiny();
    let cpu = Cpu::new();
    let mut stages = Vec::new();
    let run = train(&cpu, &model, &data, &Method::Apex, &options(1), &mut |e| {
        if let Event::StageStart { trainable, .. } = e {
            stages.push(*trainable);
        }
    })
    .unwrap();
    assert_eq!(stages.len(), 1);
    let (before, after) = (train_loss(&model, &data), train_loss(&run.model, &data));
    assert!(after < before - 0.1, "loss {before} → {after}");
    // The fused result is a plain dense model with the base architecture.
    assert_eq!(run.model.config, model.config);
    assert!(run
        .model
        .layers
        .iter()
        .all(|l| l.ffn_mixer.is_none() && l.attn_mixer.is_none()));
    assert!(run.summary.trainable > 0 && run.summary.trainable_fraction < 1.0);
}

#[test]
fn two_apex_stages_reselect_and_keep_training() {
    let (model, data) = tiny();
    let mut stage_steps = Vec::new();
    let run = train(
        &Cpu::new(),
        &model,
        &data,
        &Method::Apex,
        &options(2),
        &mut |e| {
            if let Event::StageStart { step, .. } = e {
                stage_steps.push(*step);
            }
        },
    )
    .unwrap();
    assert_eq!(stage_steps, vec![0, 6]);
    assert!(train_loss(&run.model, &data) < train_loss(&model, &data));
}

#[test]
fn the_baselines_run_and_report_trainable_parameters() {
    let (model, data) = tiny();
    let cpu = Cpu::new();
    let total = model.config.parameter_count();
    let mut fractions = Vec::new();
    for method in [
        Method::Full,
        Method::S2,
        Method::Lora {
            rank: 2,
            alpha: 4.0,
        },
    ] {
        let run = train(&cpu, &model, &data, &method, &options(1), &mut |_| {}).unwrap();
        assert_eq!(run.summary.method, method.name());
        assert_eq!(run.summary.model_parameters, total);
        assert!(run.summary.final_validation_loss.is_finite());
        assert!(
            train_loss(&run.model, &data) < train_loss(&model, &data),
            "{method}"
        );
        fractions.push(run.summary.trainable_fraction);
    }
    assert_eq!(fractions[0], 1.0);
    assert!(fractions[1] > 0.0 && fractions[1] < 1.0);
    // LoRA rank 2 on q, k, v, o, gate, up, down of 2 layers: r·(in + out) each
    // (d = 16, H_kv·d_h = 8, N = 32).
    let per_layer = 2 * ((16 + 16) + 2 * (16 + 8) + (16 + 16) + 3 * (16 + 32));
    let lora = (2 * per_layer) as f64 / total as f64;
    assert!((fractions[2] - lora).abs() < 1e-12);
}

#[test]
fn unusable_options_and_data_are_clear_errors() {
    let (model, data) = tiny();
    let cpu = Cpu::new();
    let bad = TrainOptions {
        seq_len: 1,
        ..options(1)
    };
    let err = train(&cpu, &model, &data, &Method::Full, &bad, &mut |_| {})
        .err()
        .unwrap();
    assert!(err.to_string().contains("seq_len"), "{err}");
    let short = TokenSplit {
        train: data.train.clone(),
        validation: vec![1, 2, 3],
    };
    let err = train(
        &cpu,
        &model,
        &short,
        &Method::Full,
        &options(1),
        &mut |_| {},
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("validation"), "{err}");
}
