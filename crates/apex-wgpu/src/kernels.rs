//! The WGSL sources (`kernels/wgsl/*.wgsl`, compiled into the crate) and the
//! compute entry points the backend dispatches.

/// One `.wgsl` file of `kernels/wgsl`: one op family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    Matmul,
    Elementwise,
    Reduce,
    Gather,
    Monarch,
    Norm,
    Rope,
    Softmax,
    Optim,
}

impl Shader {
    /// Every shader, for the naga validation test.
    #[cfg(test)]
    pub(crate) const ALL: [Shader; 9] = [
        Shader::Matmul,
        Shader::Elementwise,
        Shader::Reduce,
        Shader::Gather,
        Shader::Monarch,
        Shader::Norm,
        Shader::Rope,
        Shader::Softmax,
        Shader::Optim,
    ];

    /// The file name under `kernels/wgsl`.
    pub(crate) fn file(self) -> &'static str {
        match self {
            Shader::Matmul => "matmul.wgsl",
            Shader::Elementwise => "elementwise.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Gather => "gather.wgsl",
            Shader::Monarch => "monarch.wgsl",
            Shader::Norm => "norm.wgsl",
            Shader::Rope => "rope.wgsl",
            Shader::Softmax => "softmax.wgsl",
            Shader::Optim => "optim.wgsl",
        }
    }

    /// The WGSL source.
    pub(crate) fn source(self) -> &'static str {
        match self {
            Shader::Matmul => include_str!("../../../kernels/wgsl/matmul.wgsl"),
            Shader::Elementwise => include_str!("../../../kernels/wgsl/elementwise.wgsl"),
            Shader::Reduce => include_str!("../../../kernels/wgsl/reduce.wgsl"),
            Shader::Gather => include_str!("../../../kernels/wgsl/gather.wgsl"),
            Shader::Monarch => include_str!("../../../kernels/wgsl/monarch.wgsl"),
            Shader::Norm => include_str!("../../../kernels/wgsl/norm.wgsl"),
            Shader::Rope => include_str!("../../../kernels/wgsl/rope.wgsl"),
            Shader::Softmax => include_str!("../../../kernels/wgsl/softmax.wgsl"),
            Shader::Optim => include_str!("../../../kernels/wgsl/optim.wgsl"),
        }
    }
}

/// A compute entry point: its shader and function name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Kernel {
    pub shader: Shader,
    pub entry: &'static str,
}

impl Kernel {
    const fn new(shader: Shader, entry: &'static str) -> Self {
        Kernel { shader, entry }
    }

    pub(crate) const GEMM: Kernel = Kernel::new(Shader::Matmul, "gemm");
    pub(crate) const AXPBY: Kernel = Kernel::new(Shader::Elementwise, "axpby");
    pub(crate) const BINARY: Kernel = Kernel::new(Shader::Elementwise, "binary");
    pub(crate) const SCALE_COLUMNS: Kernel = Kernel::new(Shader::Elementwise, "scale_columns");
    pub(crate) const UNARY: Kernel = Kernel::new(Shader::Elementwise, "unary");
    pub(crate) const FILL: Kernel = Kernel::new(Shader::Elementwise, "fill");
    pub(crate) const COLUMN_DOT: Kernel = Kernel::new(Shader::Reduce, "column_dot");
    pub(crate) const GATHER_ROWS: Kernel = Kernel::new(Shader::Gather, "gather_rows");
    pub(crate) const GATHER_COLUMNS: Kernel = Kernel::new(Shader::Gather, "gather_columns");
    pub(crate) const MONARCH_FORWARD: Kernel = Kernel::new(Shader::Monarch, "monarch_forward");
    pub(crate) const MONARCH_TRANSPOSED: Kernel =
        Kernel::new(Shader::Monarch, "monarch_transposed");
    pub(crate) const SCATTER_ADD_ROWS: Kernel = Kernel::new(Shader::Gather, "scatter_add_rows");
    pub(crate) const RMS_NORM: Kernel = Kernel::new(Shader::Norm, "rms_norm");
    pub(crate) const RMS_NORM_BACKWARD: Kernel = Kernel::new(Shader::Norm, "rms_norm_backward");
    pub(crate) const RMS_NORM_WEIGHT_GRAD: Kernel =
        Kernel::new(Shader::Norm, "rms_norm_weight_grad");
    pub(crate) const ROPE: Kernel = Kernel::new(Shader::Rope, "rope");
    pub(crate) const CAUSAL_SOFTMAX: Kernel = Kernel::new(Shader::Softmax, "causal_softmax");
    pub(crate) const SOFTMAX_BACKWARD: Kernel = Kernel::new(Shader::Softmax, "softmax_backward");
    pub(crate) const CROSS_ENTROPY: Kernel = Kernel::new(Shader::Softmax, "cross_entropy");
    pub(crate) const ADAMW_STEP: Kernel = Kernel::new(Shader::Optim, "adamw_step");

