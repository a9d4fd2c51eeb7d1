//! The kernel sources, their entry points, the argument structs that cross
//! the launch boundary, and NVRTC compilation.
//!
//! The sources live in `kernels/cuda/*.cu` at the repository root (one file
//! per op family) and are embedded here, so a built binary needs no source
//! tree. Every kernel takes one argument struct by value; each `#[repr(C)]`
//! struct below mirrors its C++ twin field for field. The host emulator
//! checks the two sizes agree on every launch.

use apex_core::MatView;
use cudarc::nvrtc;
use std::ffi::{c_char, CStr, CString};

/// One `.cu` file and the kernels it defines.
#[derive(Clone, Copy, Debug)]
pub struct KernelFile {
    /// File name in `kernels/cuda`, e.g. `"gemm.cu"`.
    pub name: &'static str,
    /// Its text, `#include "common.cuh"` not yet expanded.
    pub source: &'static str,
    /// The `extern "C"` entry points it defines.
    pub entries: &'static [&'static str],
}

/// `kernels/cuda/common.cuh`, spliced into every file by [`expanded_source`].
pub const COMMON: &str = include_str!("../../../kernels/cuda/common.cuh");

/// The elementwise family.
pub const ELEMENTWISE: &str = "elementwise";
/// Column dot products.
pub const COLUMN_DOT: &str = "column_dot";
/// Row and column gathers.
pub const GATHER: &str = "gather";
/// 128×128-tile GEMM.
pub const GEMM_LARGE: &str = "gemm_large";
/// 64×64-tile GEMM.
pub const GEMM_SMALL: &str = "gemm_small";
/// Split-K reduction.
pub const GEMM_SPLITK_REDUCE: &str = "gemm_splitk_reduce";
/// GEMM whose lanes walk interleaved batch entries.
pub const GEMM_BATCH_INNER: &str = "gemm_batch_inner";
/// RMSNorm forward, backward and weight gradient.
pub const RMS_NORM_FORWARD: &str = "rms_norm_forward";
pub const RMS_NORM_BACKWARD: &str = "rms_norm_backward";
pub const RMS_NORM_WEIGHT_GRAD: &str = "rms_norm_weight_grad";
/// Rotary embedding.
pub const ROPE: &str = "rope";
/// Causal softmax and its backward.
pub const CAUSAL_SOFTMAX: &str = "causal_softmax";
pub const SOFTMAX_BACKWARD: &str = "softmax_backward";
/// Token cross-entropy.
pub const CROSS_ENTROPY: &str = "cross_entropy";
/// Embedding backward.
pub const SCATTER_ADD_ROWS: &str = "scatter_add_rows";
/// AdamW update.
pub const ADAMW_STEP: &str = "adamw_step";

/// Every kernel file.
pub const FILES: &[KernelFile] = &[
    KernelFile {
        name: "elementwise.cu",
        source: include_str!("../../../kernels/cuda/elementwise.cu"),
        entries: &[ELEMENTWISE],
    },
    KernelFile {
        name: "reduce.cu",
        source: include_str!("../../../kernels/cuda/reduce.cu"),
        entries: &[COLUMN_DOT],
    },
    KernelFile {
        name: "gather.cu",
        source: include_str!("../../../kernels/cuda/gather.cu"),
        entries: &[GATHER],
    },
    KernelFile {
        name: "gemm.cu",
        source: include_str!("../../../kernels/cuda/gemm.cu"),
        entries: &[GEMM_LARGE, GEMM_SMALL, GEMM_BATCH_INNER, GEMM_SPLITK_REDUCE],
    },
    KernelFile {
        name: "monarch.cu",
        source: include_str!("../../../kernels/cuda/monarch.cu"),
        entries: &MONARCH_KERNELS,
    },
    KernelFile {
        name: "rmsnorm.cu",
        source: include_str!("../../../kernels/cuda/rmsnorm.cu"),
        entries: &[RMS_NORM_FORWARD, RMS_NORM_BACKWARD, RMS_NORM_WEIGHT_GRAD],
    },
    KernelFile {
        name: "rope.cu",
        source: include_str!("../../../kernels/cuda/rope.cu"),
        entries: &[ROPE],
    },
    KernelFile {
        name: "softmax.cu",
        source: include_str!("../../../kernels/cuda/softmax.cu"),
        entries: &[CAUSAL_SOFTMAX, SOFTMAX_BACKWARD],
    },
    KernelFile {
        name: "cross_entropy.cu",
        source: include_str!("../../../kernels/cuda/cross_entropy.cu"),
        entries: &[CROSS_ENTROPY],
    },
    KernelFile {
        name: "embedding.cu",
        source: include_str!("../../../kernels/cuda/embedding.cu"),
        entries: &[SCATTER_ADD_ROWS],
    },
    KernelFile {
        name: "adamw.cu",
        source: include_str!("../../../kernels/cuda/adamw.cu"),
        entries: &[ADAMW_STEP],
    },
];

