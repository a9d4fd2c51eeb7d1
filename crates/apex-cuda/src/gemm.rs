//! Batched strided GEMM: cuBLAS when every operand has a unit stride it can
//! express, otherwise (or when asked) the handwritten kernels of
//! kernels/cuda/gemm.cu, with split-K for small outputs over a long K.
//! Views are validated by the caller.

use crate::device::{backend_error, Device, Launch};
use crate::driver::DriverDevice;
use crate::kernels::{
    DevView, GemmArgs, GEMM_BATCH_INNER, GEMM_LARGE, GEMM_SMALL, GEMM_SPLITK_REDUCE,
};
use crate::{CudaBackend, CudaTensor, GemmPath};
use apex_core::{BatchView, MatView, Result};
use cudarc::cublas::{result as blas_result, sys as blas_sys};
use std::ffi::c_void;

/// The problem after validation: `C[i] = α·A[i]·B[i] + β·C[i]`, `A[i]` m×k.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Problem {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub beta: f32,
    pub a: BatchView,
    pub b: BatchView,
    pub c: BatchView,
}

/// Runs a validated problem.
pub(crate) fn gemm(
    backend: &CudaBackend,
    p: Problem,
    a: &CudaTensor,
    b: &CudaTensor,
    c: &mut CudaTensor,
) -> Result<()> {
    if p.batch == 0 || p.m == 0 || p.n == 0 {
        return Ok(());
    }
    let addrs = [backend.read(a)?, backend.read(b)?, backend.write(c)?];
    if let (GemmPath::Auto, Device::Driver(driver)) = (backend.options().gemm, backend.device()) {
        if let Some(plan) = CublasPlan::new(&p) {
            if driver.blas.is_some() {
                backend.count_cublas();
                return plan.run(driver, &p, addrs, backend.options().tf32);
            }
        }
    }
    kernel(backend, &p, addrs)
}

// ---- cuBLAS -------------------------------------------------------------------

/// How column-major cuBLAS sees a view: `Some((transposed, ld))` when the
/// view is a column-major matrix (`transposed` false) or the transpose of
/// one, with a legal leading dimension.
fn column_major(v: &MatView) -> Option<(bool, usize)> {
    let (r, c) = (v.rows, v.cols);
    if v.row_stride == 1 || r <= 1 {
        let ld = if c <= 1 { r.max(1) } else { v.col_stride };
        if ld >= r.max(1) {
            return Some((false, ld));
        }
    }
    if v.col_stride == 1 || c <= 1 {
        let ld = if r <= 1 { c.max(1) } else { v.row_stride };
        if ld >= c.max(1) {
            return Some((true, ld));
        }
    }
    None
}

fn transposed(v: &BatchView) -> BatchView {
    BatchView::strided(v.mat.t(), v.batch_stride)
}

/// One `cublasGemmStridedBatchedEx` call in column-major terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CublasPlan {
    /// When C is row-major the call computes Cᵀ = Bᵀ·Aᵀ, so A and B swap.
    swap: bool,
    m: i32,
    n: i32,
    k: i32,
    trans_a: bool,
    trans_b: bool,
    lda: i32,
    ldb: i32,
    ldc: i32,
    batch: i32,
}

impl CublasPlan {
    pub(crate) fn new(p: &Problem) -> Option<Self> {
        if p.k == 0 {
            return None;
        }
        let swap = !matches!(column_major(&p.c.mat), Some((false, _)));
        let (a, b, c, m, n) = if swap {
            (
                transposed(&p.b),
                transposed(&p.a),
                transposed(&p.c),
                p.n,
                p.m,
            )
        } else {
            (p.a, p.b, p.c, p.m, p.n)
        };
        let (false, ldc) = column_major(&c.mat)? else {
            return None;
        };
        let (trans_a, lda) = column_major(&a.mat)?;
        let (trans_b, ldb) = column_major(&b.mat)?;
        let int = |x: usize| i32::try_from(x).ok();
        Some(CublasPlan {
            swap,
            m: int(m)?,
            n: int(n)?,
            k: int(p.k)?,
            trans_a,
            trans_b,
            lda: int(lda)?,
            ldb: int(ldb)?,
            ldc: int(ldc)?,
            batch: int(p.batch)?,
        })
    }

