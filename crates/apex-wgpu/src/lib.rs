//! # apex-wgpu
//!
//! The APEX [`Backend`] on [wgpu](https://wgpu.rs): every primitive is a WGSL
//! compute shader from `kernels/wgsl/`, so APEX runs on any GPU wgpu drives —
//! and, through Mesa's lavapipe, on a CPU-only CI machine.
//!
//! | platform | wgpu backend | notes |
//! |---|---|---|
//! | Linux, Windows, Android | Vulkan | NVIDIA, AMD, Intel; lavapipe (`apt-get install mesa-vulkan-drivers libvulkan1`) is a software Vulkan for CI |
//! | macOS, iOS | Metal | |
//! | Windows | DX12 | |
//!
//! | op family | shader | what runs |
//! |---|---|---|
//! | [`Backend::gemm`] | `matmul.wgsl` | batched strided GEMM, workgroup-shared tiles with 8×8/4×4/2×2 register blocks chosen per shape |
//! | [`Backend::axpby`], [`Backend::binary`], [`Backend::scale_columns`], [`Backend::unary`], [`Backend::fill`] | `elementwise.wgsl` | one invocation per element, strided views |
//! | [`Backend::column_dot`] | `reduce.wgsl` | per-column reduction in workgroup memory, deterministic order |
//! | [`Backend::gather_rows`], [`Backend::gather_columns`] | `gather.wgsl` | index lists checked on the host |
//! | [`Backend::monarch_forward`], [`Backend::monarch_apply_transposed`] | `monarch.wgsl` | both block stages and the stride permutation fused in one dispatch (k ≤ 4096; larger k runs the two-GEMM composite) |
//! | `TransformerOps::rms_norm` (+ backward) | `norm.wgsl` | one workgroup per row, fixed-order reduction; weight gradient per column |
//! | `TransformerOps::rope` | `rope.wgsl` | cos/sin table from the host in f64 |
//! | `TransformerOps::causal_softmax`, `softmax_backward`, `cross_entropy` | `softmax.wgsl` | one workgroup per row; only the per-row losses are read back |
//! | `TransformerOps::scatter_add_rows` | `gather.wgsl` | sources grouped per destination on the host: no float atomics, CPU summation order |
//! | `TransformerOps::adamw_step` | `optim.wgsl` | elementwise, bias corrections from the host in f64 |
//!
//! How it works:
//! 1. Tensors live in storage buffers ([`WgpuTensor`]) and stay on the device
//!    between ops; only [`Backend::download`] reads back.
//! 2. Dispatches are recorded into one command encoder and submitted in
//!    batches; pipelines are compiled once per entry point (and tile variant)
//!    and cached.
//! 3. Every view is validated with apex-core's checkers before a dispatch, and
//!    every shader guards its bounds; wgpu's own errors come back as
//!    [`apex_core::ApexError::Backend`], never as a panic.
//! 4. Elements are f32; β = 0 means the output is not read, as in the CPU reference.
//!
//! ```no_run
//! use apex_core::{ops, Backend, MatView};
//! use apex_wgpu::WgpuBackend;
//!
//! let gpu = WgpuBackend::new()?; // Err when no adapter: install lavapipe or a GPU driver
//! let a = gpu.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
//! let v = MatView::full(2, 2);
//! let c = ops::matmul(&gpu, &a, v, &a, v.t())?; // A·Aᵀ
//! assert_eq!(gpu.download(&c)?, vec![5.0, 11.0, 11.0, 25.0]);
//! # Ok::<(), apex_core::ApexError>(())
//! ```

mod device;
mod elementwise;
mod gather;
mod kernels;
mod matmul;
mod monarch;
mod params;
mod reduce;
mod tensor;
mod transformer;

pub use tensor::WgpuTensor;

use apex_core::layout::{check_gemm, check_same_dims, check_writable};
use apex_core::{ApexError, Backend, BatchView, BinaryOp, MatView, Monarch, Result, UnaryOp};
use device::Gpu;
use elementwise::Scalars;
use kernels::Kernel;
use std::fmt;
use std::sync::Arc;

/// What the backend runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. `"NVIDIA H100 80GB HBM3"` or `"llvmpipe (LLVM 15.0.6, 256 bits)"`.
    pub name: String,
    /// The graphics API: `"Vulkan"`, `"Metal"`, `"Dx12"`.
    pub api: String,
    /// The driver and its version, as the adapter reports them.
    pub driver: String,
    /// True for a CPU (software) implementation such as lavapipe: correct but
    /// orders of magnitude slower than a GPU.
    pub software: bool,
}

/// The wgpu backend (f32). Cloning shares the device.
#[derive(Clone)]
pub struct WgpuBackend {
    gpu: Arc<Gpu>,
}

