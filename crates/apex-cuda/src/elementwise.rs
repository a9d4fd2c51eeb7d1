//! Launches of kernels/cuda/elementwise.cu: axpby, binary, scale_columns,
//! unary and fill. Views are validated by the caller.

use crate::device::Launch;
use crate::kernels::{DevView, ElementwiseArgs, ElementwiseOp, ELEMENTWISE};
use crate::{CudaBackend, CudaTensor};
use apex_core::{MatView, Result};

/// An input operand: a tensor and the view read from it.
pub(crate) type Operand<'a> = (&'a CudaTensor, MatView);

/// Scalars of one elementwise launch: `y = f(α, x, z, value) + β·y`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scalars {
    pub alpha: f32,
    pub beta: f32,
    pub value: f32,
}

/// Runs `op` over `y_view`; `x`/`z` are read only if the op uses them.
pub(crate) fn run(
    backend: &CudaBackend,
    op: ElementwiseOp,
    scalars: Scalars,
    x: Option<Operand<'_>>,
    z: Option<Operand<'_>>,
    y: &mut CudaTensor,
    y_view: MatView,
) -> Result<()> {
    if y_view.rows == 0 || y_view.cols == 0 {
        return Ok(());
    }
    let operand = |o: Option<Operand<'_>>| -> Result<(u64, MatView)> {
        match o {
            Some((t, v)) => Ok((backend.read(t)?, v)),
            None => Ok((0, MatView::full(0, 0))),
        }
    };
    let (x_addr, x_view) = operand(x)?;
    let (z_addr, z_view) = operand(z)?;
    let y_addr = backend.write(y)?;
    // Elementwise work is layout-agnostic, so every view may be transposed
    // together: threadIdx.x then walks the output's smaller stride.
    let transpose = y_view.cols == 1 || (y_view.rows > 1 && y_view.row_stride < y_view.col_stride);
    let orient = |v: MatView| if transpose { v.t() } else { v };
    let (xv, zv, yv) = (orient(x_view), orient(z_view), orient(y_view));
    let args = ElementwiseArgs {
        x: x_addr,
        z: z_addr,
        y: y_addr,
        xv: DevView::from(xv),
        zv: DevView::from(zv),
        yv: DevView::from(yv),
        alpha: scalars.alpha,
        beta: scalars.beta,
        value: scalars.value,
        op: op as i32,
    };
    backend.launch(ELEMENTWISE, launch_2d(yv.rows, yv.cols), &args)
}

/// A 256-thread block shaped to the columns (x) and rows (y) of a 2-D
/// iteration space, and a grid covering it (kernels grid-stride beyond it).
pub(crate) fn launch_2d(rows: usize, cols: usize) -> Launch {
    let bx = cols.next_power_of_two().clamp(32, 256);
    let by = 256 / bx;
    Launch {
        grid: (
            cols.div_ceil(bx).clamp(1, 65_535) as u32,
            rows.div_ceil(by).clamp(1, 65_535) as u32,
            1,
        ),
        block: (bx as u32, by as u32, 1),
        shared_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_follow_the_columns_and_grids_are_capped() {
        let l = launch_2d(1000, 3);
        assert_eq!(l.block, (32, 8, 1));
        assert_eq!(l.grid, (1, 125, 1));
        let l = launch_2d(1, 1 << 30);
        assert_eq!(l.block, (256, 1, 1));
        assert_eq!(l.grid, (65_535, 1, 1));
    }
}
