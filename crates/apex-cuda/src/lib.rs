//! # apex-cuda
//!
//! The APEX [`Backend`] on NVIDIA GPUs: f32 tensors in device memory,
//! handwritten kernels (`kernels/cuda/*.cu`, one file per op family) compiled
//! at run time with NVRTC, and cuBLAS for dense products it can express.
//!
//! | op family | kernel file | notes |
//! | --- | --- | --- |
//! | axpby, binary, scale_columns, unary, fill | `elementwise.cu` | any strides, β = 0 never reads the output |
//! | column_dot | `reduce.cu` | deterministic (no atomics) |
//! | gather_rows, gather_columns | `gather.cu` | |
//! | gemm | `gemm.cu`, or cuBLAS | tiled + register-blocked, split-K; cuBLAS when every operand has a unit stride |
//! | Monarch forward / transposed apply | `monarch.cu` | both stages and the stride permutation fused |
//! | RMSNorm (+ backward, weight gradient) | `rmsnorm.cu` | [`apex_core::transformer_ops::TransformerOps`] from here down |
//! | RoPE | `rope.cu` | cos/sin table from the host, as on the CPU |
//! | causal softmax (+ backward) | `softmax.cu` | |
//! | cross-entropy (+ gradient) | `cross_entropy.cu` | log-sum-exp in double |
//! | embedding scatter-add | `embedding.cu` | CSR by destination: deterministic |
//! | AdamW | `adamw.cu` | |
//!
//! ## What a machine needs
//!
//! 1. Building needs no CUDA at all: cudarc loads every library at run time.
//! 2. Running needs the NVIDIA driver (`libcuda.so.1`), the NVRTC library
//!    (`libnvrtc.so.*`, from a CUDA toolkit or the `nvidia-cuda-nvrtc` wheel)
//!    on the loader path (`LD_LIBRARY_PATH` or `ldconfig`), and optionally
//!    cuBLAS (`libcublas.so.*`); without it every product uses the kernels.
//! 3. Without a driver or device, [`CudaBackend::new`] returns an error saying
//!    which is missing; nothing panics.
//!
//! ```no_run
//! use apex_core::{ops, Backend, MatView};
//! use apex_cuda::CudaBackend;
//!
//! let gpu = CudaBackend::new()?;
//! let a = gpu.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
//! let v = MatView::full(2, 2);
//! let c = ops::matmul(&gpu, &a, v, &a, v.t())?; // A·Aᵀ
//! assert_eq!(gpu.download(&c)?, vec![5.0, 11.0, 11.0, 25.0]);
//! # Ok::<(), apex_core::ApexError>(())
//! ```
//!
//! [`CudaBackend::emulated`] runs the same kernel sources on the CPU (compiled
//! as C++ against a small emulation of the CUDA built-ins): slow, but it is
//! how CI checks the kernels without a GPU.

mod counters;
mod device;
mod driver;
mod elementwise;
mod emulator;
mod gather;
mod gemm;
pub mod kernels;
mod monarch;
mod reduce;
mod tensor;
mod transformer;

pub use counters::Counters;
pub use device::DeviceInfo;
pub use tensor::CudaTensor;

use apex_core::layout::{check_gemm, check_indices, check_same_dims, check_writable, numel};
use apex_core::{
    ApexError, Backend, BatchView, BinaryOp, MatView, Monarch, Result, ScaledColumns, UnaryOp,
};
use counters::CounterCell;
use device::{backend_error, Device, Launch};
use elementwise::Scalars;
use kernels::ElementwiseOp;
use std::fmt;
use std::sync::Arc;

/// Which implementation dense products use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmPath {
    /// cuBLAS whenever the views allow it (a unit stride on every operand),
    /// the handwritten kernels otherwise.
    #[default]
    Auto,
    /// Always the handwritten kernels (for measurement and cross-checks).
    Kernels,
}

