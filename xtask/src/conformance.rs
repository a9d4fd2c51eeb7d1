//! `cargo xtask conformance`.

use apex_conformance::runner::{format_report, run_directory};
use apex_core::Backend;
use apex_cpu::CpuBackend;
use apex_cuda::CudaBackend;
use apex_wgpu::WgpuBackend;
use std::path::Path;

/// Runs the vectors in `dir` on the named backend; Ok(false) when any fails.
pub fn run(dir: &Path, backend: &str) -> Result<bool, String> {
    match backend {
        "cpu" | "cpu-f32" => run_on(&CpuBackend::<f32>::new(), dir, 1e-4),
        "cpu-f64" => run_on(&CpuBackend::<f64>::new(), dir, 1e-5),
        "wgpu" => run_on(&WgpuBackend::new().map_err(|e| e.to_string())?, dir, 1e-4),
        "cuda" => run_on(&CudaBackend::new().map_err(|e| e.to_string())?, dir, 1e-4),
        "cuda-emulated" => run_on(
            &CudaBackend::emulated().map_err(|e| e.to_string())?,
            dir,
            1e-4,
        ),
        other => Err(format!(
            "unknown backend `{other}` (available in this build: cpu, cpu-f64, wgpu, cuda, \
             cuda-emulated)"
        )),
    }
}

fn run_on<B: Backend>(backend: &B, dir: &Path, rtol: f64) -> Result<bool, String> {
    let reports = run_directory(backend, dir, rtol).map_err(|e| e.to_string())?;
    if reports.is_empty() {
        return Err(format!("no .safetensors vectors in {}", dir.display()));
    }
    println!(
        "backend {} — {} vectors from {} (rtol {rtol:e})",
        backend.name(),
        reports.len(),
        dir.display()
    );
    for report in &reports {
        print!("{}", format_report(report));
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    println!("{} passed, {failed} failed", reports.len() - failed);
    Ok(failed == 0)
}