/// Rows per CTA of the fused Monarch kernels, ascending.
pub const MONARCH_ROWS: [usize; 3] = [4, 8, 16];

const MONARCH_KERNELS: [&str; 12] = [
    "monarch_forward_r4",
    "monarch_forward_r8",
    "monarch_forward_r16",
    "monarch_forward_r4_vec",
    "monarch_forward_r8_vec",
    "monarch_forward_r16_vec",
    "monarch_transposed_r4",
    "monarch_transposed_r8",
    "monarch_transposed_r16",
    "monarch_transposed_r4_vec",
    "monarch_transposed_r8_vec",
    "monarch_transposed_r16_vec",
];

/// The fused Monarch kernel for `rows` per CTA (one of [`MONARCH_ROWS`]),
/// float4 loads (`vec`, needs p % 4 == 0) and direction.
pub fn monarch_kernel(transposed: bool, rows: usize, vec: bool) -> &'static str {
    let r = MONARCH_ROWS
        .iter()
        .position(|&x| x == rows)
        .expect("rows is one of MONARCH_ROWS");
    MONARCH_KERNELS[usize::from(transposed) * 6 + usize::from(vec) * 3 + r]
}

/// `file`'s source with `common.cuh` spliced in place of its include line
/// (NVRTC gets no include path at run time).
pub fn expanded_source(file: &KernelFile) -> String {
    file.source.replace("#include \"common.cuh\"", COMMON)
}

/// What NVRTC should produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Machine code for `sm_<arch>` (e.g. 90): the driver loads it without a
    /// JIT step, so the PTX ISA version NVRTC would emit does not matter.
    Cubin(u32),
    /// PTX for `compute_<arch>`, for inspection and `ptxas -v`.
    Ptx(u32),
}

/// A compiled kernel file: the image (cubin bytes or PTX text) and NVRTC's log.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub image: Vec<u8>,
    pub log: String,
}

/// The loaded NVRTC library's version, or why there is none.
pub fn nvrtc_version() -> Result<(i32, i32), String> {
    require_nvrtc()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is loaded (checked above); both pointers are valid.
    unsafe { nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| format!("nvrtcVersion: {e:?}"))?;
    Ok((major, minor))
}

fn require_nvrtc() -> Result<(), String> {
    // SAFETY: only probes whether the library can be opened.
    if unsafe { nvrtc::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(
            "NVRTC library not found (libnvrtc.so*): install the CUDA NVRTC \
             library and put its directory on LD_LIBRARY_PATH"
                .into(),
        )
    }
}

