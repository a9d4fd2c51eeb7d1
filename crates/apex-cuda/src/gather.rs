//! Launches of kernels/cuda/gather.cu (row and column gathers). The caller
//! has checked the tensor is 2-D and every index is in bounds.

use crate::device::backend_error;
use crate::elementwise::launch_2d;
use crate::kernels::{GatherArgs, GATHER};
use crate::{CudaBackend, CudaTensor};
use apex_core::Result;

/// `out[i, :] = x[index[i], :]` (`by_columns` false) or
/// `out[:, j] = x[:, index[j]]` (true), for x of `rows × cols`.
pub(crate) fn gather(
    backend: &CudaBackend,
    x: &CudaTensor,
    (rows, cols): (usize, usize),
    index: &[usize],
    by_columns: bool,
) -> Result<CudaTensor> {
    let shape = if by_columns {
        [rows, index.len()]
    } else {
        [index.len(), cols]
    };
    let mut out = backend.zeros_tensor(&shape)?;
    if shape[0] == 0 || shape[1] == 0 {
        return Ok(out);
    }
    // Indices travel as u32 bit patterns in an f32 buffer (bounds ≤ u32::MAX).
    let bits = index
        .iter()
        .map(|&i| u32::try_from(i).map(f32::from_bits))
        .collect::<std::result::Result<Vec<f32>, _>>()
        .map_err(|_| backend_error("gather: index beyond u32 range".into()))?;
    let index_buffer = backend.upload_tensor(&bits, &[bits.len()])?;
    let args = GatherArgs {
        x: backend.read(x)?,
        out: backend.write(&mut out)?,
        index: backend.read(&index_buffer)?,
        rows: rows as i64,
        cols: cols as i64,
        count: index.len() as i64,
        by_columns: i32::from(by_columns),
        pad: 0,
    };
    backend.launch(GATHER, launch_2d(shape[0], shape[1]), &args)?;
    Ok(out)
}