/// Tuning switches of a [`CudaBackend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CudaOptions {
    pub gemm: GemmPath,
    /// Let cuBLAS use TF32 tensor cores (about 1e-3 relative error: fails the
    /// f32 conformance tolerance, so off by default).
    pub tf32: bool,
    /// Use the fused Monarch kernels (off: the two-GEMM composite).
    pub fused_monarch: bool,
    /// Rows per CTA of the fused Monarch kernels (4, 8 or 16); `None` picks
    /// by size. For tuning runs: more rows reuse each fetched weight more
    /// often but need `rows·k·4` bytes of shared memory per CTA.
    pub monarch_rows: Option<usize>,
}

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions {
            gemm: GemmPath::Auto,
            tf32: false,
            fused_monarch: true,
            monarch_rows: None,
        }
    }
}

/// The CUDA backend: one device, shared by clones.
#[derive(Clone)]
pub struct CudaBackend {
    device: Arc<Device>,
    options: CudaOptions,
    counters: Arc<CounterCell>,
}

impl fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.device.info().name)
            .field("options", &self.options)
            .finish()
    }
}

impl CudaBackend {
    /// The first CUDA device, kernels compiled (once per process and device).
    /// Fails with the reason when there is no driver, no device or no NVRTC.
    pub fn new() -> Result<Self> {
        Self::on_device(0)
    }

    /// CUDA device `ordinal`.
    pub fn on_device(ordinal: usize) -> Result<Self> {
        Ok(CudaBackend {
            device: driver::open(ordinal).map_err(backend_error)?,
            options: CudaOptions::default(),
            counters: Arc::default(),
        })
    }

    /// The host emulator: the same kernels compiled as C++ and run on CPU
    /// threads. Needs a C++20 compiler (`$CXX` or `c++`) on first use.
    pub fn emulated() -> Result<Self> {
        Ok(CudaBackend {
            device: emulator::open().map_err(backend_error)?,
            options: CudaOptions::default(),
            counters: Arc::default(),
        })
    }

    /// How many CUDA devices the driver sees, or why none can be used
    /// (no driver library, no device). Never panics.
    pub fn probe() -> std::result::Result<usize, String> {
        driver::probe()
    }

    /// The same device with other options (tensors are interchangeable).
    /// The result shares this backend's [`Counters`].
    pub fn with_options(&self, options: CudaOptions) -> Self {
        CudaBackend {
            device: Arc::clone(&self.device),
            options,
            counters: Arc::clone(&self.counters),
        }
    }

    pub fn options(&self) -> CudaOptions {
        self.options
    }

    /// Name, compute capability, library versions and paths.
    pub fn info(&self) -> &DeviceInfo {
        self.device.info()
    }

