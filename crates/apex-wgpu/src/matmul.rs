//! Host side of `matmul.wgsl`: the batched strided GEMM, its tile choice and
//! its grid (split into several dispatches past the 65535-per-dimension limit).

use crate::device::Gpu;
use crate::kernels::Kernel;
use crate::params::{batch_strides, Params};
use apex_core::{BatchView, Result};

mod generate;
pub(crate) use generate::wgsl;

/// A workgroup tile of C: `wg_m × wg_n` threads, each computing `tm × tn`
/// outputs, over `bk`-deep steps of k. One compiled shader per tile
/// (`generate.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Tile {
    pub wg_m: u32,
    pub wg_n: u32,
    pub tm: u32,
    pub tn: u32,
    pub bk: u32,
}

impl Tile {
    pub(crate) const fn rows(&self) -> u32 {
        self.wg_m * self.tm
    }

    pub(crate) const fn cols(&self) -> u32 {
        self.wg_n * self.tn
    }

    pub(crate) const fn threads(&self) -> u32 {
        self.wg_m * self.wg_n
    }
}

/// 128×128: 16×16 threads, 8×8 outputs each, BK = 16 (16 KiB of tiles).
pub(crate) const LARGE: Tile = Tile {
    wg_m: 16,
    wg_n: 16,
    tm: 8,
    tn: 8,
    bk: 16,
};
/// 64×64: 16×16 threads, 4×4 outputs each, BK = 32 (16 KiB of tiles).
pub(crate) const MEDIUM: Tile = Tile {
    wg_m: 16,
    wg_n: 16,
    tm: 4,
    tn: 4,
    bk: 32,
};
/// 32×32: 8×8 threads, 4×4 outputs each, BK = 16: thin products (Monarch
/// blocks) and small ones.
pub(crate) const SMALL: Tile = Tile {
    wg_m: 8,
    wg_n: 8,
    tm: 4,
    tn: 4,
    bk: 16,
};

/// Every tile [`choose_tile`] can return.
#[cfg(test)]
pub(crate) const TILES: [Tile; 3] = [LARGE, MEDIUM, SMALL];

/// Workgroups a GPU needs in flight before a bigger tile stops costing
/// parallelism (about two per multiprocessor on current discrete GPUs).
const ENOUGH_WORKGROUPS: usize = 128;

/// The largest tile that still yields [`ENOUGH_WORKGROUPS`] and wastes at most
/// a third of its work on padding; [`SMALL`] otherwise.
pub(crate) fn choose_tile(batch: usize, m: usize, n: usize) -> Tile {
    for tile in [LARGE, MEDIUM] {
        let (rows, cols) = (tile.rows() as usize, tile.cols() as usize);
        let (tm, tn) = (m.div_ceil(rows), n.div_ceil(cols));
        let padded = (tm * rows * tn * cols) as f64;
        if batch * tm * tn >= ENOUGH_WORKGROUPS && padded <= 1.5 * (m * n) as f64 {
            return tile;
        }
    }
    SMALL
}

/// How the shader loads an operand (`a_mode`, `b_mode` in `matmul.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Load {
    /// Scalar loads: any strides and offsets.
    Strided = 0,
    /// Aligned vec4s along the operand's inner dimension (k for A, n for B).
    Inner4 = 1,
    /// Aligned vec4s along the outer dimension (m for A, k for B).
    Outer4 = 2,
}

/// The load path for a batch of `rows × cols` operands whose inner dimension
/// is the columns (A: m×k; B: k×n). A vec4 path needs unit stride along the
/// vector, a multiple of 4 elements along it (a vec4 is then wholly inside or
/// wholly outside the view), and every other offset and stride a multiple of
/// 4 (aligned vec4s). Strides as the shader sees them: zero for unit dims.
fn load_path(view: &BatchView, batch: usize) -> Load {
    let (offset, row_stride, col_stride, batch_stride) = batch_strides(view, batch);
    let (rows, cols) = (view.mat.rows, view.mat.cols);
    let aligned = |strides: [usize; 3]| strides.iter().all(|s| s % 4 == 0);
    if col_stride == 1 && cols % 4 == 0 && aligned([offset, row_stride, batch_stride]) {
        Load::Inner4
    } else if row_stride == 1 && rows % 4 == 0 && aligned([offset, col_stride, batch_stride]) {
        Load::Outer4
    } else {
        Load::Strided
    }
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
    gemm_with_tile(
        gpu,
        choose_tile(batch, m, n),
        batch,
        (m, n, k),
        alpha,
        a,
        b,
        beta,
        c,
    )
}

