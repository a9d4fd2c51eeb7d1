//! The real device: the CUDA driver API and cuBLAS through cudarc, loaded at
//! run time (`dynamic-loading`), so nothing here needs CUDA at build time.
//!
//! One context and one stream per device, opened once per process and shared
//! by every [`crate::CudaBackend`] on that device (kernels are compiled once).
//! All work goes to that one stream, in submission order, so cudarc's
//! multi-stream event tracking is switched off.

use crate::device::{backend_error, next_device_id, Buffer, DeviceInfo, Launch};
use crate::kernels::{self, KernelArgs, Target};
use apex_core::Result;
use cudarc::cublas::{self, CudaBlas};
use cudarc::driver::{
    result as dresult, sys as dsys, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

/// A CUDA device with the kernels loaded.
pub(crate) struct DriverDevice {
    pub id: u64,
    pub info: DeviceInfo,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
    pub blas: Option<CudaBlas>,
}

impl fmt::Debug for DriverDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DriverDevice({}, cc {:?})",
            self.info.name, self.info.compute_capability
        )
    }
}

/// Whether a driver is installed and how many devices it sees, without
/// touching anything that would panic when libraries are missing.
pub(crate) fn probe() -> std::result::Result<usize, String> {
    // SAFETY: only tries to dlopen the library.
    if !unsafe { dsys::is_culib_present() } {
        return Err("no NVIDIA driver (libcuda not found)".into());
    }
    match CudaContext::device_count() {
        Ok(0) | Err(dresult::DriverError(dsys::cudaError_enum::CUDA_ERROR_NO_DEVICE)) => {
            Err("no CUDA device".into())
        }
        Ok(n) => Ok(n as usize),
        Err(e) => Err(format!("CUDA driver failed to initialise: {e:?}")),
    }
}

/// The device `ordinal`, opened on first use and cached for the process.
pub(crate) fn open(ordinal: usize) -> std::result::Result<Arc<crate::device::Device>, String> {
    static OPEN: OnceLock<Mutex<HashMap<usize, Arc<crate::device::Device>>>> = OnceLock::new();
    let mut devices = OPEN
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| "device cache poisoned".to_string())?;
    if let Some(device) = devices.get(&ordinal) {
        return Ok(Arc::clone(device));
    }
    let count = probe()?;
    if ordinal >= count {
        return Err(format!("no CUDA device {ordinal} ({count} present)"));
    }
    let device = Arc::new(crate::device::Device::Driver(DriverDevice::new(ordinal)?));
    devices.insert(ordinal, Arc::clone(&device));
    Ok(device)
}

fn driver_err(what: &str) -> impl Fn(dresult::DriverError) -> String + '_ {
    move |e| format!("{what}: {e:?}")
}

