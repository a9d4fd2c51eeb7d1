//! Host side of `monarch.wgsl`: the fused Monarch forward and transposed apply
//! (both block stages and the stride permutation in one dispatch).

use crate::device::{grid, Gpu, Variant};
use crate::kernels::Kernel;
use crate::params::Params;
use crate::tensor::WgpuTensor;
use crate::WgpuBackend;
use apex_core::layout::{check_same_dims, check_writable};
use apex_core::{ApexError, MatView, Monarch, Result};

/// Workgroup floats that hold the intermediate (`SHARED` in the shader).
pub(crate) const SHARED: usize = 4096;
/// Most rows one workgroup owns (`MAX_ROWS` in the shader).
const MAX_ROWS: usize = 8;
/// Workgroups worth launching before rows are packed several to a workgroup.
const TARGET_GROUPS: usize = 256;

/// Which product of the map.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    /// `out = x·Mᵀ + β·out`; the intermediate is the stage-1 output.
    Forward,
    /// `out = g·M + β·out`; the intermediate is ∂Y1.
    Transposed,
}

/// Rows per workgroup: enough workgroups to fill a GPU, at most what the
/// workgroup tile holds.
fn rows_per_group(rows: usize, k: usize) -> usize {
    rows.div_ceil(TARGET_GROUPS)
        .clamp(1, MAX_ROWS.min(SHARED / k))
}

/// Records the fused product and returns the intermediate (n×k, contiguous),
/// or `None` when k is too large for the workgroup tile (the caller then runs
/// the composite).
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply(
    gpu: &Gpu,
    direction: Direction,
    monarch: &Monarch<WgpuBackend>,
    input: &WgpuTensor,
    in_view: MatView,
    beta: f32,
    out: &mut WgpuTensor,
    out_view: MatView,
) -> Result<Option<WgpuTensor>> {
    let (k, b, p) = (monarch.size(), monarch.nblocks(), monarch.block());
    if k > SHARED {
        return Ok(None);
    }
    let (op, kernel) = match direction {
        Direction::Forward => ("monarch.forward", Kernel::MONARCH_FORWARD),
        Direction::Transposed => ("monarch.apply_transposed", Kernel::MONARCH_TRANSPOSED),
    };
    check_same_dims(op, &[(&in_view, input.len()), (&out_view, out.len())])?;
    check_writable(op, &out_view)?;
    if in_view.cols != k {
        return Err(ApexError::shape(op, &[in_view.rows, k], &in_view.dims()));
    }
    let rows = in_view.rows;
    let stage = WgpuTensor::new(gpu.storage(rows * k, None)?, &[rows, k]);
    if rows == 0 {
        return Ok(Some(stage));
    }
    let per_group = rows_per_group(rows, k);
    let params = Params::new()
        .u(rows)?
        .u(k)?
        .u(b)?
        .u(p)?
        .u(per_group)?
        .f(beta)
        .u(0)?
        .u(0)?
        .view(&in_view)?
        .view(&out_view)?;
    let groups = grid(rows.div_ceil(per_group), gpu.max_workgroups_per_dim())?;
    let out_buffer = out.buffer_mut(gpu)?;
    gpu.dispatch(
        kernel,
        Variant::DEFAULT,
        params,
        &[
            (1, input.buffer()),
            (2, monarch.blkdiag1.buffer()),
            (3, monarch.blkdiag2.buffer()),
            (4, out_buffer),
            (5, stage.buffer()),
        ],
        groups,
    )?;
    Ok(Some(stage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_per_group_fills_the_gpu_within_the_tile() {
        assert_eq!(rows_per_group(512, 288), 2);
        assert_eq!(rows_per_group(3, 288), 1);
        assert_eq!(rows_per_group(100_000, 288), 8);
        // k = 2064 (the shipped FFN): only one row's intermediate fits.
        assert_eq!(rows_per_group(100_000, 2064), 1);
        assert_eq!(rows_per_group(100_000, SHARED), 1);
    }
}