impl fmt::Debug for WgpuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WgpuBackend")
            .field("adapter", &self.gpu.info().name)
            .finish()
    }
}

impl WgpuBackend {
    /// Opens the default adapter (a discrete GPU if there is one). The usual
    /// wgpu variables choose another: `WGPU_BACKEND=vulkan|metal|dx12`,
    /// `WGPU_ADAPTER_NAME=<substring>`, `WGPU_POWER_PREF=low|high`.
    ///
    /// Fails with [`ApexError::Backend`] when no adapter exists, e.g.
    /// "no wgpu adapter (install mesa-vulkan-drivers for lavapipe)".
    pub fn new() -> Result<Self> {
        Ok(WgpuBackend {
            gpu: Arc::new(Gpu::open()?),
        })
    }

    /// The adapter this backend runs on.
    pub fn adapter(&self) -> AdapterSummary {
        let info = self.gpu.info();
        AdapterSummary {
            name: info.name.clone(),
            api: format!("{:?}", info.backend),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            software: info.device_type == wgpu::DeviceType::Cpu,
        }
    }

    /// Submits all recorded work and waits for the device to finish it (for
    /// timing; results are read with [`Backend::download`], which waits itself).
    pub fn synchronize(&self) -> Result<()> {
        self.gpu.synchronize()
    }
}

impl Backend for WgpuBackend {
    type Elem = f32;
    type Tensor = WgpuTensor;

    fn name(&self) -> String {
        let adapter = self.adapter();
        format!("wgpu-f32 [{}, {}]", adapter.name, adapter.api)
    }

    fn zeros(&self, shape: &[usize]) -> Result<WgpuTensor> {
        let len = shape.iter().product();
        Ok(WgpuTensor::new(self.gpu.storage(len, None)?, shape))
    }

    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<WgpuTensor> {
        if data.len() != shape.iter().product::<usize>() {
            return Err(ApexError::ShapeMismatch {
                op: "upload",
                expected: shape.to_vec(),
                got: vec![data.len()],
            });
        }
        Ok(WgpuTensor::new(
            self.gpu.storage(data.len(), Some(data))?,
            shape,
        ))
    }

    fn download(&self, tensor: &WgpuTensor) -> Result<Vec<f32>> {
        self.gpu.read(tensor.buffer(), tensor.len())
    }