/// Compiles one kernel file with NVRTC. `include_dir` is passed as `-I`
/// (the CUDA runtime headers, for files that need `cuda_fp16.h` and friends).
pub fn compile(
    file: &KernelFile,
    target: Target,
    include_dir: Option<&str>,
) -> Result<Compiled, String> {
    require_nvrtc()?;
    let source = CString::new(expanded_source(file)).map_err(|e| e.to_string())?;
    let name = CString::new(file.name).map_err(|e| e.to_string())?;
    let mut options = vec![
        match target {
            Target::Cubin(arch) => format!("--gpu-architecture=sm_{arch}"),
            Target::Ptx(arch) => format!("--gpu-architecture=compute_{arch}"),
        },
        "--std=c++17".to_string(),
    ];
    if let Some(dir) = include_dir {
        options.push(format!("--include-path={dir}"));
    }
    let fail = |what: &str, e: nvrtc::result::NvrtcError| format!("{}: {what}: {e:?}", file.name);
    let program =
        nvrtc::result::create_program(&source, Some(&name)).map_err(|e| fail("create", e))?;
    // SAFETY: `program` is a live NVRTC program until destroy_program below.
    let result = unsafe {
        let compiled = nvrtc::result::compile_program(program, &options);
        let log = nvrtc::result::get_program_log(program)
            .map(|raw| {
                CStr::from_ptr(raw.as_ptr())
                    .to_string_lossy()
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        match compiled {
            Err(e) => Err(format!("{}: compilation failed ({e:?}):\n{log}", file.name)),
            Ok(()) => image(program, target)
                .map(|image| Compiled { image, log })
                .map_err(|e| fail("read image", e)),
        }
    };
    // SAFETY: created above and not destroyed yet.
    unsafe { nvrtc::result::destroy_program(program) }.map_err(|e| fail("destroy", e))?;
    result
}

/// The compiled image of `program`: cubin bytes, or PTX without its trailing NUL.
///
/// # Safety
/// `program` must be a successfully compiled, live NVRTC program.
unsafe fn image(
    program: nvrtc::sys::nvrtcProgram,
    target: Target,
) -> Result<Vec<u8>, nvrtc::result::NvrtcError> {
    let mut size = 0usize;
    let mut bytes;
    match target {
        Target::Cubin(_) => {
            nvrtc::sys::nvrtcGetCUBINSize(program, &mut size).result()?;
            bytes = vec![0u8; size];
            nvrtc::sys::nvrtcGetCUBIN(program, bytes.as_mut_ptr() as *mut c_char).result()?;
        }
        Target::Ptx(_) => {
            nvrtc::sys::nvrtcGetPTXSize(program, &mut size).result()?;
            bytes = vec![0u8; size];
            nvrtc::sys::nvrtcGetPTX(program, bytes.as_mut_ptr() as *mut c_char).result()?;
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
        }
    }
    Ok(bytes)
}

// ---- argument structs (mirrors of the C++ structs) ---------------------------

/// Marker for the `#[repr(C)]` argument structs below: each is exactly the
/// single by-value parameter of its kernels.
///
/// # Safety
/// The implementing type must be `#[repr(C)]` and match the C++ struct's
/// layout field for field (no implicit padding on either side).
pub(crate) unsafe trait KernelArgs: Sized {}

/// `View` in common.cuh: a [`MatView`] in 64-bit elements.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DevView {
    pub offset: i64,
    pub rows: i64,
    pub cols: i64,
    pub row_stride: i64,
    pub col_stride: i64,
}

impl From<MatView> for DevView {
    fn from(v: MatView) -> Self {
        DevView {
            offset: v.offset as i64,
            rows: v.rows as i64,
            cols: v.cols as i64,
            row_stride: v.row_stride as i64,
            col_stride: v.col_stride as i64,
        }
    }
}

/// Op codes of elementwise.cu (`EW_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum ElementwiseOp {
    Axpby = 0,
    Add = 1,
    Sub = 2,
    Mul = 3,
    Div = 4,
    Silu = 5,
    SiluGrad = 6,
    Sqrt = 7,
    Square = 8,
    Exp = 9,
    Neg = 10,
    Fill = 11,
}

/// `ElementwiseArgs` in elementwise.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ElementwiseArgs {
    pub x: u64,
    pub z: u64,
    pub y: u64,
    pub xv: DevView,
    pub zv: DevView,
    pub yv: DevView,
    pub alpha: f32,
    pub beta: f32,
    pub value: f32,
    pub op: i32,
}
unsafe impl KernelArgs for ElementwiseArgs {}

/// `ColumnDotArgs` in reduce.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColumnDotArgs {
    pub x: u64,
    pub z: u64,
    pub out: u64,
    pub xv: DevView,
    pub zv: DevView,
    pub out_offset: i64,
    pub beta: f32,
    pub pad: i32,
}
unsafe impl KernelArgs for ColumnDotArgs {}

/// `GatherArgs` in gather.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct GatherArgs {
    pub x: u64,
    pub out: u64,
    pub index: u64,
    pub rows: i64,
    pub cols: i64,
    pub count: i64,
    pub by_columns: i32,
    pub pad: i32,
}
unsafe impl KernelArgs for GatherArgs {}

/// `GemmArgs` in gemm.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmArgs {
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub workspace: u64,
    pub av: DevView,
    pub bv: DevView,
    pub cv: DevView,
    pub a_batch_stride: i64,
    pub b_batch_stride: i64,
    pub c_batch_stride: i64,
    pub batch: i64,
    pub m: i64,
    pub n: i64,
    pub k: i64,
    pub k_chunk: i64,
    pub job_base: i64,
    pub alpha: f32,
    pub beta: f32,
    pub splits: i32,
    pub a_k_fast: i32,
    pub b_n_fast: i32,
    pub pad: i32,
}
unsafe impl KernelArgs for GemmArgs {}

/// `MonarchArgs` in monarch.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct MonarchArgs {
    pub input: u64,
    pub out: u64,
    pub mid: u64,
    pub w_first: u64,
    pub w_second: u64,
    /// Optional addend (0: none) and its column scales.
    pub add: u64,
    pub add_scale: u64,
    pub inv: DevView,
    pub outv: DevView,
    pub addv: DevView,
    pub n: i64,
    pub beta: f32,
    pub nblocks: i32,
    pub block: i32,
    pub in_vec: i32,
}
unsafe impl KernelArgs for MonarchArgs {}

