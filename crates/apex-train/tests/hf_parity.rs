//! Parity with HF transformers: the committed tiny `LlamaForCausalLM`
//! checkpoint (GQA, explicit head_dim, nested rope_theta, tied embeddings)
//! scored on its text must give the mean cross-entropy transformers computed
//! (tests/fixtures/hf-tiny/expected.json, written by tools/make_hf_parity.py).

use apex_cpu::CpuBackend;
use apex_model::LlamaModel;
use apex_train::{evaluate, EvalResult, TextTokenizer};
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf-tiny")
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check(result: EvalResult, want: &serde_json::Value) {
    assert_eq!(result.windows as u64, want["windows"].as_u64().unwrap());
    let ce = want["mean_cross_entropy"].as_f64().unwrap();
    assert!(
        (result.mean_cross_entropy - ce).abs() < 1e-4,
        "ours {} vs transformers {ce}",
        result.mean_cross_entropy
    );
    let ppl = want["perplexity"].as_f64().unwrap();
    assert!((result.perplexity - ppl).abs() / ppl < 1e-4);
}

#[test]
fn mean_cross_entropy_matches_transformers_in_f32_and_f64() {
    let want = expected();
    let tokenizer = TextTokenizer::from_file(&fixture().join("tokenizer.json")).unwrap();
    let text = std::fs::read_to_string(fixture().join("text.txt")).unwrap();
    let tokens = tokenizer.encode(&text).unwrap();
    assert_eq!(tokens.len() as u64, want["tokens"].as_u64().unwrap());
    let seq_len = want["seq_len"].as_u64().unwrap() as usize;

    let cpu = CpuBackend::<f32>::new();
    let model = LlamaModel::load(&cpu, &fixture()).unwrap();
    assert!(
        model.lm_head.is_none(),
        "tied embeddings: no lm_head tensor"
    );
    check(
        evaluate(&cpu, &model, &tokens, seq_len, 8, None).unwrap(),
        &want,
    );

    let cpu = CpuBackend::<f64>::new();
    let model = LlamaModel::load(&cpu, &fixture()).unwrap();
    check(
        evaluate(&cpu, &model, &tokens, seq_len, 8, None).unwrap(),
        &want,
    );
}
