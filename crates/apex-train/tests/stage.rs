//! The stage conversion keeps the model's function: selection + permutation +
//! APEX modules at their identity initialisation compute what the base model
//! computes, and fusing a trained-looking (noise-initialised) conversion is
//! exact. Checked in f64 through the real path (recorders, selection,
//! GQA-group permutation, o_proj replicas).

use apex_core::{ApexSettings, Backend, MonarchInit};
use apex_cpu::CpuBackend;
use apex_model::LlamaModel;
use apex_train::data::BatchSampler;
use apex_train::stage::StageSetup;
use apex_train::EmbeddedSizes;

type Cpu = CpuBackend<f64>;

fn base() -> LlamaModel<Cpu> {
    let sizes = EmbeddedSizes {
        hidden_size: 16,
        intermediate_size: 32,
        heads: 4,
        kv_heads: 2,
        layers: 2,
        corpus_bytes: 0,
    };
    LlamaModel::init_random(&Cpu::new(), &sizes.config().unwrap(), 0.3, 3).unwrap()
}

fn settings(init: MonarchInit) -> ApexSettings {
    ApexSettings {
        u_ratio: 0.25,
        // ρ_attn·H_kv·L = 4 groups: enough budget (§3.4) for k = 1 in every layer.
        v_ratio: 1.0,
        tuned_ffn_ratio: Some(0.5),
        tuned_attn_ratio: Some(1.0),
        finetune_qk: true,
        init_method: init,
        ..ApexSettings::default()
    }
}

fn logits(model: &LlamaModel<Cpu>) -> Vec<f64> {
    let cpu = Cpu::new();
    let tokens: Vec<usize> = b"a quick brown fox jumps"
        .iter()
        .map(|&b| b as usize)
        .collect();
    let out = model.forward(&cpu, &tokens[..20], 2, 10, false).unwrap();
    cpu.download(&out.logits).unwrap()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn converted(init: MonarchInit) -> (LlamaModel<Cpu>, LlamaModel<Cpu>) {
    let cpu = Cpu::new();
    let model = base();
    let text: Vec<usize> = "the cat and the dog, a bird. "
        .repeat(20)
        .bytes()
        .map(usize::from)
        .collect();
    let mut sampler = BatchSampler::new(&text, 16, 4, 1).unwrap();
    let mut setup = StageSetup::new(&model.config, &settings(init)).unwrap();
    setup.assess(&cpu, &model, &mut sampler, 2).unwrap();
    let apex = setup.convert(&cpu, &model, true).unwrap();
    (model, apex)
}

#[test]
fn conversion_at_identity_init_preserves_the_function() {
    let (model, apex) = converted(MonarchInit::Zeros);
    assert!(apex
        .layers
        .iter()
        .all(|l| l.ffn_mixer.is_some() && l.attn_mixer.is_some()));
    assert!(max_diff(&logits(&model), &logits(&apex)) < 1e-10);
}

#[test]
fn fusing_a_converted_model_is_exact() {
    let (model, apex) = converted(MonarchInit::Noise);
    let fused = apex.to_dense(&Cpu::new()).unwrap();
    let (unfused, dense) = (logits(&apex), logits(&fused));
    assert!(max_diff(&unfused, &dense) < 1e-10);
    // Noise makes M ≠ 0, so the conversion itself changed the function a little.
    assert!(max_diff(&unfused, &logits(&model)) > 0.0);
}
