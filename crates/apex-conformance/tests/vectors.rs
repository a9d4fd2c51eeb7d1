//! The committed golden vectors (tests/vectors, made by tools/make_vectors.py
//! with numpy + autograd, independent of this code) on every backend, and the
//! runner's behaviour on broken files. An unavailable backend's trial is
//! ignored with a printed "SKIPPED backend …" — never passed.

use apex_conformance::runner::{format_report, run_directory, run_file};
use apex_core::{ApexError, Backend};
use apex_cpu::CpuBackend;
use libtest_mimic::{Arguments, Trial};
use std::path::PathBuf;

fn main() {
    let args = Arguments::from_args();
    let plain: Vec<(&str, fn())> = vec![
        (
            "committed_vectors_pass_on_cpu_f32",
            committed_vectors_pass_on_cpu_f32,
        ),
        (
            "committed_vectors_pass_on_cpu_f64_at_f32_input_precision",
            committed_vectors_pass_on_cpu_f64_at_f32_input_precision,
        ),
        (
            "broken_files_are_reported_not_panicked",
            broken_files_are_reported_not_panicked,
        ),
    ];
    let trials: Vec<Trial> = plain
        .into_iter()
        .map(|(name, body)| {
            Trial::test(name, move || {
                body();
                Ok(())
            })
        })
        .chain(wgpu_trials())
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// The vectors on the wgpu backend: a trial, ignored when there is no adapter.
#[cfg(feature = "wgpu")]
fn wgpu_trials() -> Vec<Trial> {
    const NAME: &str = "committed_vectors_pass_on_wgpu";
    vec![match apex_conformance::backends::wgpu() {
        Ok(wgpu) => Trial::test(NAME, move || {
            all_vectors_pass(&wgpu, 1e-4);
            Ok(())
        }),
        Err(why) => {
            eprintln!("SKIPPED backend wgpu: {why}");
            Trial::test(NAME, || Ok(())).with_ignored_flag(true)
        }
    }]
}

/// Without the `wgpu` feature there is no wgpu trial.
#[cfg(not(feature = "wgpu"))]
fn wgpu_trials() -> Vec<Trial> {
    Vec::new()
}

fn repo_dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(sub)
}

fn all_vectors_pass<B: Backend>(backend: &B, rtol: f64) {
    let reports = run_directory(backend, &repo_dir("tests/vectors"), rtol).expect("vector dir");
    assert!(
        reports.len() >= 30,
        "expected the committed vectors, found {}",
        reports.len()
    );
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(format_report)
        .collect();
    assert!(
        failed.is_empty(),
        "{} on {}:\n{}",
        failed.len(),
        backend.name(),
        failed.join("")
    );
}

fn committed_vectors_pass_on_cpu_f32() {
    all_vectors_pass(&CpuBackend::<f32>::new(), 1e-4);
}

fn committed_vectors_pass_on_cpu_f64_at_f32_input_precision() {
    // Inputs are f32-rounded and expected values are f64 results stored as f32,
    // so f64 compute must agree to f32 storage precision.
    all_vectors_pass(&CpuBackend::<f64>::new(), 1e-5);
}

fn broken_files_are_reported_not_panicked() {
    let cpu = CpuBackend::<f32>::new();
    let dir = repo_dir("tests/vectors-bad");
    for name in ["truncated", "bad_header_len", "malformed_json"] {
        let report = run_file(&cpu, &dir.join(format!("{name}.safetensors")), 1e-4);
        assert!(!report.passed(), "{name} passed");
        assert!(
            matches!(report.error, Some(ApexError::Format { .. })),
            "{name}: {:?}",
            report.error
        );
        assert!(format_report(&report).contains("ERROR"), "{name}");
    }
    let report = run_file(&cpu, &dir.join("wrong_shape.safetensors"), 1e-4);
    assert!(report.error.is_none());
    assert!(!report.passed());
    assert!(report.tensors.iter().any(|t| t.shape_mismatch.is_some()));
}
