//! Shared helpers of the apex-model integration tests.

use apex_core::{Backend, ModelConfig};
use apex_cpu::CpuBackend;
use apex_model::LlamaModel;

pub type Cpu64 = CpuBackend<f64>;

/// A tiny GQA config: d=8, 2 query heads over 1 KV head of dim 4, N=12, 2 layers.
pub fn tiny_config(tied: bool) -> ModelConfig {
    ModelConfig::from_json_str(
        &format!(
            r#"{{"hidden_size": 8, "intermediate_size": 12, "num_attention_heads": 2,
            "num_key_value_heads": 1, "num_hidden_layers": 2, "vocab_size": 11,
            "rms_norm_eps": 1e-5, "rope_theta": 500.0, "tie_word_embeddings": {tied}}}"#
        ),
        "tiny",
    )
    .unwrap()
}

/// A tiny model with random norm weights too (so norm gradients are generic).
pub fn tiny_model(tied: bool, seed: u64) -> LlamaModel<Cpu64> {
    let cpu = Cpu64::new();
    let mut model = LlamaModel::init_random(&cpu, &tiny_config(tied), 0.4, seed).unwrap();
    let jitter = |t: &mut <Cpu64 as Backend>::Tensor, k: f64| {
        let v: Vec<f64> = cpu
            .download(t)
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, x)| x + 0.3 * ((i as f64 + k) * 1.7).sin())
            .collect();
        *t = cpu.upload(&v, &cpu.shape(t).to_vec()).unwrap();
    };
    jitter(&mut model.norm.value, 1.0);
    for (i, layer) in model.layers.iter_mut().enumerate() {
        jitter(&mut layer.input_norm.value, 2.0 + i as f64);
        jitter(&mut layer.post_attention_norm.value, 5.0 + i as f64);
    }
    model
}