    fn run(&self, driver: &DriverDevice, p: &Problem, addrs: [u64; 3], tf32: bool) -> Result<()> {
        let blas = driver.blas.as_ref().expect("checked by the caller");
        let (a, b) = if self.swap {
            (&p.b, &p.a)
        } else {
            (&p.a, &p.b)
        };
        let (a_addr, b_addr) = if self.swap {
            (addrs[1], addrs[0])
        } else {
            (addrs[0], addrs[1])
        };
        let ptr = |addr: u64, offset: usize| (addr + 4 * offset as u64) as *mut c_void;
        let op = |t: bool| {
            if t {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let compute = if tf32 {
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
        } else {
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
        };
        let f32_type = blas_sys::cudaDataType_t::CUDA_R_32F;
        driver
            .stream()
            .context()
            .bind_to_thread()
            .map_err(|e| backend_error(format!("bind context: {e:?}")))?;
        // SAFETY: the plan describes views the caller validated against their
        // buffers (check_gemm); α, β live on this stack frame for the call.
        unsafe {
            blas_result::gemm_strided_batched_ex(
                *blas.handle(),
                op(self.trans_a),
                op(self.trans_b),
                self.m,
                self.n,
                self.k,
                &p.alpha as *const f32 as *const c_void,
                ptr(a_addr, a.mat.offset),
                f32_type,
                self.lda,
                a.batch_stride as i64,
                ptr(b_addr, b.mat.offset),
                f32_type,
                self.ldb,
                b.batch_stride as i64,
                &p.beta as *const f32 as *const c_void,
                ptr(addrs[2], p.c.mat.offset),
                f32_type,
                self.ldc,
                p.c.batch_stride as i64,
                self.batch,
                compute,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| backend_error(format!("cublasGemmStridedBatchedEx: {e:?}")))
    }
}

// ---- handwritten kernels ------------------------------------------------------

/// Kernel, its grid (before the K splits) and the split-K factor and K range
/// per split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KernelPlan {
    pub kernel: &'static str,
    /// grid.x, grid.y; grid.z is (batch ·) splits.
    pub grid: (usize, usize),
    /// Whether grid.z also spans the batch (tile kernels) or only the splits.
    pub batch_in_z: bool,
    pub splits: usize,
    pub k_chunk: usize,
}

impl KernelPlan {
    /// Batch-innermost operands (both batch strides 1) get the kernel whose
    /// lanes walk the batch; otherwise 128² tiles when they fill the machine
    /// at least once, else 64² tiles. K is split when the CTAs leave
    /// multiprocessors idle and K is long.
    pub(crate) fn new(p: &Problem, multiprocessors: usize) -> Self {
        let (batch, m, n, k) = (p.batch, p.m, p.n, p.k);
        let batch_inner_tiles = m.div_ceil(16) * n.div_ceil(32);
        let (kernel, grid, batch_in_z) = if p.a.batch_stride == 1
            && p.b.batch_stride == 1
            && batch >= 16
            && batch_inner_tiles <= 65_535
        {
            (
                GEMM_BATCH_INNER,
                (batch.div_ceil(32), batch_inner_tiles),
                false,
            )
        } else {
            let tiles = |side: usize| (n.div_ceil(side), m.div_ceil(side));
            let (x, y) = tiles(128);
            if x * y * batch >= multiprocessors {
                (GEMM_LARGE, (x, y), true)
            } else {
                (GEMM_SMALL, tiles(64), true)
            }
        };
        let ctas = grid.0 * grid.1 * if batch_in_z { batch } else { 1 };
        let splittable = kernel != GEMM_LARGE;
        let mut splits = 1;
        if splittable && ctas < multiprocessors && k >= 512 {
            splits = (2 * multiprocessors)
                .div_ceil(ctas)
                .min(k / 256)
                .clamp(1, 64);
        }
        let k_chunk = if splits == 1 {
            k
        } else {
            k.div_ceil(splits).next_multiple_of(8)
        };
        KernelPlan {
            kernel,
            grid,
            batch_in_z,
            splits: if splits == 1 { 1 } else { k.div_ceil(k_chunk) },
            k_chunk,
        }
    }
}

/// The operand's lanes should walk its unit (or smaller) stride.
fn walks_columns(v: &MatView) -> bool {
    v.col_stride == 1 || (v.row_stride != 1 && v.col_stride <= v.row_stride)
}

fn kernel(backend: &CudaBackend, p: &Problem, addrs: [u64; 3]) -> Result<()> {
    let info = backend.device().info();
    let plan = KernelPlan::new(p, info.multiprocessors);
    if plan.grid.1 > 65_535 {
        return Err(backend_error(format!(
            "gemm: {}×{} is beyond the kernel grid",
            p.m, p.n
        )));
    }
    let workspace = if plan.splits > 1 {
        Some(backend.uninit_tensor(&[plan.splits * p.batch * p.m * p.n])?)
    } else {
        None
    };
    let workspace_addr = match &workspace {
        Some(w) => backend.read(w)?,
        None => 0,
    };
    let mut args = GemmArgs {
        a: addrs[0],
        b: addrs[1],
        c: addrs[2],
        workspace: workspace_addr,
        av: DevView::from(p.a.mat),
        bv: DevView::from(p.b.mat),
        cv: DevView::from(p.c.mat),
        a_batch_stride: p.a.batch_stride as i64,
        b_batch_stride: p.b.batch_stride as i64,
        c_batch_stride: p.c.batch_stride as i64,
        batch: p.batch as i64,
        m: p.m as i64,
        n: p.n as i64,
        k: p.k as i64,
        k_chunk: plan.k_chunk as i64,
        job_base: 0,
        alpha: p.alpha,
        beta: p.beta,
        splits: plan.splits as i32,
        a_k_fast: i32::from(walks_columns(&p.a.mat)),
        b_n_fast: i32::from(walks_columns(&p.b.mat)),
        pad: 0,
    };
    let jobs = plan.splits * if plan.batch_in_z { p.batch } else { 1 };
    for job_base in (0..jobs).step_by(65_535) {
        args.job_base = job_base as i64;
        let launch = Launch {
            grid: (
                plan.grid.0.min(i32::MAX as usize) as u32,
                plan.grid.1 as u32,
                (jobs - job_base).min(65_535) as u32,
            ),
            block: (256, 1, 1),
            shared_bytes: 0,
        };
        backend.launch(plan.kernel, launch, &args)?;
    }
    if plan.splits > 1 {
        let total = p.batch * p.m * p.n;
        let launch = Launch {
            grid: (total.div_ceil(256).min(1 << 16) as u32, 1, 1),
            block: (256, 1, 1),
            shared_bytes: 0,
        };
        backend.launch(GEMM_SPLITK_REDUCE, launch, &args)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(a: MatView, b: MatView, c: MatView) -> Problem {
        Problem {
            batch: 1,
            m: a.rows,
            n: b.cols,
            k: a.cols,
            alpha: 1.0,
            beta: 0.0,
            a: BatchView::single(a),
            b: BatchView::single(b),
            c: BatchView::single(c),
        }
    }

    #[test]
    fn row_major_operands_become_a_swapped_column_major_call() {
        // C (2×3) = A (2×4) · B (4×3), all row-major: cuBLAS computes
        // Cᵀ (3×2, ld 3) = Bᵀ (N, ld 3) · Aᵀ (N, ld 4).
        let plan = CublasPlan::new(&problem(
            MatView::full(2, 4),
            MatView::full(4, 3),
            MatView::full(2, 3),
        ))
        .unwrap();
        assert_eq!(
            plan,
            CublasPlan {
                swap: true,
                m: 3,
                n: 2,
                k: 4,
                trans_a: false,
                trans_b: false,
                lda: 3,
                ldb: 4,
                ldc: 3,
                batch: 1
            }
        );
    }

    #[test]
    fn transposed_views_become_transposed_operations() {
        // C = Aᵀ·B with A stored 4×2 row-major: the view Aᵀ has row stride 1.
        let plan = CublasPlan::new(&problem(
            MatView::full(4, 2).t(),
            MatView::full(4, 3),
            MatView::full(2, 3),
        ))
        .unwrap();
        // Swapped: op(A') = Bᵀ (N, ld 3), op(B') = A (its row-major storage read as col-major 2×4: T, ld 2).
        assert!(plan.swap);
        assert_eq!((plan.trans_a, plan.lda), (false, 3));
        assert_eq!((plan.trans_b, plan.ldb), (true, 2));
    }

    #[test]
    fn doubly_strided_operands_are_not_for_cublas() {
        // The Monarch stride permutation: column stride b, row stride k.
        let interleaved = MatView {
            offset: 1,
            rows: 5,
            cols: 3,
            row_stride: 12,
            col_stride: 4,
        };
        assert!(CublasPlan::new(&problem(
            interleaved,
            MatView::full(3, 3),
            MatView::full(5, 3)
        ))
        .is_none());
        // Overlapping rows (ld smaller than the row) are not expressible either.
        let overlapping = MatView {
            offset: 0,
            rows: 4,
            cols: 3,
            row_stride: 2,
            col_stride: 1,
        };
        assert!(CublasPlan::new(&problem(
            overlapping,
            MatView::full(3, 3),
            MatView::full(4, 3)
        ))
        .is_none());
    }

    fn sized(batch: usize, m: usize, n: usize, k: usize) -> Problem {
        Problem {
            batch,
            a: BatchView::strided(MatView::full(m, k), m * k),
            b: BatchView::strided(MatView::full(k, n), k * n),
            c: BatchView::strided(MatView::full(m, n), m * n),
            ..problem(
                MatView::full(m, k),
                MatView::full(k, n),
                MatView::full(m, n),
            )
        }
    }

    #[test]
    fn small_outputs_over_long_k_are_split() {
        // 43 blocks of 48×48 over 4096 tokens, contiguous blocks: 64² tiles, split.
        let plan = KernelPlan::new(&sized(43, 48, 48, 4096), 132);
        assert_eq!((plan.kernel, plan.grid), (GEMM_SMALL, (1, 1)));
        assert!(plan.splits > 1 && plan.k_chunk % 8 == 0);
        assert!(plan.splits * plan.k_chunk >= 4096);
        assert!((plan.splits - 1) * plan.k_chunk < 4096);
        // A 4096² output fills the machine with 128² tiles, never split.
        let big = KernelPlan::new(&sized(1, 4096, 4096, 4096), 132);
        assert_eq!(
            (big.kernel, big.grid, big.splits),
            (GEMM_LARGE, (32, 32), 1)
        );
    }

    #[test]
    fn interleaved_batches_walk_the_batch_in_lanes() {
        // Monarch ∂W2 at LLaMA-7B FFN size: G[:, σ·b+λ]ᵀ · Y1[:, ρ·b+λ], b = 43.
        let (b, p, n) = (43, 48, 4096);
        let interleaved = MatView {
            offset: 0,
            rows: n,
            cols: p,
            row_stride: b * p,
            col_stride: b,
        };
        let problem = Problem {
            batch: b,
            m: p,
            n: p,
            k: n,
            alpha: 1.0,
            beta: 0.0,
            a: BatchView::strided(interleaved.t(), 1),
            b: BatchView::strided(interleaved, 1),
            c: BatchView::strided(MatView::full(p, p), p * p),
        };
        assert!(CublasPlan::new(&problem).is_none());
        let plan = KernelPlan::new(&problem, 132);
        assert_eq!(plan.kernel, GEMM_BATCH_INNER);
        // 2 groups of 32 entries × (3 × 2) tiles = 12 CTAs, so K is split.
        assert_eq!(plan.grid, (2, 6));
        assert!(!plan.batch_in_z && plan.splits > 1);
    }
}
