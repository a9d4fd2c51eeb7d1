//! The `apex` binary end to end: `eval` against the HF parity fixture, a tiny
//! `train` run writing every artefact, and the errors a user sees.

use std::path::PathBuf;
use std::process::Command;

fn apex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_apex"))
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf-tiny")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apex-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn eval_matches_transformers_on_the_parity_fixture() {
    let out = apex()
        .args(["eval", "--json", "--seq-len", "32", "--model"])
        .arg(fixture())
        .arg("--data")
        .arg(fixture().join("text.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
            .unwrap();
    let (g, w) = (
        got["mean_cross_entropy"].as_f64().unwrap(),
        want["mean_cross_entropy"].as_f64().unwrap(),
    );
    assert!((g - w).abs() < 1e-4, "apex eval {g}, transformers {w}");
    assert_eq!(got["windows"], want["windows"]);
}

#[test]
fn eval_reports_a_malformed_config_and_a_truncated_checkpoint() {
    let dir = temp_dir("broken");
    for f in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 64,,}").unwrap();
    let run = |dir: &PathBuf| {
        apex()
            .args(["eval", "--model"])
            .arg(dir)
            .arg("--data")
            .arg(fixture().join("text.txt"))
            .output()
            .unwrap()
    };
    let out = run(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json") && err.starts_with("error:"),
        "{err}"
    );

    std::fs::copy(fixture().join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model.safetensors") && err.contains("safetensors checkpoint"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_on_a_checkpoint_writes_metrics_plot_and_fused_models() {
    let out_dir = temp_dir("train");
    let out = apex()
        .args([
            "train",
            "--methods",
            "apex,lora",
            "--steps",
            "4",
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--eval-every",
            "2",
            "--eval-windows",
            "4",
            "--stages",
            "2",
            "--assess-batches",
            "1",
            "--val-fraction",
            "0.2",
            "--model",
        ])
        .arg(fixture())
        .arg("--data")
        .arg(fixture().join("text.txt"))
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("trainable%") && stdout.contains("apex") && stdout.contains("lora"));
    for f in ["metrics.jsonl", "loss.png", "summary.json"] {
        assert!(out_dir.join(f).exists(), "{f}");
    }
    for m in ["apex", "lora"] {
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            assert!(out_dir.join(m).join(f).exists(), "{m}/{f}");
        }
    }
    let metrics = std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stage_starts = events
        .iter()
        .filter(|e| e["event"] == "stage_start" && e["method"] == "apex")
        .count();
    assert_eq!(stage_starts, 2);
    // The fused APEX model is a plain checkpoint `apex eval` reads.
    let eval = apex()
        .args(["eval", "--seq-len", "32", "--model"])
        .arg(out_dir.join("apex"))
        .arg("--data")
        .arg(fixture().join("text.txt"))
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn train_rejects_an_unknown_method_and_data_without_a_model() {
    let out = apex()
        .args(["train", "--methods", "sgd", "--steps", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sgd"));
    let out = apex().args(["train", "--data", "x.txt"]).output().unwrap();
    assert!(!out.status.success());
}
