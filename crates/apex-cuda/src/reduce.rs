//! Launches of kernels/cuda/reduce.cu (column dot products). Views are
//! validated by the caller.

use crate::device::Launch;
use crate::kernels::{ColumnDotArgs, DevView, COLUMN_DOT};
use crate::{CudaBackend, CudaTensor};
use apex_core::{MatView, Result};

/// Rows summed in parallel per column (COLUMN_DOT_LANES in reduce.cu).
const LANES: u32 = 16;

/// `out[out_offset + c] = Σ_r x[r,c]·z[r,c] + β·out[out_offset + c]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn column_dot(
    backend: &CudaBackend,
    x: &CudaTensor,
    x_view: MatView,
    z: &CudaTensor,
    z_view: MatView,
    beta: f32,
    out: &mut CudaTensor,
    out_offset: usize,
) -> Result<()> {
    if x_view.cols == 0 {
        return Ok(());
    }
    let args = ColumnDotArgs {
        x: backend.read(x)?,
        z: backend.read(z)?,
        out: backend.write(out)?,
        xv: DevView::from(x_view),
        zv: DevView::from(z_view),
        out_offset: out_offset as i64,
        beta,
        pad: 0,
    };
    let launch = Launch {
        grid: (x_view.cols.div_ceil(32).min(i32::MAX as usize) as u32, 1, 1),
        block: (32, LANES, 1),
        shared_bytes: 0,
    };
    backend.launch(COLUMN_DOT, launch, &args)
}