    /// Every entry point the backend dispatches.
    #[cfg(test)]
    pub(crate) const ALL: [Kernel; 20] = [
        Kernel::GEMM,
        Kernel::AXPBY,
        Kernel::BINARY,
        Kernel::SCALE_COLUMNS,
        Kernel::UNARY,
        Kernel::FILL,
        Kernel::COLUMN_DOT,
        Kernel::GATHER_ROWS,
        Kernel::GATHER_COLUMNS,
        Kernel::MONARCH_FORWARD,
        Kernel::MONARCH_TRANSPOSED,
        Kernel::SCATTER_ADD_ROWS,
        Kernel::RMS_NORM,
        Kernel::RMS_NORM_BACKWARD,
        Kernel::RMS_NORM_WEIGHT_GRAD,
        Kernel::ROPE,
        Kernel::CAUSAL_SOFTMAX,
        Kernel::SOFTMAX_BACKWARD,
        Kernel::CROSS_ENTROPY,
        Kernel::ADAMW_STEP,
    ];
}

#[cfg(test)]
mod tests {
    //! Shader checks that need no adapter: every file of `kernels/wgsl` parses
    //! and validates with naga (the compiler wgpu itself runs), and every
    //! dispatched entry point exists in its file.
    use super::*;
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    use std::path::PathBuf;

    fn kernel_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../kernels/wgsl")
    }

    fn validate(name: &str, source: &str) -> naga::Module {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        module
    }

    #[test]
    fn every_wgsl_file_parses_and_validates() {
        let mut files: Vec<String> = std::fs::read_dir(kernel_dir())
            .expect("kernels/wgsl")
            .map(|entry| {
                entry
                    .expect("dir entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8")
            })
            .filter(|name| name.ends_with(".wgsl"))
            .collect();
        files.sort();
        for name in &files {
            let source = std::fs::read_to_string(kernel_dir().join(name)).expect("read");
            validate(name, &source);
        }
        let mut known: Vec<String> = Shader::ALL.iter().map(|s| s.file().to_string()).collect();
        known.sort();
        assert_eq!(files, known, "kernels/wgsl and Shader::ALL disagree");
    }

    #[test]
    fn every_dispatched_entry_point_exists() {
        for kernel in Kernel::ALL {
            let module = validate(kernel.shader.file(), kernel.shader.source());
            let entry = module
                .entry_points
                .iter()
                .find(|e| e.name == kernel.entry)
                .unwrap_or_else(|| panic!("{kernel:?} missing"));
            assert_eq!(entry.stage, naga::ShaderStage::Compute, "{kernel:?}");
        }
    }

    #[test]
    fn a_broken_shader_is_rejected() {
        // The validator is live: a type error must not pass.
        let source = "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }";
        let module = naga::front::wgsl::parse_str(source);
        let rejected = match module {
            Err(_) => true,
            Ok(m) => Validator::new(ValidationFlags::all(), Capabilities::empty())
                .validate(&m)
                .is_err(),
        };
        assert!(rejected);
    }
}