    fn shape<'t>(&self, tensor: &'t WgpuTensor) -> &'t [usize] {
        tensor.shape()
    }

    fn reshape(&self, tensor: &WgpuTensor, shape: &[usize]) -> Result<WgpuTensor> {
        tensor.reshaped(shape)
    }

    fn gemm(
        &self,
        batch: usize,
        alpha: f32,
        a: &WgpuTensor,
        a_view: BatchView,
        b: &WgpuTensor,
        b_view: BatchView,
        beta: f32,
        c: &mut WgpuTensor,
        c_view: BatchView,
    ) -> Result<()> {
        let (m, n, k) = check_gemm(batch, &a_view, a.len(), &b_view, b.len(), &c_view, c.len())?;
        check_writable("gemm", &c_view.mat)?;
        if batch == 0 || m == 0 || n == 0 {
            return Ok(());
        }
        let c_buffer = c.buffer_mut(&self.gpu)?;
        matmul::gemm(
            &self.gpu,
            batch,
            (m, n, k),
            alpha,
            (a.buffer(), &a_view),
            (b.buffer(), &b_view),
            beta,
            (c_buffer, &c_view),
        )
    }

    fn axpby(
        &self,
        alpha: f32,
        x: &WgpuTensor,
        x_view: MatView,
        beta: f32,
        y: &mut WgpuTensor,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims("axpby", &[(&x_view, x.len()), (&y_view, y.len())])?;
        check_writable("axpby", &y_view)?;
        let y_buffer = y.buffer_mut(&self.gpu)?;
        elementwise::dispatch(
            &self.gpu,
            Kernel::AXPBY,
            Scalars {
                alpha,
                beta,
                ..Scalars::default()
            },
            Some((x.buffer(), &x_view)),
            None,
            (y_buffer, &y_view),
        )
    }

    fn binary(
        &self,
        op: BinaryOp,
        x: &WgpuTensor,
        x_view: MatView,
        z: &WgpuTensor,
        z_view: MatView,
        beta: f32,
        y: &mut WgpuTensor,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims(
            "binary",
            &[(&x_view, x.len()), (&z_view, z.len()), (&y_view, y.len())],
        )?;
        check_writable("binary", &y_view)?;
        let y_buffer = y.buffer_mut(&self.gpu)?;
        elementwise::dispatch(
            &self.gpu,
            Kernel::BINARY,
            Scalars {
                op: elementwise::binary_code(op),
                beta,
                ..Scalars::default()
            },
            Some((x.buffer(), &x_view)),
            Some((z.buffer(), &z_view)),
            (y_buffer, &y_view),
        )
    }

    fn scale_columns(
        &self,
        x: &WgpuTensor,
        x_view: MatView,
        v: &WgpuTensor,
        v_offset: usize,
        beta: f32,
        y: &mut WgpuTensor,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims("scale_columns", &[(&x_view, x.len()), (&y_view, y.len())])?;
        check_writable("scale_columns", &y_view)?;
        MatView {
            offset: v_offset,
            ..MatView::row_vector(x_view.cols)
        }
        .check_fits("scale_columns", v.len())?;
        let y_buffer = y.buffer_mut(&self.gpu)?;
        elementwise::dispatch(
            &self.gpu,
            Kernel::SCALE_COLUMNS,
            Scalars {
                v_offset,
                beta,
                ..Scalars::default()
            },
            Some((x.buffer(), &x_view)),
            Some((v.buffer(), &MatView::row_vector(x_view.cols))),
            (y_buffer, &y_view),
        )
    }

    fn column_dot(
        &self,
        x: &WgpuTensor,
        x_view: MatView,
        z: &WgpuTensor,
        z_view: MatView,
        beta: f32,
        out: &mut WgpuTensor,
        out_offset: usize,
    ) -> Result<()> {
        check_same_dims("column_dot", &[(&x_view, x.len()), (&z_view, z.len())])?;
        MatView {
            offset: out_offset,
            ..MatView::row_vector(x_view.cols)
        }
        .check_fits("column_dot", out.len())?;
        let out_buffer = out.buffer_mut(&self.gpu)?;
        reduce::column_dot(
            &self.gpu,
            (x.buffer(), &x_view),
            (z.buffer(), &z_view),
            beta,
            (out_buffer, out_offset),
        )
    }

    fn unary(
        &self,
        op: UnaryOp,
        x: &WgpuTensor,
        x_view: MatView,
        y: &mut WgpuTensor,
        y_view: MatView,
    ) -> Result<()> {
        check_same_dims("unary", &[(&x_view, x.len()), (&y_view, y.len())])?;
        check_writable("unary", &y_view)?;
        let y_buffer = y.buffer_mut(&self.gpu)?;
        elementwise::dispatch(
            &self.gpu,
            Kernel::UNARY,
            Scalars {
                op: elementwise::unary_code(op),
                ..Scalars::default()
            },
            Some((x.buffer(), &x_view)),
            None,
            (y_buffer, &y_view),
        )
    }

    fn fill(&self, y: &mut WgpuTensor, y_view: MatView, value: f32) -> Result<()> {
        y_view.check_fits("fill", y.len())?;
        check_writable("fill", &y_view)?;
        let y_buffer = y.buffer_mut(&self.gpu)?;
        elementwise::dispatch(
            &self.gpu,
            Kernel::FILL,
            Scalars {
                value,
                ..Scalars::default()
            },
            None,
            None,
            (y_buffer, &y_view),
        )
    }

    fn gather_rows(&self, x: &WgpuTensor, index: &[usize]) -> Result<WgpuTensor> {
        gather::gather(&self.gpu, x, index, gather::Axis::Rows)
    }

    fn gather_columns(&self, x: &WgpuTensor, index: &[usize]) -> Result<WgpuTensor> {
        gather::gather(&self.gpu, x, index, gather::Axis::Columns)
    }

    fn monarch_forward(
        &self,
        monarch: &Monarch<Self>,
        x: &WgpuTensor,
        x_view: MatView,
        beta: f32,
        out: &mut WgpuTensor,
        out_view: MatView,
    ) -> Result<WgpuTensor> {
        match monarch::apply(
            &self.gpu,
            monarch::Direction::Forward,
            monarch,
            x,
            x_view,
            beta,
            out,
            out_view,
        )? {
            Some(stage1) => Ok(stage1),
            None => monarch.forward_composite(self, x, x_view, beta, out, out_view),
        }
    }

    fn monarch_apply_transposed(
        &self,
        monarch: &Monarch<Self>,
        g: &WgpuTensor,
        g_view: MatView,
        beta: f32,
        out: &mut WgpuTensor,
        out_view: MatView,
    ) -> Result<WgpuTensor> {
        match monarch::apply(
            &self.gpu,
            monarch::Direction::Transposed,
            monarch,
            g,
            g_view,
            beta,
            out,
            out_view,
        )? {
            Some(mid) => Ok(mid),
            None => monarch.apply_transposed_composite(self, g, g_view, beta, out, out_view),
        }
    }
}