/// [`gemm`] with a given tile (the tests run every tile on every path).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_with_tile(
    gpu: &Gpu,
    tile: Tile,
    batch: usize,
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: (&wgpu::Buffer, &BatchView),
    b: (&wgpu::Buffer, &BatchView),
    beta: f32,
    c: (&wgpu::Buffer, &BatchView),
) -> Result<()> {
    let max = gpu.max_workgroups_per_dim() as usize;
    let (tiles_m, tiles_n) = (
        m.div_ceil(tile.rows() as usize),
        n.div_ceil(tile.cols() as usize),
    );
    let (a_mode, b_mode) = (load_path(a.1, batch), load_path(b.1, batch));
    for batch_base in (0..batch).step_by(max) {
        for tile_m_base in (0..tiles_m).step_by(max) {
            for tile_n_base in (0..tiles_n).step_by(max) {
                let params = Params::new()
                    .u(m)?
                    .u(n)?
                    .u(k)?
                    .u(a_mode as usize)?
                    .f(alpha)
                    .f(beta)
                    .u(batch_base)?
                    .u(tile_m_base)?
                    .u(tile_n_base)?
                    .u(b_mode as usize)?
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
                    Kernel::gemm(tile),
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
    use apex_core::MatView;

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
        // The shapes of tests/device.rs `gemm_tiles_and_paths`.
        for (batch, m, n, tile) in [
            (32, 252, 196, LARGE),
            (32, 250, 190, LARGE),
            (32, 124, 124, MEDIUM),
            (32, 123, 125, MEDIUM),
            (3, 36, 44, SMALL),
            (3, 35, 43, SMALL),
        ] {
            assert_eq!(choose_tile(batch, m, n), tile, "{batch}×{m}×{n}");
        }
    }

    #[test]
    fn every_tile_can_be_generated() {
        for tile in TILES {
            assert_eq!(tile.unsupported(), None, "{tile:?}");
        }
        let odd = Tile { tn: 6, ..SMALL };
        assert!(odd.unsupported().is_some());
    }

    #[test]
    fn vec4_loads_need_unit_stride_alignment_and_whole_quads() {
        let rows = |m: MatView| BatchView::strided(m, m.extent() + 4);
        // Row-major 12×8: vec4s along the columns (A's k, B's n).
        assert_eq!(load_path(&rows(MatView::full(12, 8)), 2), Load::Inner4);
        // Its transpose (column stride 12): vec4s along the rows.
        assert_eq!(load_path(&rows(MatView::full(8, 12).t()), 2), Load::Outer4);
        // A column slice starting at column 1: misaligned.
        let slice = MatView::full(12, 16).columns(1..9);
        assert_eq!(load_path(&rows(slice), 1), Load::Strided);
        // From column 4 with an aligned batch stride: aligned.
        let slice = MatView::full(12, 16).columns(4..12);
        assert_eq!(load_path(&BatchView::strided(slice, 192), 2), Load::Inner4);
        // … but a batch stride of 190 misaligns every other entry.
        assert_eq!(load_path(&BatchView::strided(slice, 190), 2), Load::Strided);
        // A single entry ignores its batch stride.
        assert_eq!(load_path(&BatchView::strided(slice, 190), 1), Load::Inner4);
        // 7 columns: the last quad would straddle the view's edge.
        assert_eq!(load_path(&rows(MatView::full(12, 7)), 1), Load::Strided);
        // A Monarch interleaved block (column stride b): scalar.
        let interleaved = MatView {
            col_stride: 43,
            cols: 48,
            ..MatView::full(16, 2064)
        };
        assert_eq!(
            load_path(&BatchView::strided(interleaved, 1), 43),
            Load::Strided
        );
        // One row: its row stride does not matter.
        let row = MatView {
            offset: 8,
            row_stride: 3,
            ..MatView::full(1, 8)
        };
        assert_eq!(load_path(&BatchView::single(row), 1), Load::Inner4);
    }
}
