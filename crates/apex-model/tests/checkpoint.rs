//! Save/load round trips, fusion, and the errors a user sees for bad input.

mod common;

use apex_core::{Backend, ModelConfig};
use apex_model::{LlamaModel, ModelError, CONFIG_FILE, WEIGHTS_FILE};
use common::{apex_model, tiny_model, Cpu64};
use std::path::PathBuf;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apex-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn logits(model: &LlamaModel<Cpu64>) -> Vec<f64> {
    let cpu = Cpu64::new();
    let out = model
        .forward(&cpu, &[3, 1, 4, 1, 5, 9, 2, 6], 2, 4, false)
        .unwrap();
    cpu.download(&out.logits).unwrap()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn saved_and_reloaded_model_gives_the_same_logits() {
    for tied in [false, true] {
        let cpu = Cpu64::new();
        let model = tiny_model(tied, 11);
        let dir = temp_dir(&format!("roundtrip-{tied}"));
        model.save(&cpu, &dir).unwrap();
        let reloaded = LlamaModel::load(&cpu, &dir).unwrap();
        assert_eq!(reloaded.lm_head.is_none(), tied);
        // Saved as f32, so equal to f32 rounding of the weights.
        assert!(max_abs_diff(&logits(&model), &logits(&reloaded)) < 1e-5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn fused_apex_model_saved_and_reloaded_matches_the_unfused_model() {
    let cpu = Cpu64::new();
    let model = apex_model(12);
    let unfused = logits(&model);
    let fused = model.to_dense(&cpu).unwrap();
    assert!(max_abs_diff(&unfused, &logits(&fused)) < 1e-12);
    let dir = temp_dir("fused");
    model.save(&cpu, &dir).unwrap();
    let reloaded = LlamaModel::load(&cpu, &dir).unwrap();
    assert!(max_abs_diff(&unfused, &logits(&reloaded)) < 1e-5);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_checkpoint_is_a_corrupt_checkpoint_error() {
    let cpu = Cpu64::new();
    let dir = temp_dir("truncated");
    tiny_model(false, 1).save(&cpu, &dir).unwrap();
    let path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = LlamaModel::<Cpu64>::load(&cpu, &dir).unwrap_err();
    assert!(matches!(err, ModelError::CorruptCheckpoint { .. }), "{err}");
    assert!(err.to_string().contains(WEIGHTS_FILE));
    std::fs::write(&path, b"not a checkpoint").unwrap();
    assert!(matches!(
        LlamaModel::<Cpu64>::load(&cpu, &dir),
        Err(ModelError::CorruptCheckpoint { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_config_missing_tensor_and_shape_mismatch_are_clear_errors() {
    let cpu = Cpu64::new();
    let dir = temp_dir("errors");
    tiny_model(false, 2).save(&cpu, &dir).unwrap();
    let config_path = dir.join(CONFIG_FILE);
    let good = std::fs::read_to_string(&config_path).unwrap();

    std::fs::write(&config_path, "{\"hidden_size\": 8,").unwrap();
    let err = LlamaModel::<Cpu64>::load(&cpu, &dir).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");

    // Claiming untied → tied is fine (lm_head is ignored), but a bigger FFN is not.
    let wider = good.replace("\"intermediate_size\": 12", "\"intermediate_size\": 14");
    std::fs::write(&config_path, wider).unwrap();
    assert!(matches!(
        LlamaModel::<Cpu64>::load(&cpu, &dir),
        Err(ModelError::TensorShape { .. })
    ));
    let deeper = good.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    std::fs::write(&config_path, deeper).unwrap();
    let err = LlamaModel::<Cpu64>::load(&cpu, &dir).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingTensor { name, .. } if name.starts_with("model.layers.2.")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_finite_weights_and_unsupported_biases_are_rejected() {
    let cpu = Cpu64::new();
    let mut model = tiny_model(true, 3);
    let shape = cpu.shape(&model.norm.value).to_vec();
    let mut values = cpu.download(&model.norm.value).unwrap();
    values[3] = f64::NAN;
    model.norm.value = cpu.upload(&values, &shape).unwrap();
    let dir = temp_dir("nan");
    model.save(&cpu, &dir).unwrap();
    let err = LlamaModel::<Cpu64>::load(&cpu, &dir).unwrap_err();
    assert!(
        matches!(&err, ModelError::NonFiniteTensor { name, index: 3, .. } if name == "model.norm.weight"),
        "{err}"
    );
    let mut config: ModelConfig = common::tiny_config(true);
    config.attention_bias = true;
    assert!(LlamaModel::<Cpu64>::init_random(&cpu, &config, 0.02, 1).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
