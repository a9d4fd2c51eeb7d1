//! Host side of `elementwise.wgsl` (axpby, binary, scale_columns, unary, fill).

use crate::device::{backend_error, grid, Gpu};
use crate::kernels::Kernel;
use crate::params::Params;
use apex_core::{BinaryOp, MatView, Result, UnaryOp};

/// Invocations per workgroup of every elementwise entry point.
const WG: usize = 256;

/// The scalar fields of one elementwise dispatch (unused ones stay 0).
#[derive(Default)]
pub(crate) struct Scalars {
    pub op: usize,
    pub v_offset: usize,
    pub alpha: f32,
    pub beta: f32,
    pub value: f32,
}

/// Shader code of a binary op (`elementwise.wgsl`, `binary`).
pub(crate) fn binary_code(op: BinaryOp) -> usize {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
    }
}

/// Shader code of a unary op (`elementwise.wgsl`, `apply_unary`).
pub(crate) fn unary_code(op: UnaryOp) -> usize {
    match op {
        UnaryOp::Silu => 0,
        UnaryOp::SiluGrad => 1,
        UnaryOp::Sqrt => 2,
        UnaryOp::Square => 3,
        UnaryOp::Exp => 4,
        UnaryOp::Neg => 5,
    }
}

/// Records one elementwise dispatch over `y_view`'s rows×cols. `x` binds at 1,
/// `z` (or the scale vector) at 2, `y` at 3; views were checked by the caller.
pub(crate) fn dispatch(
    gpu: &Gpu,
    kernel: Kernel,
    scalars: Scalars,
    x: Option<(&wgpu::Buffer, &MatView)>,
    z: Option<(&wgpu::Buffer, &MatView)>,
    y: (&wgpu::Buffer, &MatView),
) -> Result<()> {
    let (rows, cols) = (y.1.rows, y.1.cols);
    let count = rows * cols;
    if count == 0 {
        return Ok(());
    }
    if u32::try_from(count).is_err() {
        return Err(backend_error(format!(
            "a {rows}×{cols} view exceeds the shaders' 32-bit element index"
        )));
    }
    let unused = MatView::full(0, 0);
    let params = Params::new()
        .u(rows)?
        .u(cols)?
        .u(scalars.op)?
        .u(scalars.v_offset)?
        .f(scalars.alpha)
        .f(scalars.beta)
        .f(scalars.value)
        .u(0)?
        .view(x.map_or(&unused, |x| x.1))?
        .view(z.map_or(&unused, |z| z.1))?
        .view(y.1)?;
    let mut buffers = Vec::with_capacity(3);
    if let Some((buffer, _)) = x {
        buffers.push((1, buffer));
    }
    if let Some((buffer, _)) = z {
        buffers.push((2, buffer));
    }
    buffers.push((3, y.0));
    let groups = grid(count.div_ceil(WG), gpu.max_workgroups_per_dim())?;
    gpu.dispatch(kernel, params, &buffers, groups)
}