/// `RmsNormArgs` in rmsnorm.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RmsNormArgs {
    pub x: u64,
    pub weight: u64,
    pub inv_rms: u64,
    pub grad_y: u64,
    pub y: u64,
    pub inv_out: u64,
    pub rows: i64,
    pub d: i64,
    pub eps: f64,
}
unsafe impl KernelArgs for RmsNormArgs {}

/// `RopeArgs` in rope.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct RopeArgs {
    pub x: u64,
    pub table: u64,
    pub rows: i64,
    pub width: i64,
    pub half: i64,
    pub seq_len: i64,
}
unsafe impl KernelArgs for RopeArgs {}

/// `SoftmaxArgs` in softmax.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SoftmaxArgs {
    pub x: u64,
    pub probs: u64,
    pub rows: i64,
    pub s: i64,
    pub scale: f32,
    pub pad: i32,
}
unsafe impl KernelArgs for SoftmaxArgs {}

/// `CrossEntropyArgs` in cross_entropy.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct CrossEntropyArgs {
    pub logits: u64,
    pub labels: u64,
    pub losses: u64,
    pub grad: u64,
    pub rows: i64,
    pub vocab: i64,
    pub grad_scale: f64,
}
unsafe impl KernelArgs for CrossEntropyArgs {}

/// `ScatterArgs` in embedding.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScatterArgs {
    pub rows: u64,
    pub table: u64,
    pub targets: u64,
    pub offsets: u64,
    pub sources: u64,
    pub unique: i64,
    pub d: i64,
}
unsafe impl KernelArgs for ScatterArgs {}

/// `AdamWArgs` in adamw.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamWArgs {
    pub param: u64,
    pub grad: u64,
    pub m: u64,
    pub v: u64,
    pub len: i64,
    pub beta1: f32,
    pub beta2: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    pub grad_scale: f32,
    pub decay: f32,
    pub lr: f32,
    pub c1: f32,
    pub c2: f32,
    pub eps: f32,
}
unsafe impl KernelArgs for AdamWArgs {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_includes_common_and_defines_its_entries() {
        for file in FILES {
            assert!(
                file.source.contains("#include \"common.cuh\""),
                "{}",
                file.name
            );
            let source = expanded_source(file);
            assert!(!source.contains("#include \"common.cuh\""));
            for entry in file.entries {
                let defined = source.contains(&format!("APEX_KERNEL({entry},"))
                    || source.contains(&format!("APEX_KERNEL_MIN_BLOCKS({entry},"))
                    || source.contains(&format!("MONARCH_KERNEL({entry},"));
                assert!(defined, "{} does not define {entry}", file.name);
            }
        }
    }

    #[test]
    fn monarch_kernel_names_follow_their_parameters() {
        assert_eq!(monarch_kernel(false, 4, false), "monarch_forward_r4");
        assert_eq!(monarch_kernel(false, 16, true), "monarch_forward_r16_vec");
        assert_eq!(monarch_kernel(true, 8, false), "monarch_transposed_r8");
        assert_eq!(monarch_kernel(true, 16, true), "monarch_transposed_r16_vec");
    }

    #[test]
    fn argument_structs_have_no_padding() {
        // Sums of field sizes: any implicit padding would make the C++ and Rust
        // layouts disagree silently on the device (the emulator checks sizes too).
        assert_eq!(std::mem::size_of::<DevView>(), 40);
        assert_eq!(std::mem::size_of::<ElementwiseArgs>(), 3 * 8 + 3 * 40 + 16);
        assert_eq!(std::mem::size_of::<ColumnDotArgs>(), 3 * 8 + 2 * 40 + 8 + 8);
        assert_eq!(std::mem::size_of::<GatherArgs>(), 3 * 8 + 3 * 8 + 8);
        assert_eq!(std::mem::size_of::<GemmArgs>(), 4 * 8 + 3 * 40 + 9 * 8 + 24);
        assert_eq!(std::mem::size_of::<MonarchArgs>(), 7 * 8 + 3 * 40 + 8 + 16);
        assert_eq!(std::mem::size_of::<RmsNormArgs>(), 6 * 8 + 2 * 8 + 8);
        assert_eq!(std::mem::size_of::<RopeArgs>(), 2 * 8 + 4 * 8);
        assert_eq!(std::mem::size_of::<SoftmaxArgs>(), 2 * 8 + 2 * 8 + 8);
        assert_eq!(std::mem::size_of::<CrossEntropyArgs>(), 4 * 8 + 2 * 8 + 8);
        assert_eq!(std::mem::size_of::<ScatterArgs>(), 5 * 8 + 2 * 8);
        assert_eq!(std::mem::size_of::<AdamWArgs>(), 4 * 8 + 8 + 10 * 4);
    }
}
