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
        *t = cpu.upload(&v, cpu.shape(t)).unwrap();
    };
    jitter(&mut model.norm.value, 1.0);
    for (i, layer) in model.layers.iter_mut().enumerate() {
        jitter(&mut layer.input_norm.value, 2.0 + i as f64);
        jitter(&mut layer.post_attention_norm.value, 5.0 + i as f64);
    }
    model
}

/// A GQA config whose attention has 3 KV groups of 2 query heads (d_h = 2), so
/// a layer can mix one group into another: d=12, H=6, H_kv=3, N=16, 2 layers.
pub fn apex_config() -> ModelConfig {
    ModelConfig::from_json_str(
        r#"{"hidden_size": 12, "intermediate_size": 16, "num_attention_heads": 6,
        "num_key_value_heads": 3, "num_hidden_layers": 2, "vocab_size": 11,
        "rms_norm_eps": 1e-5, "rope_theta": 300.0, "tie_word_embeddings": false}"#,
        "apex-tiny",
    )
    .unwrap()
}

/// Every layer of `model` converted to APEX modules (no permutation: the
/// gradient and fusion identities do not depend on which units sit where):
/// q, k S2 over 2 groups; v MixColumn and o ReplicatedMixRow mixing 1 group
/// into another; gate, up MixColumn and down MixRow with k = 3, t = 8. The
/// mixers start from noise and every trainable tensor is perturbed so no
/// gradient is trivially zero.
pub fn apexify(model: &mut LlamaModel<Cpu64>) {
    use apex_core::{MixColumn, MixRow, Mixer, MonarchInit, S2Linear};
    use apex_model::{Linear, ReplicatedMixRow};
    let cpu = Cpu64::new();
    let dh = model.config.head_dim();
    let kv = model.config.kv_heads();
    let r = model.config.group_size();
    for (i, layer) in model.layers.iter_mut().enumerate() {
        let w = |l: &Linear<Cpu64>| l.dense_weight(&cpu, None).unwrap();
        layer.q_proj =
            Linear::S2(S2Linear::column(&cpu, &w(&layer.q_proj), None, 2 * r * dh).unwrap());
        layer.k_proj = Linear::S2(S2Linear::column(&cpu, &w(&layer.k_proj), None, 2 * dh).unwrap());
        layer.v_proj = Linear::MixColumn(
            MixColumn::new(&cpu, &w(&layer.v_proj), None, dh, 2 * dh, true).unwrap(),
        );
        layer.o_proj = Linear::ReplicatedMixRow(
            ReplicatedMixRow::new(&cpu, &w(&layer.o_proj), kv, dh, dh, 2 * dh, true).unwrap(),
        );
        layer.gate_proj = Linear::MixColumn(
            MixColumn::new(&cpu, &w(&layer.gate_proj), None, 3, 8, true).unwrap(),
        );
        layer.up_proj =
            Linear::MixColumn(MixColumn::new(&cpu, &w(&layer.up_proj), None, 3, 8, true).unwrap());
        layer.down_proj =
            Linear::MixRow(MixRow::new(&cpu, &w(&layer.down_proj), None, 3, 8, true).unwrap());
        layer.attn_mixer =
            Some(Mixer::new(&cpu, dh, MonarchInit::Noise, false, 10 + i as u64).unwrap());
        layer.ffn_mixer =
            Some(Mixer::new(&cpu, 3, MonarchInit::Noise, false, 20 + i as u64).unwrap());
    }
    let mut k = 0.0;
    model
        .visit_trainable(&mut |_, _, t| {
            k += 1.0;
            let v: Vec<f64> = cpu
                .download(t)?
                .iter()
                .enumerate()
                .map(|(i, x)| x + 0.2 * ((i as f64 + 3.0 * k) * 0.9).sin())
                .collect();
            *t = cpu.upload(&v, cpu.shape(t))?;
            Ok(())
        })
        .unwrap();
}

/// A random model of [`apex_config`] with its layers converted by [`apexify`].
pub fn apex_model(seed: u64) -> LlamaModel<Cpu64> {
    let cpu = Cpu64::new();
    let mut model = LlamaModel::init_random(&cpu, &apex_config(), 0.4, seed).unwrap();
    apexify(&mut model);
    model
}