impl DriverDevice {
    fn new(ordinal: usize) -> std::result::Result<Self, String> {
        let nvrtc = kernels::nvrtc_version()?;
        let ctx = CudaContext::new(ordinal).map_err(driver_err("create context"))?;
        // SAFETY: every buffer and launch of this device uses the one stream
        // below, so no cross-stream synchronisation is needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        keep_freed_memory_pooled(&ctx);
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver_err("compute capability"))?;
        let attribute = |a| ctx.attribute(a).map_err(driver_err("device attribute"));
        let multiprocessors =
            attribute(dsys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as usize;
        let max_shared = attribute(
            dsys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        )?;
        let arch = (major * 10 + minor) as u32;
        let mut functions = HashMap::new();
        for file in kernels::FILES {
            let compiled = kernels::compile(file, Target::Cubin(arch), None)?;
            let module = ctx
                .load_module(Ptx::from_binary(compiled.image))
                .map_err(driver_err(file.name))?;
            for &entry in file.entries {
                let function = module.load_function(entry).map_err(driver_err(entry))?;
                if entry.starts_with("monarch_") {
                    // The fused Monarch kernels size their (dynamic) shared memory
                    // to the map; beyond 48 KB the driver wants an explicit opt-in.
                    let static_bytes = function
                        .get_attribute(
                            dsys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES,
                        )
                        .map_err(driver_err(entry))?;
                    function
                        .set_attribute(
                            dsys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                            max_shared - static_bytes,
                        )
                        .map_err(driver_err(entry))?;
                }
                functions.insert(entry, function);
            }
        }
        // SAFETY: only tries to dlopen the library.
        let blas = if unsafe { cublas::sys::is_culib_present() } {
            CudaBlas::new(Arc::clone(&stream)).ok()
        } else {
            None
        };
        let mut driver_version = 0;
        // SAFETY: the driver is loaded and initialised (context created).
        unsafe { dsys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .map_err(driver_err("driver version"))?;
        let info = DeviceInfo {
            name: ctx.name().map_err(driver_err("device name"))?,
            compute_capability: (major, minor),
            multiprocessors,
            max_shared_per_block: max_shared as usize,
            versions: format!(
                "driver API {}.{}, NVRTC {}.{}",
                driver_version / 1000,
                driver_version % 1000 / 10,
                nvrtc.0,
                nvrtc.1
            ),
            libraries: mapped_cuda_libraries(),
            cublas: blas.is_some(),
        };
        Ok(DriverDevice {
            id: next_device_id(),
            info,
            ctx,
            stream,
            functions,
            blas,
        })
    }

    fn wrap(&self, slice: CudaSlice<f32>, len: usize) -> Buffer {
        let addr = {
            let (addr, _no_events) = slice.device_ptr(&self.stream);
            addr
        };
        Buffer::Driver { slice, addr, len }
    }

    pub fn zeros(&self, len: usize) -> Result<Buffer> {
        let slice = self
            .stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(|e| backend_error(format!("allocate {len} floats: {e:?}")))?;
        Ok(self.wrap(slice, len))
    }

    pub fn uninit(&self, len: usize) -> Result<Buffer> {
        // SAFETY: f32 has no invalid bit patterns; callers only use this for
        // buffers a kernel writes completely before anything reads them.
        let slice = unsafe { self.stream.alloc::<f32>(len.max(1)) }
            .map_err(|e| backend_error(format!("allocate {len} floats: {e:?}")))?;
        Ok(self.wrap(slice, len))
    }

    pub fn upload(&self, data: &[f32]) -> Result<Buffer> {
        if data.is_empty() {
            return self.zeros(0);
        }
        let slice = self
            .stream
            .clone_htod(data)
            .map_err(|e| backend_error(format!("upload {} floats: {e:?}", data.len())))?;
        Ok(self.wrap(slice, data.len()))
    }

    pub fn download(&self, slice: &CudaSlice<f32>, len: usize) -> Result<Vec<f32>> {
        let mut data = self
            .stream
            .clone_dtoh(slice)
            .map_err(|e| backend_error(format!("download: {e:?}")))?;
        data.truncate(len);
        Ok(data)
    }

    pub fn duplicate(&self, slice: &CudaSlice<f32>, len: usize) -> Result<Buffer> {
        let copy = self
            .stream
            .clone_dtod(slice)
            .map_err(|e| backend_error(format!("copy: {e:?}")))?;
        Ok(self.wrap(copy, len))
    }

    pub fn launch<A: KernelArgs>(
        &self,
        name: &'static str,
        launch: Launch,
        args: &A,
    ) -> Result<()> {
        let function = self
            .functions
            .get(name)
            .ok_or_else(|| backend_error(format!("kernel `{name}` is not loaded")))?;
        self.ctx
            .bind_to_thread()
            .map_err(|e| backend_error(format!("bind context: {e:?}")))?;
        let mut params = [args as *const A as *mut c_void];
        // SAFETY: `A` is the kernel's single by-value parameter (KernelArgs
        // contract); the caller validated every view against its buffer, and
        // the buffers outlive the launch (stream-ordered frees).
        unsafe {
            dresult::launch_kernel(
                function.cu_function(),
                launch.grid,
                launch.block,
                launch.shared_bytes,
                self.stream.cu_stream(),
                &mut params,
            )
        }
        .map_err(|e| backend_error(format!("launch {name} {launch:?}: {e:?}")))
    }

    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| backend_error(format!("synchronize: {e:?}")))
    }

    /// The stream cuBLAS calls must use.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
}

/// Freed blocks go back to the device's memory pool instead of the OS, so
/// the many short-lived intermediates of a training step allocate in O(1).
fn keep_freed_memory_pooled(ctx: &CudaContext) {
    // SAFETY: plain attribute calls on the context's device; failure only
    // costs speed, so it is ignored.
    unsafe {
        if let Ok(pool) = dresult::device::get_default_mem_pool(ctx.cu_device()) {
            let mut threshold = u64::MAX;
            let _ = dresult::mem_pool::set_attribute(
                pool,
                dsys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut c_void,
            );
        }
    }
}

/// Paths of the CUDA libraries this process has mapped (Linux), so a report
/// can say which libcuda / libnvrtc / libcublas were actually found.
fn mapped_cuda_libraries() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut libraries: Vec<String> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| {
            ["libcuda.so", "libnvrtc", "libcublas"]
                .iter()
                .any(|name| path.contains(name))
        })
        .map(str::to_string)
        .collect();
    libraries.sort();
    libraries.dedup();
    libraries
}
