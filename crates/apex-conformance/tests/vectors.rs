//! The committed golden vectors (tests/vectors, made by tools/make_vectors.py
//! with numpy + autograd, independent of this code) on every backend, and the
//! runner's behaviour on broken files. An unavailable backend's trial is
//! ignored (reported as skipped with its reason), never passed.

use apex_conformance::backends::{self, Available};
use apex_conformance::runner::{format_report, run_directory, run_file};
use apex_core::{ApexError, Backend};
use apex_cpu::CpuBackend;
use libtest_mimic::{Arguments, Trial};
use std::path::PathBuf;

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

/// The committed vectors on `backend` at `rtol`, or an ignored trial saying why not.
fn vector_trial<B: Backend>(label: &str, backend: Available<B>, rtol: f64) -> Trial {
    let name = format!("committed_vectors_pass::{label}");
    match backend {
        Ok(b) => Trial::test(name, move || {
            all_vectors_pass(&b, rtol);
            Ok(())
        }),
        Err(why) => {
            eprintln!("SKIPPED backend {label}: {why}");
            Trial::test(name, || Ok(())).with_ignored_flag(true)
        }
    }
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = vec![
        vector_trial("cpu_f32", backends::cpu_f32(), 1e-4),
        // Inputs are f32-rounded and expected values are f64 results stored as f32,
        // so f64 compute must agree to f32 storage precision.
        vector_trial("cpu_f64", backends::cpu_f64(), 1e-5),
        Trial::test("broken_files_are_reported_not_panicked", || {
            broken_files_are_reported_not_panicked();
            Ok(())
        }),
    ];
    #[cfg(feature = "wgpu")]
    trials.push(vector_trial("wgpu", backends::wgpu(), 1e-4));
    #[cfg(feature = "cuda")]
    trials.push(vector_trial("cuda", backends::cuda(), 1e-4));
    #[cfg(feature = "cuda")]
    trials.push(vector_trial(
        "cuda_emulated",
        backends::cuda_emulated(),
        1e-4,
    ));
    libtest_mimic::run(&args, trials).exit();
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
