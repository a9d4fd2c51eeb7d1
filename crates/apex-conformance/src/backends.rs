//! The backends a test run can reach. A backend that is absent here (no GPU,
//! no driver, feature off) is reported as skipped with its reason — never as
//! passed: test harnesses mark its trials *ignored*.

use apex_cpu::CpuBackend;

/// A backend to test, or the reason it is unavailable on this machine.
pub type Available<B> = Result<B, String>;

/// The CPU reference backend in f64 (always available).
pub fn cpu_f64() -> Available<CpuBackend<f64>> {
    Ok(CpuBackend::new())
}

/// The CPU backend in f32 (always available).
pub fn cpu_f32() -> Available<CpuBackend<f32>> {
    Ok(CpuBackend::new())
}

/// The wgpu backend (f32) on the default adapter, or why there is none
/// (no GPU driver and no lavapipe, or the `wgpu` feature is off).
#[cfg(feature = "wgpu")]
pub fn wgpu() -> Available<apex_wgpu::WgpuBackend> {
    apex_wgpu::WgpuBackend::new().map_err(|e| e.to_string())
}

/// The CUDA backend on device 0, or why it is unavailable (no driver, no
/// device, no NVRTC library).
#[cfg(feature = "cuda")]
pub fn cuda() -> Available<apex_cuda::CudaBackend> {
    apex_cuda::CudaBackend::new().map_err(|e| e.to_string())
}

/// The CUDA kernels run by the host emulator (needs a C++20 compiler).
#[cfg(feature = "cuda")]
pub fn cuda_emulated() -> Available<apex_cuda::CudaBackend> {
    apex_cuda::CudaBackend::emulated().map_err(|e| e.to_string())
}
