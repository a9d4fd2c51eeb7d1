//! Where kernels run: the CUDA driver (a real GPU) or the host emulator
//! (the same kernel sources compiled as C++, for CI without a GPU). The
//! backend above sees one interface: allocate, copy, launch.

use crate::driver::DriverDevice;
use crate::emulator::EmulatorDevice;
use crate::kernels::KernelArgs;
use apex_core::{ApexError, Result};
use cudarc::driver::CudaSlice;
use std::alloc::Layout;
use std::sync::atomic::{AtomicU64, Ordering};

/// Grid, block and dynamic shared memory of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Launch {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
}

/// What the backend knows about its device.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// e.g. "NVIDIA H100 80GB HBM3", or "host emulator".
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Streaming multiprocessors (sizes grids; 4 on the emulator).
    pub multiprocessors: usize,
    /// Largest dynamic shared memory one CTA may use, in bytes.
    pub max_shared_per_block: usize,
    /// Driver and NVRTC versions, as reported by the libraries.
    pub versions: String,
    /// Shared libraries the process mapped for this device (paths).
    pub libraries: Vec<String>,
    /// Whether dense GEMMs can go through cuBLAS.
    pub cublas: bool,
}

/// A device allocation of f32 elements.
#[derive(Debug)]
pub(crate) enum Buffer {
    Driver {
        slice: CudaSlice<f32>,
        addr: u64,
        len: usize,
    },
    Host(HostBuffer),
}

impl Buffer {
    /// Element count.
    pub fn len(&self) -> usize {
        match self {
            Buffer::Driver { len, .. } => *len,
            Buffer::Host(h) => h.len,
        }
    }

    /// Device address of element 0 (what a kernel argument carries).
    pub fn addr(&self) -> u64 {
        match self {
            Buffer::Driver { addr, .. } => *addr,
            Buffer::Host(h) => h.ptr as u64,
        }
    }
}

/// Host memory standing in for device memory on the emulator, aligned like
/// a cudaMalloc allocation (256 bytes) so float4 paths behave the same.
#[derive(Debug)]
pub(crate) struct HostBuffer {
    ptr: *mut f32,
    len: usize,
    layout: Layout,
}

// SAFETY: the buffer is plain memory; the backend hands out its address for
// writing only through `&mut` tensors, and launches are synchronous.
unsafe impl Send for HostBuffer {}
unsafe impl Sync for HostBuffer {}

impl HostBuffer {
    pub fn zeroed(len: usize) -> Result<Self> {
        let layout = Layout::from_size_align(len.max(1) * 4, 256)
            .map_err(|e| backend_error(format!("allocation of {len} floats: {e}")))?;
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut f32;
        if ptr.is_null() {
            return Err(backend_error(format!("out of host memory ({len} floats)")));
        }
        Ok(HostBuffer { ptr, len, layout })
    }

    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: ptr holds len initialised floats (zeroed at allocation).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as above, and `&mut self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { std::alloc::dealloc(self.ptr as *mut u8, self.layout) }
    }
}

/// The device of a backend.
#[derive(Debug)]
pub(crate) enum Device {
    Driver(DriverDevice),
    Emulator(EmulatorDevice),
}

/// Distinguishes devices, so a tensor is never handed to another device's kernels.
pub(crate) fn next_device_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Device {
    pub fn id(&self) -> u64 {
        match self {
            Device::Driver(d) => d.id,
            Device::Emulator(e) => e.id,
        }
    }

    pub fn info(&self) -> &DeviceInfo {
        match self {
            Device::Driver(d) => &d.info,
            Device::Emulator(e) => &e.info,
        }
    }

    /// `len` zero-filled floats.
    pub fn zeros(&self, len: usize) -> Result<Buffer> {
        match self {
            Device::Driver(d) => d.zeros(len),
            Device::Emulator(_) => Ok(Buffer::Host(HostBuffer::zeroed(len)?)),
        }
    }

    /// `len` floats whose contents are unspecified (a kernel writes them all).
    /// The emulator fills them with NaN, so a kernel or composite that reads
    /// an element nobody wrote fails the conformance tests there.
    pub fn uninit(&self, len: usize) -> Result<Buffer> {
        match self {
            Device::Driver(d) => d.uninit(len),
            Device::Emulator(_) => {
                let mut buffer = HostBuffer::zeroed(len)?;
                buffer.as_mut_slice().fill(f32::NAN);
                Ok(Buffer::Host(buffer))
            }
        }
    }

    pub fn upload(&self, data: &[f32]) -> Result<Buffer> {
        match self {
            Device::Driver(d) => d.upload(data),
            Device::Emulator(_) => {
                let mut buffer = HostBuffer::zeroed(data.len())?;
                buffer.as_mut_slice().copy_from_slice(data);
                Ok(Buffer::Host(buffer))
            }
        }
    }

    /// Waits for queued work and copies `buffer` back.
    pub fn download(&self, buffer: &Buffer) -> Result<Vec<f32>> {
        match (self, buffer) {
            (Device::Driver(d), Buffer::Driver { slice, len, .. }) => d.download(slice, *len),
            (Device::Emulator(_), Buffer::Host(h)) => Ok(h.as_slice().to_vec()),
            _ => Err(foreign_buffer()),
        }
    }

    /// A new buffer with the same contents (copy-on-write of shared tensors).
    pub fn duplicate(&self, buffer: &Buffer) -> Result<Buffer> {
        match (self, buffer) {
            (Device::Driver(d), Buffer::Driver { slice, len, .. }) => d.duplicate(slice, *len),
            (Device::Emulator(_), Buffer::Host(h)) => {
                let mut copy = HostBuffer::zeroed(h.len)?;
                copy.as_mut_slice().copy_from_slice(h.as_slice());
                Ok(Buffer::Host(copy))
            }
            _ => Err(foreign_buffer()),
        }
    }

    /// Queues kernel `name` with `args` (asynchronous on the driver); the grid
    /// is not empty ([`crate::CudaBackend`] skips empty launches).
    pub fn launch<A: KernelArgs>(
        &self,
        name: &'static str,
        launch: Launch,
        args: &A,
    ) -> Result<()> {
        match self {
            Device::Driver(d) => d.launch(name, launch, args),
            Device::Emulator(e) => e.launch(name, launch, args),
        }
    }

    /// Blocks until every queued operation has finished.
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Driver(d) => d.synchronize(),
            Device::Emulator(_) => Ok(()),
        }
    }
}

fn foreign_buffer() -> ApexError {
    backend_error("tensor belongs to another device".to_string())
}

/// An [`ApexError::Backend`] for this crate.
pub(crate) fn backend_error(message: String) -> ApexError {
    ApexError::Backend {
        backend: "cuda",
        message,
    }
}