    /// Waits until all queued work is done (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.device.synchronize()
    }

    /// The device work this backend (and its clones) issued since it was
    /// created or last [reset](Self::reset_counters): kernel launches by name,
    /// cuBLAS calls, allocations, zero-fills, transfers. Backends opened
    /// separately count separately even on one device. Counting costs one
    /// uncontended lock per event, next to microseconds per launch.
    pub fn counters(&self) -> Counters {
        self.counters.snapshot()
    }

    /// Sets every count of [`Self::counters`] to zero.
    pub fn reset_counters(&self) {
        self.counters.reset();
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// Queues kernel `name` (an empty grid launches nothing and counts nothing).
    pub(crate) fn launch<A: kernels::KernelArgs>(
        &self,
        name: &'static str,
        launch: Launch,
        args: &A,
    ) -> Result<()> {
        if launch.grid.0 == 0 || launch.grid.1 == 0 || launch.grid.2 == 0 {
            return Ok(());
        }
        self.counters.launch(name);
        self.device.launch(name, launch, args)
    }

    /// Counts a cuBLAS call about to be made.
    pub(crate) fn count_cublas(&self) {
        self.counters.cublas();
    }

    /// Copies `tensor` back to the host.
    pub(crate) fn download_tensor(&self, tensor: &CudaTensor) -> Result<Vec<f32>> {
        self.read(tensor)?;
        self.counters.download(tensor.len());
        self.device.download(&tensor.buffer)
    }

    /// The device address of a tensor this backend may read.
    pub(crate) fn read(&self, tensor: &CudaTensor) -> Result<u64> {
        if tensor.device != self.device.id() {
            return Err(backend_error(
                "tensor belongs to another device".to_string(),
            ));
        }
        Ok(tensor.buffer.addr())
    }

    /// The device address of a tensor about to be written: a buffer shared
    /// with other tensors is copied first (copy-on-write).
    pub(crate) fn write(&self, tensor: &mut CudaTensor) -> Result<u64> {
        self.read(tensor)?;
        if Arc::get_mut(&mut tensor.buffer).is_none() {
            let len = tensor.buffer.len();
            self.counters.allocation(len, false);
            self.counters.device_copy(len);
            tensor.buffer = Arc::new(self.device.duplicate(&tensor.buffer)?);
        }
        Ok(tensor.buffer.addr())
    }

    fn tensor(&self, buffer: device::Buffer, shape: &[usize]) -> CudaTensor {
        CudaTensor {
            buffer: Arc::new(buffer),
            shape: shape.to_vec(),
            device: self.device.id(),
        }
    }

    pub(crate) fn zeros_tensor(&self, shape: &[usize]) -> Result<CudaTensor> {
        self.counters.allocation(numel(shape), true);
        Ok(self.tensor(self.device.zeros(numel(shape))?, shape))
    }

    /// A tensor whose every element a kernel is about to write.
    pub(crate) fn uninit_tensor(&self, shape: &[usize]) -> Result<CudaTensor> {
        self.counters.allocation(numel(shape), false);
        Ok(self.tensor(self.device.uninit(numel(shape))?, shape))
    }

    pub(crate) fn upload_tensor(&self, data: &[f32], shape: &[usize]) -> Result<CudaTensor> {
        if data.len() != numel(shape) {
            return Err(ApexError::ShapeMismatch {
                op: "upload",
                expected: shape.to_vec(),
                got: vec![data.len()],
            });
        }
        self.counters.allocation(data.len(), false);
        self.counters.upload(data.len());
        Ok(self.tensor(self.device.upload(data)?, shape))
    }

    fn dims2(&self, tensor: &CudaTensor, op: &'static str) -> Result<(usize, usize)> {
        apex_core::layout::dims2(op, &tensor.shape)
    }

    /// The fused Monarch kernel when the map fits it, else the composite.
    #[allow(clippy::too_many_arguments)]
    fn monarch(
        &self,
        monarch: &Monarch<Self>,
        transposed: bool,
        x: &CudaTensor,
        x_view: MatView,
        add: Option<ScaledColumns<'_, Self>>,
        beta: f32,
        out: &mut CudaTensor,
        out_view: MatView,
    ) -> Result<CudaTensor> {
        let op = if transposed {
            "monarch.apply_transposed"
        } else {
            "monarch.forward"
        };
        check_same_dims(op, &[(&x_view, x.len()), (&out_view, out.len())])?;
        check_writable(op, &out_view)?;
        if let Some(a) = add {
            check_same_dims(op, &[(&a.view, a.y.len()), (&out_view, out.len())])?;
            MatView::row_vector(out_view.cols).check_fits(op, a.scale.len())?;
        }
        if self.options.fused_monarch {
            let fused = monarch::fused(
                self, monarch, transposed, x, x_view, add, beta, out, out_view,
            )?;
            if let Some(mid) = fused {
                return Ok(mid);
            }
        }
        let beta = match add {
            Some(a) => {
                self.scale_columns(a.y, a.view, a.scale, 0, beta, out, out_view)?;
                1.0
            }
            None => beta,
        };
        if transposed {
            monarch.apply_transposed_composite(self, x, x_view, beta, out, out_view)
        } else {
            monarch.forward_composite(self, x, x_view, beta, out, out_view)
        }
    }
}

impl Backend for CudaBackend {
    type Elem = f32;
    type Tensor = CudaTensor;

    fn name(&self) -> String {
        match &*self.device {
            Device::Driver(_) => "cuda-f32".into(),
            Device::Emulator(_) => "cuda-emulated-f32".into(),
        }
    }

    fn zeros(&self, shape: &[usize]) -> Result<CudaTensor> {
        self.zeros_tensor(shape)
    }

    fn empty(&self, shape: &[usize]) -> Result<CudaTensor> {
        self.uninit_tensor(shape)
    }

    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<CudaTensor> {
        self.upload_tensor(data, shape)
    }

    fn download(&self, tensor: &CudaTensor) -> Result<Vec<f32>> {
        self.download_tensor(tensor)
    }

