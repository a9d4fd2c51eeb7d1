//! Launches of the fused Monarch kernels (kernels/cuda/monarch.cu), the
//! overrides of `Backend::monarch_forward` / `monarch_apply_transposed`.
//! Views are validated by the caller.

use crate::device::Launch;
use crate::kernels::{monarch_kernel, DevView, MonarchArgs, MONARCH_ROWS};
use crate::{CudaBackend, CudaTensor};
use apex_core::{MatView, Monarch, Result, ScaledColumns};

/// Rows per CTA and threads per CTA for a map of `nblocks` blocks of size
/// `block` applied to `n` rows, or `None` when one CTA's rows of the
/// intermediate cannot fit in shared memory (the caller then runs the
/// composite). `forced_rows` restricts the choice to that row count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FusedPlan {
    pub rows: usize,
    pub threads: usize,
}

impl FusedPlan {
    pub(crate) fn new(
        n: usize,
        nblocks: usize,
        block: usize,
        multiprocessors: usize,
        max_shared: usize,
        forced_rows: Option<usize>,
    ) -> Option<Self> {
        let row_bytes = 4 * nblocks * block;
        let fitting: Vec<usize> = MONARCH_ROWS
            .into_iter()
            .filter(|&r| r * row_bytes <= max_shared)
            .filter(|&r| forced_rows.is_none_or(|forced| forced == r))
            .collect();
        // More rows per CTA reuse each weight more often, but the grid should
        // still cover the machine and two CTAs should fit per multiprocessor.
        let rows = fitting
            .iter()
            .rev()
            .find(|&&r| n.div_ceil(r) >= multiprocessors && 2 * r * row_bytes <= max_shared)
            .or(fitting.first())
            .copied()?;
        // One task = 4 outputs of one group; pick the block size that wastes
        // the fewest thread slots over the task loop.
        let tasks = nblocks * block.div_ceil(4);
        let threads = if tasks <= 256 {
            tasks.next_multiple_of(32)
        } else {
            (4..=8)
                .map(|warps| 32 * warps)
                .min_by_key(|&t| (tasks.div_ceil(t) * t, std::cmp::Reverse(t)))
                .expect("non-empty range")
        };
        Some(FusedPlan { rows, threads })
    }
}

/// `out = x·Mᵀ [+ y ⊙ s] + β·out` (forward) or `out = x·M [+ y ⊙ s] + β·out`
/// (transposed), in one kernel; returns the stage-1 intermediate (n×k), or
/// `None` when the map is too large for the fused kernel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fused(
    backend: &CudaBackend,
    monarch: &Monarch<CudaBackend>,
    transposed: bool,
    x: &CudaTensor,
    x_view: MatView,
    add: Option<ScaledColumns<'_, CudaBackend>>,
    beta: f32,
    out: &mut CudaTensor,
    out_view: MatView,
) -> Result<Option<CudaTensor>> {
    let (nblocks, block, k, n) = (
        monarch.nblocks(),
        monarch.block(),
        monarch.size(),
        x_view.rows,
    );
    let info = backend.device().info();
    let Some(plan) = FusedPlan::new(
        n,
        nblocks,
        block,
        info.multiprocessors,
        info.max_shared_per_block,
        backend.options().monarch_rows,
    ) else {
        return Ok(None);
    };
    let mut mid = backend.uninit_tensor(&[n, k])?;
    if n == 0 {
        return Ok(Some(mid));
    }
    let (first, second) = if transposed {
        (&monarch.blkdiag2, &monarch.blkdiag1)
    } else {
        (&monarch.blkdiag1, &monarch.blkdiag2)
    };
    let vec = block % 4 == 0;
    let (add_addr, add_scale, addv) = match add {
        Some(a) => (backend.read(a.y)?, backend.read(a.scale)?, a.view),
        None => (0, 0, MatView::full(0, 0)),
    };
    let args = MonarchArgs {
        input: backend.read(x)?,
        out: backend.write(out)?,
        mid: backend.write(&mut mid)?,
        w_first: backend.read(first)?,
        w_second: backend.read(second)?,
        add: add_addr,
        add_scale,
        inv: DevView::from(x_view),
        outv: DevView::from(out_view),
        addv: DevView::from(addv),
        n: n as i64,
        beta,
        nblocks: nblocks as i32,
        block: block as i32,
        in_vec: i32::from(
            x_view.col_stride == 1 && x_view.offset % 4 == 0 && x_view.row_stride % 4 == 0,
        ),
    };
    let launch = Launch {
        grid: (n.div_ceil(plan.rows) as u32, 1, 1),
        block: (plan.threads as u32, 1, 1),
        shared_bytes: (plan.rows * k * 4) as u32,
    };
    backend.launch(monarch_kernel(transposed, plan.rows, vec), launch, &args)?;
    Ok(Some(mid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H100_SHARED: usize = 227 * 1024;

    #[test]
    fn llama_ffn_mixer_takes_eight_rows_per_cta() {
        // 43 blocks of 48: 8 rows of the intermediate are 66 KB, two CTAs fit.
        let plan = FusedPlan::new(4096, 43, 48, 132, H100_SHARED, None).unwrap();
        assert_eq!(plan.rows, 8);
        // 43·12 = 516 tasks: 3 passes of 192 threads waste the least.
        assert_eq!(plan.threads, 192);
    }

    #[test]
    fn few_rows_favour_more_ctas_and_tiny_maps_use_one_warp() {
        let plan = FusedPlan::new(512, 16, 18, 132, H100_SHARED, None).unwrap();
        assert_eq!(plan.rows, 4);
        assert_eq!(plan.threads, 96);
        assert_eq!(
            FusedPlan::new(1, 2, 2, 132, H100_SHARED, None)
                .unwrap()
                .threads,
            32
        );
    }

    #[test]
    fn maps_too_large_for_shared_memory_are_not_fused() {
        // 4 rows of k = 16384 floats need 256 KB.
        assert!(FusedPlan::new(4096, 128, 128, 132, H100_SHARED, None).is_none());
        // A forced row count that does not fit is not fused either.
        assert!(FusedPlan::new(4096, 43, 48, 132, 100 * 1024, Some(16)).is_none());
        let forced = FusedPlan::new(4096, 43, 48, 132, H100_SHARED, Some(16)).unwrap();
        assert_eq!(forced.rows, 16);
    }
}
