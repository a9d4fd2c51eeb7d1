//! `apex plan` end to end: the binary reads the shipped configs and prints
//! the spec §6.5 totals.

use std::process::{Command, Output};

fn apex(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apex"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("the apex binary runs")
}

fn stdout_of(args: &[&str]) -> String {
    let output = apex(args);
    assert!(
        output.status.success(),
        "apex {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The value printed after `label` on its line, e.g. `trainable parameters:`.
fn total(stdout: &str, label: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"));
    line[label.len()..].trim().to_string()
}

#[test]
fn llama2_7b_reference_plan_prints_the_papers_numbers() {
    let out = stdout_of(&[
        "plan",
        "--config",
        "configs/llama2-7b.json",
        "--preset",
        "reference",
    ]);
    assert_eq!(total(&out, "trainable parameters:"), "3,490,809,344");
    assert_eq!(total(&out, "model parameters:"), "6,738,481,152");
    assert_eq!(total(&out, "trained fraction:"), "51.80%");
    assert!(out.starts_with("APEX plan for configs/llama2-7b.json (preset reference, first stage)"));
    for module in [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "embed_tokens",
        "lm_head",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(module)),
            "{module} row missing"
        );
    }
}

#[test]
fn gqa_reference_plan_counts_kv_groups() {
    let out = stdout_of(&[
        "plan",
        "--config",
        "configs/smollm2-135m.json",
        "--preset",
        "reference",
    ]);
    // Hand count (3 KV groups of r = 3 heads, d_h = 64, d = 576, 30 layers):
    // budget rule → 16 layers mix 1 group and tune 2 (q, o 2·192·576 each;
    // k, v 2·64·576 each; Monarch 2·8·8² + 2·64) = 590,976 per layer;
    // 14 layers tune 1 group = 294,912 per layer;
    // FFN t = 714: 3·714·576 + 2·16·18² + 3·288 = 1,245,024 per layer;
    // tied embedding 49,152·576 = 28,311,552.
    // 16·590,976 + 14·294,912 + 30·1,245,024 + 28,311,552 = 79,246,656.
    assert_eq!(total(&out, "trainable parameters:"), "79,246,656");
    assert_eq!(total(&out, "model parameters:"), "134,515,008");
    assert_eq!(total(&out, "trained fraction:"), "58.91%");
    assert!(out.contains("embed_tokens = lm_head"));
}

#[test]
fn overrides_change_the_count() {
    let out = stdout_of(&[
        "plan",
        "--config",
        "configs/llama2-7b.json",
        "--preset",
        "reference",
        "--train-embeddings",
        "false",
    ]);
    // Spec §6.5: the 32 layers alone.
    assert_eq!(total(&out, "trainable parameters:"), "3,228,599,808");
    assert!(
        out.starts_with("APEX plan for configs/llama2-7b.json (preset reference with overrides")
    );
}

#[test]
fn bad_input_fails_with_a_message() {
    let missing = apex(&["plan", "--config", "configs/no-such-model.json"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such-model.json"));

    let bad_ratio = apex(&[
        "plan",
        "--config",
        "configs/llama2-7b.json",
        "--u-ratio",
        "1.5",
    ]);
    assert!(!bad_ratio.status.success());
    assert!(String::from_utf8_lossy(&bad_ratio.stderr).contains("u_ratio"));
}