    fn shape<'t>(&self, tensor: &'t CudaTensor) -> &'t [usize] {
        &tensor.shape
    }

    fn reshape(&self, tensor: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
        if numel(shape) != tensor.len() {
            return Err(ApexError::shape("reshape", &tensor.shape, shape));
        }
        Ok(CudaTensor {
            buffer: Arc::clone(&tensor.buffer),
            shape: shape.to_vec(),
            device: tensor.device,
        })
    }

    fn gemm(
        &self,
        batch: usize,
        alpha: f32,
        a: &CudaTensor,
        a_view: BatchView,
        b: &CudaTensor,
        b_view: BatchView,
        beta: f32,
        c: &mut CudaTensor,
        c_view: BatchView,
    ) -> Result<()> {
        let (m, n, k) = check_gemm(batch, &a_view, a.len(), &b_view, b.len(), &c_view, c.len())?;
        check_writable("gemm", &c_view.mat)?;
        let problem = gemm::Problem {
            batch,
            m,
            n,
            k,
            alpha,
            beta,
            a: a_view,
            b: b_view,
            c: c_view,
        };
        gemm::gemm(self, problem, a, b, c)
    }

    fn axpby(
        &self,
        alpha: f32,
        x: &CudaTensor,
        x_view: MatView,
        beta: f32,
        y: &mut CudaTensor,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims("axpby", &[(&x_view, x.len()), (&y_view, y.len())])?;
        check_writable("axpby", &y_view)?;
        let scalars = Scalars {
            alpha,
            beta,
            value: 0.0,
        };
        elementwise::run(
            self,
            ElementwiseOp::Axpby,
            scalars,
            Some((x, x_view)),
            None,
            y,
            y_view,
        )
    }

    fn binary(
        &self,
        op: BinaryOp,
        x: &CudaTensor,
        x_view: MatView,
        z: &CudaTensor,
        z_view: MatView,
        beta: f32,
        y: &mut CudaTensor,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims(
            "binary",
            &[(&x_view, x.len()), (&z_view, z.len()), (&y_view, y.len())],
        )?;
        check_writable("binary", &y_view)?;
        let op = match op {
            BinaryOp::Add => ElementwiseOp::Add,
            BinaryOp::Sub => ElementwiseOp::Sub,
            BinaryOp::Mul => ElementwiseOp::Mul,
            BinaryOp::Div => ElementwiseOp::Div,
        };
        let scalars = Scalars {
            alpha: 1.0,
            beta,
            value: 0.0,
        };
        elementwise::run(
            self,
            op,
            scalars,
            Some((x, x_view)),
            Some((z, z_view)),
            y,
            y_view,
        )
    }

    fn scale_columns(
        &self,
        x: &CudaTensor,
        x_view: MatView,
        v: &CudaTensor,
        v_offset: usize,
        beta: f32,
        y: &mut CudaTensor,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims("scale_columns", &[(&x_view, x.len()), (&y_view, y.len())])?;
        check_writable("scale_columns", &y_view)?;
        MatView {
            offset: v_offset,
            ..MatView::row_vector(x_view.cols)
        }
        .check_fits("scale_columns", v.len())?;
        // The vector as a view broadcast down the rows.
        let broadcast = MatView {
            offset: v_offset,
            rows: x_view.rows,
            cols: x_view.cols,
            row_stride: 0,
            col_stride: 1,
        };
        let scalars = Scalars {
            alpha: 1.0,
            beta,
            value: 0.0,
        };
        elementwise::run(
            self,
            ElementwiseOp::Mul,
            scalars,
            Some((x, x_view)),
            Some((v, broadcast)),
            y,
            y_view,
        )
    }

    fn column_dot(
        &self,
        x: &CudaTensor,
        x_view: MatView,
        z: &CudaTensor,
        z_view: MatView,
        beta: f32,
        out: &mut CudaTensor,
        out_offset: usize,
    ) -> Result<()> {
        check_same_dims("column_dot", &[(&x_view, x.len()), (&z_view, z.len())])?;
        MatView {
            offset: out_offset,
            ..MatView::row_vector(x_view.cols)
        }
        .check_fits("column_dot", out.len())?;
        reduce::column_dot(self, x, x_view, z, z_view, beta, out, out_offset)
    }

    fn unary(
        &self,
        op: UnaryOp,
        x: &CudaTensor,
        x_view: MatView,
        y: &mut CudaTensor,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims("unary", &[(&x_view, x.len()), (&y_view, y.len())])?;
        check_writable("unary", &y_view)?;
        let op = match op {
            UnaryOp::Silu => ElementwiseOp::Silu,
            UnaryOp::SiluGrad => ElementwiseOp::SiluGrad,
            UnaryOp::Sqrt => ElementwiseOp::Sqrt,
            UnaryOp::Square => ElementwiseOp::Square,
            UnaryOp::Exp => ElementwiseOp::Exp,
            UnaryOp::Neg => ElementwiseOp::Neg,
        };
        let scalars = Scalars {
            alpha: 1.0,
            beta: 0.0,
            value: 0.0,
        };
        elementwise::run(self, op, scalars, Some((x, x_view)), None, y, y_view)
    }

    fn fill(&self, y: &mut CudaTensor, y_view: MatView, value: f32) -> Result<()> {
        y_view.check_fits("fill", y.len())?;
        check_writable("fill", &y_view)?;
        let scalars = Scalars {
            alpha: 1.0,
            beta: 0.0,
            value,
        };
        elementwise::run(self, ElementwiseOp::Fill, scalars, None, None, y, y_view)
    }

    fn gather_rows(&self, x: &CudaTensor, index: &[usize]) -> Result<CudaTensor> {
        let (rows, cols) = self.dims2(x, "gather_rows")?;
        check_indices("gather_rows", index, rows)?;
        gather::gather(self, x, (rows, cols), index, false)
    }

    fn gather_columns(&self, x: &CudaTensor, index: &[usize]) -> Result<CudaTensor> {
        let (rows, cols) = self.dims2(x, "gather_columns")?;
        check_indices("gather_columns", index, cols)?;
        gather::gather(self, x, (rows, cols), index, true)
    }

    fn monarch_forward(
        &self,
        monarch: &Monarch<Self>,
        x: &CudaTensor,
        x_view: MatView,
        beta: f32,
        out: &mut CudaTensor,
        out_view: MatView,
    ) -> Result<CudaTensor> {
        self.monarch(monarch, false, x, x_view, None, beta, out, out_view)
    }

    fn monarch_apply_transposed(
        &self,
        monarch: &Monarch<Self>,
        g: &CudaTensor,
        g_view: MatView,
        beta: f32,
        out: &mut CudaTensor,
        out_view: MatView,
    ) -> Result<CudaTensor> {
        self.monarch(monarch, true, g, g_view, None, beta, out, out_view)
    }

    fn monarch_add_scaled(
        &self,
        monarch: &Monarch<Self>,
        transposed: bool,
        x: &CudaTensor,
        x_view: MatView,
        scaled: ScaledColumns<'_, Self>,
        beta: f32,
        out: &mut CudaTensor,
        out_view: MatView,
    ) -> Result<CudaTensor> {
        self.monarch(
            monarch,
            transposed,
            x,
            x_view,
            Some(scaled),
            beta,
            out,
            out_view,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_overlapping_outputs_are_refused() {
        let ok = MatView::full(3, 4);
        assert!(check_writable("t", &ok).is_ok());
        assert!(check_writable("t", &ok.t()).is_ok());
        let broadcast = MatView {
            row_stride: 0,
            ..ok
        };
        assert!(check_writable("t", &broadcast).is_err());
        let overlapping = MatView {
            row_stride: 2,
            ..ok
        };
        assert!(check_writable("t", &overlapping).is_err());
        // The Monarch interleaved layout: column stride b, rows k apart.
        let interleaved = MatView {
            offset: 1,
            rows: 5,
            cols: 3,
            row_stride: 12,
            col_stride: 4,
        };
        assert!(check_writable("t", &interleaved).is_ok());
        // A single column with any stride, and empty views, are fine.
        let diagonal = MatView {
            offset: 0,
            rows: 4,
            cols: 1,
            row_stride: 5,
            col_stride: 1,
        };
        assert!(check_writable("t", &diagonal).is_ok());
        assert!(check_writable("t", &MatView::full(0, 3)).is_ok());
    }
}
