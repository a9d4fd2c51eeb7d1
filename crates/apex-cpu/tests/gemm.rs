//! The GEMM primitive against a naive triple loop, for every transpose
//! combination, offsets, α/β, and batched interleaved views — at sizes large
//! enough to take the multi-threaded (and, with `openblas`, the BLAS) path.

use apex_core::{ops, Backend, BatchView, MatView};
use apex_cpu::CpuBackend;

fn values(len: usize, seed: usize) -> Vec<f64> {
    (0..len)
        .map(|i| (((i * 7919 + seed * 104729) % 1000) as f64) / 500.0 - 1.0)
        .collect()
}

fn at(data: &[f64], v: &MatView, r: usize, c: usize) -> f64 {
    data[v.offset + r * v.row_stride + c * v.col_stride]
}

#[allow(clippy::too_many_arguments)]
fn naive(
    a: &[f64],
    av: &MatView,
    b: &[f64],
    bv: &MatView,
    c: &mut [f64],
    cv: &MatView,
    alpha: f64,
    beta: f64,
) {
    for r in 0..av.rows {
        for col in 0..bv.cols {
            let dot: f64 = (0..av.cols)
                .map(|j| at(a, av, r, j) * at(b, bv, j, col))
                .sum();
            let idx = cv.offset + r * cv.row_stride + col * cv.col_stride;
            c[idx] = alpha * dot + beta * c[idx];
        }
    }
}

fn check<E: apex_cpu::CpuElement>(tol: f64) {
    let cpu = CpuBackend::<E>::new();
    let (m, n, k) = (40, 48, 36);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)] {
            // A is m×k (stored k×m when transposed), inside a wider buffer with an offset.
            let a_store = if ta { (k, m + 3) } else { (m, k + 3) };
            let b_store = if tb { (n, k + 2) } else { (k, n + 2) };
            let a_host = values(a_store.0 * a_store.1, 1);
            let b_host = values(b_store.0 * b_store.1, 2);
            let c_host = values(m * (n + 5), 3);
            let a_full = MatView::full(a_store.0, a_store.1).columns(2..2 + if ta { m } else { k });
            let b_full = MatView::full(b_store.0, b_store.1).columns(1..1 + if tb { k } else { n });
            let av = if ta { a_full.t() } else { a_full };
            let bv = if tb { b_full.t() } else { b_full };
            let cv = MatView::full(m, n + 5).columns(4..4 + n);
            let a = ops::upload_f64(&cpu, &a_host, &[a_store.0, a_store.1]).unwrap();
            let b = ops::upload_f64(&cpu, &b_host, &[b_store.0, b_store.1]).unwrap();
            let mut c = ops::upload_f64(&cpu, &c_host, &[m, n + 5]).unwrap();
            ops::gemm_into(
                &cpu,
                E::from_f64(alpha),
                &a,
                av,
                &b,
                bv,
                E::from_f64(beta),
                &mut c,
                cv,
            )
            .unwrap();
            let mut want = c_host.clone();
            naive(&a_host, &av, &b_host, &bv, &mut want, &cv, alpha, beta);
            let got = ops::download_f64(&cpu, &c).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= tol * (1.0 + w.abs()),
                    "ta={ta} tb={tb} α={alpha} β={beta} [{i}]: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn gemm_matches_naive_f32() {
    check::<f32>(1e-4);
}

#[test]
fn gemm_matches_naive_f64() {
    check::<f64>(1e-12);
}

/// Batched entries with interleaved (column stride > 1) views, as in Monarch.
#[test]
fn batched_interleaved_gemm_matches_naive() {
    let cpu = CpuBackend::<f64>::new();
    let (batch, rows, p) = (5, 70, 6);
    let k = batch * p;
    let x_host = values(rows * k, 4);
    let w_host = values(batch * p * p, 5);
    let x = ops::upload_f64(&cpu, &x_host, &[rows, k]).unwrap();
    let w = ops::upload_f64(&cpu, &w_host, &[batch, p, p]).unwrap();
    let mut out = cpu.zeros(&[rows, k]).unwrap();
    let interleaved = |v: MatView| {
        BatchView::strided(
            MatView {
                cols: p,
                col_stride: batch,
                ..v
            },
            1,
        )
    };
    let full = MatView::full(rows, k);
    let wv = BatchView::strided(MatView::full(p, p).t(), p * p);
    cpu.gemm(
        batch,
        1.0,
        &x,
        interleaved(full),
        &w,
        wv,
        0.0,
        &mut out,
        interleaved(full),
    )
    .unwrap();
    let got = ops::download_f64(&cpu, &out).unwrap();
    let mut want = vec![0.0; rows * k];
    for l in 0..batch {
        let xv = interleaved(full).entry(l);
        naive(
            &x_host,
            &xv,
            &w_host,
            &wv.entry(l),
            &mut want,
            &xv,
            1.0,
            0.0,
        );
    }
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()));
    }
}

#[test]
fn out_of_bounds_views_are_errors_not_faults() {
    let cpu = CpuBackend::<f32>::new();
    let a = cpu.zeros(&[4, 4]).unwrap();
    let mut c = cpu.zeros(&[4, 4]).unwrap();
    // 4×4 with row stride 5 reaches element 19 of a 16-element buffer.
    let overhanging = MatView {
        row_stride: 5,
        ..MatView::full(4, 4)
    };
    let err = ops::gemm_into(
        &cpu,
        1.0,
        &a,
        overhanging,
        &a,
        MatView::full(4, 4),
        0.0,
        &mut c,
        MatView::full(4, 4),
    );
    assert!(
        matches!(
            err,
            Err(apex_core::ApexError::ViewOutOfBounds {
                needed: 19,
                len: 16,
                ..
            })
        ),
        "{err:?}"
    );
}
