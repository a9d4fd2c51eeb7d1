//! The host emulator: the kernel sources of `kernels/cuda` compiled as C++20
//! against `emulator/cuda_emu.h` into a shared library, and launched through
//! it. CI has no GPU, so this is how the kernels' index math, bounds guards,
//! barriers and the host-side launch code (grids, shared-memory sizing,
//! argument structs) get exercised there: the conformance suite runs on it
//! as backend `cuda-emulated`. It needs a C++20 compiler (`$CXX` or `c++`);
//! without one it reports why and the trials are skipped, never passed.

use crate::device::{backend_error, next_device_id, Device, DeviceInfo, Launch};
use crate::kernels::{self, KernelArgs};
use apex_core::Result;
use std::ffi::{c_char, c_void, CStr, CString};
use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};

const RUNTIME: &str = include_str!("../emulator/cuda_emu.h");
const FLAGS: &[&str] = &[
    "-std=c++20",
    "-O2",
    "-shared",
    "-fPIC",
    "-pthread",
    "-fno-strict-aliasing",
    "-w",
];

type LaunchFn = unsafe extern "C" fn(
    *const c_char,
    *const c_void,
    usize,
    *const u32,
    *const u32,
    u32,
    *mut c_char,
    usize,
) -> i32;

/// The compiled emulator library.
pub(crate) struct EmulatorDevice {
    pub id: u64,
    pub info: DeviceInfo,
    launch: LaunchFn,
    _library: libloading::Library,
}

impl fmt::Debug for EmulatorDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmulatorDevice({})", self.info.libraries.join(", "))
    }
}

/// The emulator, built on first use (cached on disk by source hash) and
/// shared by the process.
pub(crate) fn open() -> std::result::Result<Arc<Device>, String> {
    static OPEN: OnceLock<std::result::Result<Arc<Device>, String>> = OnceLock::new();
    OPEN.get_or_init(|| {
        let path = build()?;
        // SAFETY: a library we just compiled from our own sources; its static
        // initialisers only fill the kernel registry.
        let library = unsafe { libloading::Library::new(&path) }
            .map_err(|e| format!("load {}: {e}", path.display()))?;
        // SAFETY: the symbol has exactly the LaunchFn signature (cuda_emu.h).
        let launch: LaunchFn = *unsafe { library.get::<LaunchFn>(b"apex_emu_launch\0") }
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Arc::new(Device::Emulator(EmulatorDevice {
            id: next_device_id(),
            info: DeviceInfo {
                name: "host emulator".into(),
                compute_capability: (9, 0),
                multiprocessors: 4,
                max_shared_per_block: 227 * 1024,
                versions: "kernels compiled as C++20".into(),
                libraries: vec![path.display().to_string()],
                cublas: false,
            },
            launch,
            _library: library,
        })))
    })
    .clone()
}

/// Compiles the emulator library unless a build of the same sources exists.
fn build() -> std::result::Result<PathBuf, String> {
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let mut unity = String::from("#define APEX_CUDA_EMULATOR 1\n");
    unity.push_str(RUNTIME);
    for file in kernels::FILES {
        unity.push_str(&format!("\n// ---- {} ----\n", file.name));
        unity.push_str(&kernels::expanded_source(file));
    }
    let hash = fnv1a(format!("{compiler}{FLAGS:?}{unity}").as_bytes());
    let dir = std::env::var_os("APEX_CUDA_EMULATOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("apex-cuda-emulator"));
    let library = dir.join(format!("libapex_cuda_emu-{hash:016x}.so"));
    if library.exists() {
        return Ok(library);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Unique scratch names: concurrent test processes may build at once; the
    // final rename is atomic.
    let scratch = format!("{hash:016x}-{}", std::process::id());
    let source = dir.join(format!("unity-{scratch}.cpp"));
    let partial = dir.join(format!("lib-{scratch}.so.partial"));
    std::fs::write(&source, unity).map_err(|e| format!("{}: {e}", source.display()))?;
    let output = Command::new(&compiler)
        .args(FLAGS)
        .arg(&source)
        .arg("-o")
        .arg(&partial)
        .output()
        .map_err(|e| format!("no C++ compiler for the kernel emulator (`{compiler}`: {e})"))?;
    let _ = std::fs::remove_file(&source);
    if !output.status.success() {
        return Err(format!(
            "`{compiler}` failed to build the kernel emulator:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::rename(&partial, &library).map_err(|e| format!("{}: {e}", library.display()))?;
    Ok(library)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl EmulatorDevice {
    pub fn launch<A: KernelArgs>(
        &self,
        name: &'static str,
        launch: Launch,
        args: &A,
    ) -> Result<()> {
        let c_name = CString::new(name).map_err(|e| backend_error(e.to_string()))?;
        let grid = [launch.grid.0, launch.grid.1, launch.grid.2];
        let block = [launch.block.0, launch.block.1, launch.block.2];
        let mut error = [0 as c_char; 512];
        // SAFETY: `args` is the kernel's argument struct (KernelArgs contract;
        // the library also checks its size); every address inside it was
        // validated against its buffer by the caller.
        let code = unsafe {
            (self.launch)(
                c_name.as_ptr(),
                args as *const A as *const c_void,
                std::mem::size_of::<A>(),
                grid.as_ptr(),
                block.as_ptr(),
                launch.shared_bytes,
                error.as_mut_ptr(),
                error.len(),
            )
        };
        if code == 0 {
            return Ok(());
        }
        // SAFETY: the library NUL-terminates its message within the buffer.
        let message = unsafe { CStr::from_ptr(error.as_ptr()) };
        Err(backend_error(format!(
            "emulated launch failed: {}",
            message.to_string_lossy()
        )))
    }
}
