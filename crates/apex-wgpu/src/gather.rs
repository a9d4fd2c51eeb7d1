//! Host side of `gather.wgsl`: row and column gathers into new tensors.

use crate::device::{grid, Gpu};
use crate::kernels::Kernel;
use crate::params::Params;
use crate::tensor::WgpuTensor;
use apex_core::layout::check_indices;
use apex_core::Result;

const WG: usize = 256;

/// Which axis a gather selects along.
#[derive(Clone, Copy)]
pub(crate) enum Axis {
    Rows,
    Columns,
}

/// `x[index, :]` or `x[:, index]` of a 2-D tensor, as a new contiguous tensor.
pub(crate) fn gather(gpu: &Gpu, x: &WgpuTensor, index: &[usize], axis: Axis) -> Result<WgpuTensor> {
    let (op, kernel) = match axis {
        Axis::Rows => ("gather_rows", Kernel::GATHER_ROWS),
        Axis::Columns => ("gather_columns", Kernel::GATHER_COLUMNS),
    };
    let (rows, cols) = x.dims2(op)?;
    let (out_rows, out_cols, bound) = match axis {
        Axis::Rows => (index.len(), cols, rows),
        Axis::Columns => (rows, index.len(), cols),
    };
    check_indices(op, index, bound)?;
    let shape = [out_rows, out_cols];
    let out = WgpuTensor::new(gpu.storage(out_rows * out_cols, None)?, &shape);
    if out.is_empty() {
        return Ok(out);
    }
    // Indices are below a dimension of a tensor that fits a binding, so they fit u32.
    let words: Vec<u32> = index.iter().map(|&i| i as u32).collect();
    let index_buffer = gpu.index_buffer(&words)?;
    let params = Params::new().u(out_rows)?.u(out_cols)?.u(cols)?.u(0)?;
    let groups = grid(out.len().div_ceil(WG), gpu.max_workgroups_per_dim())?;
    gpu.dispatch(
        kernel,
        params,
        &[(1, x.buffer()), (2, &index_buffer), (3, out.buffer())],
        groups,
    )?;
    Ok(out)
}
