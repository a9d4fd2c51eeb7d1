//! Optional system OpenBLAS path (feature `openblas`): GEMMs whose operands are
//! each row-major or column-major (one unit stride) go to `cblas_?gemm`; views
//! with two non-unit strides (the Monarch permutations) stay on the gemm crate.
//!
//! Why optional: the default build is pure Rust with no system libraries; on
//! x86-64 without AVX-512 OpenBLAS's hand-tuned kernels are faster than the
//! gemm crate for large dense products (see the bench table in the README).

use apex_core::MatView;

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

#[link(name = "openblas")]
extern "C" {
    fn cblas_sgemm(
        layout: i32,
        trans_a: i32,
        trans_b: i32,
        m: i32,
        n: i32,
        k: i32,
        alpha: f32,
        a: *const f32,
        lda: i32,
        b: *const f32,
        ldb: i32,
        beta: f32,
        c: *mut f32,
        ldc: i32,
    );
    fn cblas_dgemm(
        layout: i32,
        trans_a: i32,
        trans_b: i32,
        m: i32,
        n: i32,
        k: i32,
        alpha: f64,
        a: *const f64,
        lda: i32,
        b: *const f64,
        ldb: i32,
        beta: f64,
        c: *mut f64,
        ldc: i32,
    );
}

/// (transpose flag, leading dimension) of an operand BLAS can read, if any.
fn operand(view: &MatView) -> Option<(i32, i32)> {
    let ld = |v: usize| i32::try_from(v.max(1)).ok();
    if view.col_stride == 1 && view.row_stride >= view.cols.max(1) {
        Some((NO_TRANS, ld(view.row_stride)?))
    } else if view.row_stride == 1 && view.col_stride >= view.rows.max(1) {
        Some((TRANS, ld(view.col_stride)?))
    } else {
        None
    }
}

/// Element types with a cblas GEMM.
pub trait BlasElement: Copy {
    /// # Safety
    /// Pointers must be valid for the views described by the other arguments.
    #[allow(clippy::too_many_arguments)]
    unsafe fn cblas_gemm(
        ta: i32,
        tb: i32,
        m: i32,
        n: i32,
        k: i32,
        alpha: Self,
        a: *const Self,
        lda: i32,
        b: *const Self,
        ldb: i32,
        beta: Self,
        c: *mut Self,
        ldc: i32,
    );
}

impl BlasElement for f32 {
    unsafe fn cblas_gemm(
        ta: i32,
        tb: i32,
        m: i32,
        n: i32,
        k: i32,
        alpha: f32,
        a: *const f32,
        lda: i32,
        b: *const f32,
        ldb: i32,
        beta: f32,
        c: *mut f32,
        ldc: i32,
    ) {
        cblas_sgemm(
            ROW_MAJOR, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
        )
    }
}

impl BlasElement for f64 {
    unsafe fn cblas_gemm(
        ta: i32,
        tb: i32,
        m: i32,
        n: i32,
        k: i32,
        alpha: f64,
        a: *const f64,
        lda: i32,
        b: *const f64,
        ldb: i32,
        beta: f64,
        c: *mut f64,
        ldc: i32,
    ) {
        cblas_dgemm(
            ROW_MAJOR, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
        )
    }
}

/// Runs `C = α·A·B + β·C` through BLAS when all three views allow it; returns
/// false (doing nothing) otherwise.
///
/// # Safety
/// The views must have been bounds-checked against the buffers behind the pointers.
#[allow(clippy::too_many_arguments)]
pub unsafe fn try_gemm<E: BlasElement>(
    m: usize,
    n: usize,
    k: usize,
    alpha: E,
    a: *const E,
    av: &MatView,
    b: *const E,
    bv: &MatView,
    beta: E,
    c: *mut E,
    cv: &MatView,
) -> bool {
    let (Some((ta, lda)), Some((tb, ldb))) = (operand(av), operand(bv)) else {
        return false;
    };
    if cv.col_stride != 1 || cv.row_stride < n.max(1) {
        return false;
    }
    let (Ok(m), Ok(n), Ok(k), Ok(ldc)) = (
        i32::try_from(m),
        i32::try_from(n),
        i32::try_from(k),
        i32::try_from(cv.row_stride),
    ) else {
        return false;
    };
    E::cblas_gemm(
        ta,
        tb,
        m,
        n,
        k,
        alpha,
        a.add(av.offset),
        lda,
        b.add(bv.offset),
        ldb,
        beta,
        c.add(cv.offset),
        ldc,
    );
    true
}
