//! Per-backend counts of the device work a [`crate::CudaBackend`] issues:
//! kernel launches by name, cuBLAS calls, allocations, zero-fills and
//! host↔device traffic. At small sizes a training step's GPU time is set by
//! how many of these it issues, not by its FLOPs, and the counts are the same
//! on the emulator as on a GPU, so they can be measured (and bounded in tests)
//! on a machine without one.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// What a backend asked of its device since it was created or since
/// [`crate::CudaBackend::reset_counters`]. Sizes are in bytes of the
/// requested elements (a 0-element tensor counts as an allocation of 0 bytes).
///
/// ```
/// use apex_core::{ops, Backend, MatView};
/// # let Ok(gpu) = apex_cuda::CudaBackend::emulated() else { return Ok(()) };
/// let a = gpu.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
/// gpu.reset_counters();
/// let _c = ops::matmul(&gpu, &a, MatView::full(2, 2), &a, MatView::full(2, 2))?;
/// let counts = gpu.counters();
/// assert_eq!(counts.allocations, 1);
/// assert_eq!(counts.kernel_launches() + counts.cublas_calls, 1);
/// # Ok::<(), apex_core::ApexError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Kernel launches by entry point (`"elementwise"`, `"gemm_small"`, …).
    pub launches: BTreeMap<&'static str, u64>,
    /// `cublasGemmStridedBatchedEx` calls (real device only).
    pub cublas_calls: u64,
    /// Device buffers allocated (zero-filled or not, uploads and copy-on-write
    /// duplicates included).
    pub allocations: u64,
    pub allocated_bytes: u64,
    /// Allocations that were zero-filled: one memset each on a GPU.
    pub zero_fills: u64,
    pub zero_filled_bytes: u64,
    /// Host → device copies.
    pub uploads: u64,
    pub upload_bytes: u64,
    /// Device → host copies (each one waits for the queue to drain).
    pub downloads: u64,
    pub download_bytes: u64,
    /// Device → device copies (copy-on-write of a shared buffer).
    pub device_copies: u64,
    pub device_copy_bytes: u64,
}

impl Counters {
    /// Kernel launches of every name.
    pub fn kernel_launches(&self) -> u64 {
        self.launches.values().sum()
    }

    /// Everything queued on the stream: launches, cuBLAS calls, memsets and
    /// device copies (transfers are counted apart).
    pub fn device_calls(&self) -> u64 {
        self.kernel_launches() + self.cublas_calls + self.zero_fills + self.device_copies
    }

    /// Launches of kernel `name`.
    pub fn launches_of(&self, name: &str) -> u64 {
        self.launches.get(name).copied().unwrap_or(0)
    }
}

/// The shared, lockable counters of a backend and its clones.
#[derive(Debug, Default)]
pub(crate) struct CounterCell(Mutex<Counters>);

impl CounterCell {
    fn lock(&self) -> MutexGuard<'_, Counters> {
        // Counting never panics while holding the lock, so a poisoned lock
        // still holds consistent numbers.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn snapshot(&self) -> Counters {
        self.lock().clone()
    }

    pub fn reset(&self) {
        *self.lock() = Counters::default();
    }

    pub fn launch(&self, name: &'static str) {
        *self.lock().launches.entry(name).or_default() += 1;
    }

    pub fn cublas(&self) {
        self.lock().cublas_calls += 1;
    }

    /// An allocation of `len` floats, zero-filled or not.
    pub fn allocation(&self, len: usize, zeroed: bool) {
        let bytes = 4 * len as u64;
        let mut c = self.lock();
        c.allocations += 1;
        c.allocated_bytes += bytes;
        if zeroed {
            c.zero_fills += 1;
            c.zero_filled_bytes += bytes;
        }
    }

    pub fn upload(&self, len: usize) {
        let mut c = self.lock();
        c.uploads += 1;
        c.upload_bytes += 4 * len as u64;
    }

    pub fn download(&self, len: usize) {
        let mut c = self.lock();
        c.downloads += 1;
        c.download_bytes += 4 * len as u64;
    }

    pub fn device_copy(&self, len: usize) {
        let mut c = self.lock();
        c.device_copies += 1;
        c.device_copy_bytes += 4 * len as u64;
    }
}
