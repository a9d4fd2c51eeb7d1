//! Host side of `matmul.wgsl`: the batched strided GEMM, its tile choice and
//! its grid (split into several dispatches past the 65535-per-dimension limit).

use crate::device::{Gpu, Variant};
use crate::kernels::Kernel;
use crate::params::Params;
use apex_core::{BatchView, MatView, Result};

/// A workgroup tile of C: `rows × cols` outputs, compiled from `variant`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Tile {
    pub rows: usize,
    pub cols: usize,
    pub variant: Variant,
}

/// 16×16 threads, 8×8 outputs each: the tile for large products.
pub(crate) const LARGE: Tile = Tile {
    rows: 128,
    cols: 128,
    variant: Variant {
        name: "tile128",
        constants: &[("WG_M", 16.0), ("WG_N", 16.0), ("TM", 8.0), ("TN", 8.0)],
    },
};
/// 16×16 threads, 4×4 outputs each.
pub(crate) const MEDIUM: Tile = Tile {
    rows: 64,
    cols: 64,
    variant: Variant {
        name: "tile64",
        constants: &[("WG_M", 16.0), ("WG_N", 16.0), ("TM", 4.0), ("TN", 4.0)],
    },
};
/// 16×16 threads, 2×2 outputs each: thin products (Monarch blocks) and small ones.
pub(crate) const SMALL: Tile = Tile {
    rows: 32,
    cols: 32,
    variant: Variant {
        name: "tile32",
        constants: &[("WG_M", 16.0), ("WG_N", 16.0), ("TM", 2.0), ("TN", 2.0)],
    },
};

/// Workgroups a GPU needs in flight before a bigger tile stops costing
/// parallelism (about two per multiprocessor on current discrete GPUs).
const ENOUGH_WORKGROUPS: usize = 128;

/// The largest tile that still yields [`ENOUGH_WORKGROUPS`] and wastes at most
/// a third of its work on padding; [`SMALL`] otherwise.
pub(crate) fn choose_tile(batch: usize, m: usize, n: usize) -> Tile {
    for tile in [LARGE, MEDIUM] {
        let (tm, tn) = (m.div_ceil(tile.rows), n.div_ceil(tile.cols));
        let padded = (tm * tile.rows * tn * tile.cols) as f64;
        if batch * tm * tn >= ENOUGH_WORKGROUPS && padded <= 1.5 * (m * n) as f64 {
            return tile;
        }
    }
    SMALL
}

/// Whether a strided matrix is best read along its rows index (its row
/// stride is the small one, as in a transposed view).
fn reads_down_columns(view: &MatView) -> bool {
    view.rows > 1 && view.row_stride < view.col_stride
}

/// Records `C[i] = α·A[i]·B[i] + β·C[i]`, `i < batch`. The caller has checked
/// the views with `check_gemm` and skipped empty products.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    gpu: &Gpu,
    batch: usize,
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: (&wgpu::Buffer, &BatchView),
    b: (&wgpu::Buffer, &BatchView),
    beta: f32,
    c: (&wgpu::Buffer, &BatchView),
) -> Result<()> {
    let tile = choose_tile(batch, m, n);
    let max = gpu.max_workgroups_per_dim() as usize;
    let (tiles_m, tiles_n) = (m.div_ceil(tile.rows), n.div_ceil(tile.cols));
    let flags = usize::from(reads_down_columns(&a.1.mat))
        | (usize::from(reads_down_columns(&b.1.mat)) << 1);
    for batch_base in (0..batch).step_by(max) {
        for tile_m_base in (0..tiles_m).step_by(max) {
            for tile_n_base in (0..tiles_n).step_by(max) {
                let params = Params::new()
                    .u(m)?
                    .u(n)?
                    .u(k)?
                    .u(flags)?
                    .f(alpha)
                    .f(beta)
                    .u(batch_base)?
                    .u(tile_m_base)?
                    .u(tile_n_base)?
                    .u(0)?
                    .u(0)?
                    .u(0)?
                    .batch_view(a.1, batch)?
                    .batch_view(b.1, batch)?
                    .batch_view(c.1, batch)?;
                let groups = [
                    (tiles_n - tile_n_base).min(max) as u32,
                    (tiles_m - tile_m_base).min(max) as u32,
                    (batch - batch_base).min(max) as u32,
                ];
                gpu.dispatch(
                    Kernel::GEMM,
                    tile.variant,
                    params,
                    &[(1, a.0), (2, b.0), (3, c.0)],
                    groups,
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_squares_get_the_big_tile_and_thin_blocks_the_small_one() {
        assert_eq!(choose_tile(1, 4096, 4096), LARGE);
        assert_eq!(choose_tile(1, 2048, 2048), LARGE);
        assert_eq!(choose_tile(1, 1024, 1024), MEDIUM);
        // The FFN pair at T=512: 512×1536.
        assert_eq!(choose_tile(1, 512, 1536), MEDIUM);
        // A Monarch stage at T=512, p=18: padding an 18-wide block to 64 wastes too much.
        assert_eq!(choose_tile(16, 512, 18), SMALL);
        assert_eq!(choose_tile(1, 8, 8), SMALL);
    }
}
