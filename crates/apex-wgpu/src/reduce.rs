//! Host side of `reduce.wgsl`: column dot products.

use crate::device::{grid, Gpu};
use crate::kernels::Kernel;
use crate::params::Params;
use apex_core::{MatView, Result};

/// Columns per workgroup (`COLS` in the shader).
const COLS: usize = 64;

/// Records `out[out_offset + c] = Σ_r x[r, c]·z[r, c] + β·out[out_offset + c]`;
/// the caller has checked the views and the output range.
pub(crate) fn column_dot(
    gpu: &Gpu,
    x: (&wgpu::Buffer, &MatView),
    z: (&wgpu::Buffer, &MatView),
    beta: f32,
    out: (&wgpu::Buffer, usize),
) -> Result<()> {
    let (rows, cols) = (x.1.rows, x.1.cols);
    if cols == 0 {
        return Ok(());
    }
    let params = Params::new()
        .u(rows)?
        .u(cols)?
        .u(out.1)?
        .f(beta)
        .view(x.1)?
        .view(z.1)?;
    let groups = grid(cols.div_ceil(COLS), gpu.max_workgroups_per_dim())?;
    gpu.dispatch(
        Kernel::COLUMN_DOT,
        params,
        &[(1, x.0), (2, z.0), (3, out.0)],
        groups,
    )
}
