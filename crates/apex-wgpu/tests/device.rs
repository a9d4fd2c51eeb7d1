//! Every primitive of the wgpu backend against the CPU reference in f64, over
//! random shapes, strides, transposes and β (proptest), plus the fused Monarch
//! kernels against the two-GEMM composite, copy-on-write and typed errors.
//!
//! Needs an adapter (lavapipe on CI). Without one every trial is reported as
//! ignored and "SKIPPED backend wgpu: <reason>" is printed — never passed.

use apex_core::transformer_ops::{AdamWStep, TransformerOps, IGNORE_INDEX};
use apex_core::{
    ops, ApexError, Backend, BatchView, BinaryOp, MatView, Monarch, MonarchInit, UnaryOp,
};
use apex_cpu::CpuBackend;
use apex_wgpu::WgpuBackend;
use libtest_mimic::{Arguments, Trial};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

type Body = fn(&WgpuBackend);

fn main() {
    let args = Arguments::from_args();
    let bodies: Vec<(&str, Body)> = vec![
        ("gemm_matches_cpu_on_random_strided_views", gemm_random),
        ("gemm_large_and_medium_tiles_match_cpu", gemm_big_tiles),
        (
            "gemm_beta_zero_does_not_read_nan",
            gemm_beta_zero_ignores_nan,
        ),
        (
            "elementwise_ops_match_cpu_on_random_views",
            elementwise_random,
        ),
        ("column_dot_and_scale_columns_match_cpu", column_ops_random),
        ("gathers_match_cpu", gathers),
        ("fused_monarch_equals_the_composite", fused_monarch),
        ("clones_are_copy_on_write", copy_on_write),
        ("bad_inputs_are_typed_errors", typed_errors),
        ("transformer_ops_match_cpu", transformer_ops),
    ];
    let backend = WgpuBackend::new().map_err(|e| e.to_string());
    match &backend {
        Ok(b) => eprintln!("backend wgpu: {}", b.name()),
        Err(why) => eprintln!("SKIPPED backend wgpu: {why}"),
    }
    let trials = bodies
        .into_iter()
        .map(|(name, body)| match &backend {
            Ok(b) => {
                let b = b.clone();
                Trial::test(name, move || {
                    body(&b);
                    Ok(())
                })
            }
            Err(_) => Trial::test(name, || Ok(())).with_ignored_flag(true),
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Spec §0.1 tolerance: |got − want| ≤ atol + rtol·|want|, atol = rtol·max|want|.
fn check_close(what: &str, got: &[f32], want: &[f64], rtol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}: length", what);
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(*g);
        prop_assert!(
            (g - w).abs() <= rtol * scale + rtol * w.abs(),
            "{}[{}]: got {}, want {}",
            what,
            i,
            g,
            w
        );
    }
    Ok(())
}

fn values(len: usize, seed: u64) -> Vec<f64> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn upload_both(
    gpu: &WgpuBackend,
    data: &[f64],
    shape: &[usize],
) -> (apex_wgpu::WgpuTensor, apex_cpu::CpuTensor<f64>) {
    let cpu = CpuBackend::<f64>::new();
    (
        ops::upload_f64(gpu, data, shape).unwrap(),
        cpu.upload(data, shape).unwrap(),
    )
}

/// A view of a `rows × cols` matrix inside a buffer: optionally stored
/// transposed, with a leading offset and padded rows.
#[derive(Clone, Copy, Debug)]
struct Layout {
    transposed: bool,
    offset: usize,
    pad: usize,
}

impl Layout {
    /// (view, buffer length) for `count` matrices of `rows × cols`.
    fn place(&self, rows: usize, cols: usize, count: usize) -> (BatchView, usize) {
        let (stored_rows, stored_cols) = if self.transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        let ld = stored_cols + self.pad;
        let mat = MatView {
            offset: self.offset,
            rows: stored_rows,
            cols: stored_cols,
            row_stride: ld,
            col_stride: 1,
        };
        let mat = if self.transposed { mat.t() } else { mat };
        let entry = stored_rows * ld;
        (
            BatchView::strided(mat, entry),
            self.offset + entry * count.max(1),
        )
    }
}

fn layout() -> impl Strategy<Value = Layout> {
    (any::<bool>(), 0usize..3, 0usize..3).prop_map(|(transposed, offset, pad)| Layout {
        transposed,
        offset,
        pad,
    })
}

#[allow(clippy::too_many_arguments)]
fn gemm_case(
    gpu: &WgpuBackend,
    batch: usize,
    (m, n, k): (usize, usize, usize),
    (la, lb, lc): (Layout, Layout, Layout),
    alpha: f64,
    beta: f64,
    seed: u64,
) -> Result<(), TestCaseError> {
    let cpu = CpuBackend::<f64>::new();
    let (av, a_len) = la.place(m, k, batch);
    let (bv, b_len) = lb.place(k, n, batch);
    let (cv, c_len) = lc.place(m, n, batch);
    let (a_g, a_c) = upload_both(gpu, &values(a_len, seed), &[a_len]);
    let (b_g, b_c) = upload_both(gpu, &values(b_len, seed + 1), &[b_len]);
    let (mut c_g, mut c_c) = upload_both(gpu, &values(c_len, seed + 2), &[c_len]);
    gpu.gemm(
        batch,
        alpha as f32,
        &a_g,
        av,
        &b_g,
        bv,
        beta as f32,
        &mut c_g,
        cv,
    )
    .unwrap();
    cpu.gemm(batch, alpha, &a_c, av, &b_c, bv, beta, &mut c_c, cv)
        .unwrap();
    check_close(
        &format!("gemm b={batch} {m}x{n}x{k} {la:?} {lb:?} {lc:?} α={alpha} β={beta}"),
        &gpu.download(&c_g).unwrap(),
        &cpu.download(&c_c).unwrap(),
        1e-4,
    )
}

fn gemm_random(gpu: &WgpuBackend) {
    let strategy = (
        1usize..=3,
        (0usize..=40, 0usize..=40, 0usize..=40),
        (layout(), layout(), layout()),
        prop_oneof![Just(1.0), -2.0..2.0f64],
        prop_oneof![Just(0.0), Just(1.0), -1.0..1.0f64],
        any::<u64>(),
    );
    runner(64)
        .run(&strategy, |(batch, dims, layouts, alpha, beta, seed)| {
            gemm_case(gpu, batch, dims, layouts, alpha, beta, seed)
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

fn gemm_big_tiles(gpu: &WgpuBackend) {
    let plain = Layout {
        transposed: false,
        offset: 0,
        pad: 0,
    };
    let transposed = Layout {
        transposed: true,
        offset: 1,
        pad: 2,
    };
    // 32 × 250×190: 128-wide tiles with ragged edges; 32 × 128×128: 64-wide tiles.
    for (batch, dims, layouts) in [
        (32, (250, 190, 13), (plain, plain, plain)),
        (32, (250, 190, 13), (transposed, transposed, plain)),
        (32, (128, 128, 9), (plain, transposed, transposed)),
    ] {
        gemm_case(gpu, batch, dims, layouts, 1.0, 0.5, 7).unwrap();
    }
}

fn gemm_beta_zero_ignores_nan(gpu: &WgpuBackend) {
    let a = gpu.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let mut c = gpu.upload(&[f32::NAN; 4], &[2, 2]).unwrap();
    let v = BatchView::single(MatView::full(2, 2));
    gpu.gemm(1, 1.0, &a, v, &a, v, 0.0, &mut c, v).unwrap();
    assert_eq!(gpu.download(&c).unwrap(), vec![7.0, 10.0, 15.0, 22.0]);
    let mut y = gpu.upload(&[f32::NAN; 4], &[2, 2]).unwrap();
    let m = MatView::full(2, 2);
    gpu.axpby(2.0, &a, m, 0.0, &mut y, m).unwrap();
    assert_eq!(gpu.download(&y).unwrap(), vec![2.0, 4.0, 6.0, 8.0]);
}

/// One random elementwise op on equal-shaped views, on both backends.
fn elementwise_random(gpu: &WgpuBackend) {
    let strategy = (
        (0usize..=20, 1usize..=20),
        (layout(), layout(), layout()),
        0usize..12,
        prop_oneof![Just(0.0), -1.0..1.0f64],
        any::<u64>(),
    );
    runner(96)
        .run(
            &strategy,
            |((rows, cols), (lx, lz, ly), which, beta, seed)| {
                let cpu = CpuBackend::<f64>::new();
                let (xv, x_len) = lx.place(rows, cols, 1);
                let (zv, z_len) = lz.place(rows, cols, 1);
                let (yv, y_len) = ly.place(rows, cols, 1);
                let (xv, zv, yv) = (xv.mat, zv.mat, yv.mat);
                let mut xs = values(x_len, seed);
                if which == 6 || which == 9 {
                    // sqrt, and the divisor of div: keep them in range.
                    xs.iter_mut().for_each(|v| *v = v.abs() + 0.5);
                }
                let (x_g, x_c) = upload_both(gpu, &xs, &[x_len]);
                let mut zs = values(z_len, seed + 1);
                zs.iter_mut()
                    .for_each(|v| *v = v.signum() * (v.abs() + 0.5));
                let (z_g, z_c) = upload_both(gpu, &zs, &[z_len]);
                let (mut y_g, mut y_c) = upload_both(gpu, &values(y_len, seed + 2), &[y_len]);
                let unary = [
                    UnaryOp::Silu,
                    UnaryOp::SiluGrad,
                    UnaryOp::Sqrt,
                    UnaryOp::Square,
                    UnaryOp::Exp,
                    UnaryOp::Neg,
                ];
                let binary = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];
                let name = match which {
                    0..=3 => {
                        let op = binary[which];
                        gpu.binary(op, &x_g, xv, &z_g, zv, beta as f32, &mut y_g, yv)
                            .unwrap();
                        cpu.binary(op, &x_c, xv, &z_c, zv, beta, &mut y_c, yv)
                            .unwrap();
                        format!("{op:?}")
                    }
                    4..=9 => {
                        let op = unary[which - 4];
                        gpu.unary(op, &x_g, xv, &mut y_g, yv).unwrap();
                        cpu.unary(op, &x_c, xv, &mut y_c, yv).unwrap();
                        format!("{op:?}")
                    }
                    10 => {
                        gpu.axpby(-1.5, &x_g, xv, beta as f32, &mut y_g, yv)
                            .unwrap();
                        cpu.axpby(-1.5, &x_c, xv, beta, &mut y_c, yv).unwrap();
                        "axpby".into()
                    }
                    _ => {
                        gpu.fill(&mut y_g, yv, 0.25).unwrap();
                        cpu.fill(&mut y_c, yv, 0.25).unwrap();
                        "fill".into()
                    }
                };
                check_close(
                    &format!("{name} {rows}x{cols} {lx:?} {ly:?} β={beta}"),
                    &gpu.download(&y_g).unwrap(),
                    &cpu.download(&y_c).unwrap(),
                    1e-5,
                )
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

fn column_ops_random(gpu: &WgpuBackend) {
    let strategy = (
        (0usize..=150, 1usize..=140),
        (layout(), layout()),
        prop_oneof![Just(0.0), -1.0..1.0f64],
        0usize..3,
        any::<u64>(),
    );
    runner(48)
        .run(&strategy, |((rows, cols), (lx, lz), beta, offset, seed)| {
            let cpu = CpuBackend::<f64>::new();
            let (xv, x_len) = lx.place(rows, cols, 1);
            let (zv, z_len) = lz.place(rows, cols, 1);
            let (xv, zv) = (xv.mat, zv.mat);
            let (x_g, x_c) = upload_both(gpu, &values(x_len, seed), &[x_len]);
            let (z_g, z_c) = upload_both(gpu, &values(z_len, seed + 1), &[z_len]);
            let out_len = cols + offset + 1;
            let (mut o_g, mut o_c) = upload_both(gpu, &values(out_len, seed + 2), &[out_len]);
            gpu.column_dot(&x_g, xv, &z_g, zv, beta as f32, &mut o_g, offset)
                .unwrap();
            cpu.column_dot(&x_c, xv, &z_c, zv, beta, &mut o_c, offset)
                .unwrap();
            check_close(
                &format!("column_dot {rows}x{cols} {lx:?} {lz:?} β={beta}"),
                &gpu.download(&o_g).unwrap(),
                &cpu.download(&o_c).unwrap(),
                1e-4,
            )?;
            let (mut y_g, mut y_c) = upload_both(gpu, &values(z_len, seed + 3), &[z_len]);
            gpu.scale_columns(&x_g, xv, &o_g, offset, beta as f32, &mut y_g, zv)
                .unwrap();
            // The CPU scales by the wgpu column sums too, so only scale_columns is compared.
            let o_host: Vec<f64> = gpu
                .download(&o_g)
                .unwrap()
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let scale_c = cpu.upload(&o_host, &[out_len]).unwrap();
            cpu.scale_columns(&x_c, xv, &scale_c, offset, beta, &mut y_c, zv)
                .unwrap();
            check_close(
                &format!("scale_columns {rows}x{cols} β={beta}"),
                &gpu.download(&y_g).unwrap(),
                &cpu.download(&y_c).unwrap(),
                1e-5,
            )
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Gathers move values: exact equality with the f32-rounded reference.
fn gathers(gpu: &WgpuBackend) {
    let cpu = CpuBackend::<f64>::new();
    let rounded = |t: &apex_cpu::CpuTensor<f64>| -> Vec<f64> {
        cpu.download(t)
            .unwrap()
            .iter()
            .map(|&v| f64::from(v as f32))
            .collect()
    };
    let (rows, cols) = (7, 5);
    let data = values(rows * cols, 3);
    let (x_g, x_c) = upload_both(gpu, &data, &[rows, cols]);
    for index in [vec![6, 0, 3, 3], vec![], vec![1]] {
        let g = gpu.gather_rows(&x_g, &index).unwrap();
        let c = cpu.gather_rows(&x_c, &index).unwrap();
        assert_eq!(gpu.shape(&g), cpu.shape(&c));
        check_close("gather_rows", &gpu.download(&g).unwrap(), &rounded(&c), 0.0).unwrap();
    }
    for index in [vec![4, 0, 2, 2, 1], vec![], vec![3]] {
        let g = gpu.gather_columns(&x_g, &index).unwrap();
        let c = cpu.gather_columns(&x_c, &index).unwrap();
        assert_eq!(gpu.shape(&g), cpu.shape(&c));
        check_close(
            "gather_columns",
            &gpu.download(&g).unwrap(),
            &rounded(&c),
            0.0,
        )
        .unwrap();
    }
}

/// The fused kernels (the backend's overrides) against the two-GEMM composite
/// on the same backend, with strided views and accumulation.
fn fused_monarch(gpu: &WgpuBackend) {
    let strategy = (
        prop_oneof![1usize..=40, Just(288), Just(1024), Just(2064)],
        0usize..=19,
        (layout(), layout()),
        prop_oneof![Just(0.0), -1.0..1.0f64],
        any::<u64>(),
    );
    runner(40)
        .run(&strategy, |(k, rows, (lx, lo), beta, seed)| {
            let monarch = Monarch::new(gpu, k, MonarchInit::Noise, false, seed).expect("monarch");
            let (xv, x_len) = lx.place(rows, k, 1);
            let (ov, o_len) = lo.place(rows, k, 1);
            let (xv, ov) = (xv.mat, ov.mat);
            let x = ops::upload_f64(gpu, &values(x_len, seed), &[x_len]).unwrap();
            let start = ops::upload_f64(gpu, &values(o_len, seed + 1), &[o_len]).unwrap();
            for transposed in [false, true] {
                let (mut fused, mut composite) = (start.clone(), start.clone());
                let (mid_f, mid_c) = if transposed {
                    (
                        gpu.monarch_apply_transposed(&monarch, &x, xv, beta as f32, &mut fused, ov)
                            .unwrap(),
                        monarch
                            .apply_transposed_composite(
                                gpu,
                                &x,
                                xv,
                                beta as f32,
                                &mut composite,
                                ov,
                            )
                            .unwrap(),
                    )
                } else {
                    (
                        gpu.monarch_forward(&monarch, &x, xv, beta as f32, &mut fused, ov)
                            .unwrap(),
                        monarch
                            .forward_composite(gpu, &x, xv, beta as f32, &mut composite, ov)
                            .unwrap(),
                    )
                };
                let want = |t| -> Vec<f64> {
                    gpu.download(t)
                        .unwrap()
                        .iter()
                        .map(|&v| f64::from(v))
                        .collect()
                };
                let what = format!("k={k} rows={rows} transposed={transposed} β={beta}");
                check_close(
                    &format!("out {what}"),
                    &gpu.download(&fused).unwrap(),
                    &want(&composite),
                    1e-4,
                )?;
                check_close(
                    &format!("intermediate {what}"),
                    &gpu.download(&mid_f).unwrap(),
                    &want(&mid_c),
                    1e-4,
                )?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

fn copy_on_write(gpu: &WgpuBackend) {
    let a = gpu.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let mut b = a.clone();
    gpu.fill(&mut b, MatView::full(2, 2), 9.0).unwrap();
    assert_eq!(gpu.download(&a).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(gpu.download(&b).unwrap(), vec![9.0; 4]);
    // A reshape shares data until written.
    let mut flat = gpu.reshape(&a, &[4]).unwrap();
    assert_eq!(gpu.download(&flat).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    gpu.fill(&mut flat, MatView::row_vector(1), 0.0).unwrap();
    assert_eq!(gpu.download(&flat).unwrap(), vec![0.0, 2.0, 3.0, 4.0]);
    assert_eq!(gpu.download(&a).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
}

fn typed_errors(gpu: &WgpuBackend) {
    let a = gpu.zeros(&[3, 4]).unwrap();
    let mut y = gpu.zeros(&[3, 4]).unwrap();
    let too_big = MatView::full(4, 4);
    assert!(matches!(
        gpu.axpby(1.0, &a, too_big, 0.0, &mut y, too_big),
        Err(ApexError::ViewOutOfBounds { op: "axpby", .. })
    ));
    assert!(matches!(
        gpu.gather_rows(&a, &[0, 3]),
        Err(ApexError::InvalidIndex { index: 3, .. })
    ));
    assert!(matches!(
        gpu.gather_columns(&gpu.zeros(&[12]).unwrap(), &[0]),
        Err(ApexError::ShapeMismatch { .. })
    ));
    let v = BatchView::single(MatView::full(3, 4));
    assert!(matches!(
        gpu.gemm(1, 1.0, &a, v, &a, v, 0.0, &mut y, v),
        Err(ApexError::ShapeMismatch { op: "gemm", .. })
    ));
    assert!(matches!(
        gpu.upload(&[1.0, 2.0], &[3]),
        Err(ApexError::ShapeMismatch { op: "upload", .. })
    ));
    assert!(matches!(
        gpu.column_dot(
            &a,
            MatView::full(3, 4),
            &a,
            MatView::full(3, 4),
            0.0,
            &mut y,
            10
        ),
        Err(ApexError::ViewOutOfBounds { .. })
    ));
    // A tensor beyond the adapter's limits is a backend error, not an abort.
    assert!(matches!(
        gpu.zeros(&[1 << 40]),
        Err(ApexError::Backend {
            backend: "wgpu",
            ..
        })
    ));
    // The backend still works after the errors.
    assert_eq!(gpu.download(&y).unwrap(), vec![0.0; 12]);
}

fn host<B: Backend>(backend: &B, t: &B::Tensor) -> Vec<f64> {
    ops::download_f64(backend, t).unwrap()
}

fn as_f32(values: Vec<f64>) -> Vec<f32> {
    values.into_iter().map(|v| v as f32).collect()
}

/// Every TransformerOps method on wgpu against the CPU reference in f64, at
/// shapes with ragged workgroup tails (d and V not multiples of 64).
fn transformer_ops(gpu: &WgpuBackend) {
    let cpu = CpuBackend::<f64>::new();
    let (rows, d, seq) = (6, 70, 3);
    let x = values(rows * d, 1);
    let w = values(d, 2);
    let gy = values(rows * d, 3);
    let (x_g, x_c) = upload_both(gpu, &x, &[rows, d]);
    let (w_g, w_c) = upload_both(gpu, &w, &[d]);
    let (gy_g, gy_c) = upload_both(gpu, &gy, &[rows, d]);
    let (y_g, inv_g) = gpu.rms_norm(&x_g, &w_g, 1e-5).unwrap();
    let (y_c, inv_c) = cpu.rms_norm(&x_c, &w_c, 1e-5).unwrap();
    check_close(
        "rms_norm y",
        &as_f32(host(gpu, &y_g)),
        &host(&cpu, &y_c),
        1e-5,
    )
    .unwrap();
    check_close(
        "rms_norm inv",
        &as_f32(host(gpu, &inv_g)),
        &host(&cpu, &inv_c),
        1e-5,
    )
    .unwrap();
    let (mut gw_g, mut gw_c) = upload_both(gpu, &values(d, 4), &[d]);
    let gx_g = gpu
        .rms_norm_backward(&x_g, &w_g, &inv_g, &gy_g, Some(&mut gw_g))
        .unwrap();
    let gx_c = cpu
        .rms_norm_backward(&x_c, &w_c, &inv_c, &gy_c, Some(&mut gw_c))
        .unwrap();
    check_close(
        "rms grad_x",
        &as_f32(host(gpu, &gx_g)),
        &host(&cpu, &gx_c),
        1e-4,
    )
    .unwrap();
    check_close(
        "rms grad_w",
        &as_f32(host(gpu, &gw_g)),
        &host(&cpu, &gw_c),
        1e-4,
    )
    .unwrap();

    for inverse in [false, true] {
        let (mut r_g, mut r_c) = upload_both(gpu, &x, &[rows, d]);
        gpu.rope(&mut r_g, 14, seq, 10000.0, inverse).unwrap();
        cpu.rope(&mut r_c, 14, seq, 10000.0, inverse).unwrap();
        check_close("rope", &as_f32(host(gpu, &r_g)), &host(&cpu, &r_c), 1e-5).unwrap();
    }

    let s = 67;
    let scores = values(2 * s * s, 5);
    let (mut p_g, mut p_c) = upload_both(gpu, &scores, &[2, s, s]);
    gpu.causal_softmax(&mut p_g, 0.3).unwrap();
    cpu.causal_softmax(&mut p_c, 0.3).unwrap();
    check_close(
        "causal_softmax",
        &as_f32(host(gpu, &p_g)),
        &host(&cpu, &p_c),
        1e-5,
    )
    .unwrap();
    let (mut g_g, mut g_c) = upload_both(gpu, &values(2 * s * s, 6), &[2, s, s]);
    gpu.softmax_backward(&p_g, &mut g_g, 0.3).unwrap();
    cpu.softmax_backward(&p_c, &mut g_c, 0.3).unwrap();
    check_close(
        "softmax_backward",
        &as_f32(host(gpu, &g_g)),
        &host(&cpu, &g_c),
        1e-4,
    )
    .unwrap();

    let vocab = 131;
    let logits: Vec<f64> = values(rows * vocab, 7).iter().map(|v| 4.0 * v).collect();
    let (l_g, l_c) = upload_both(gpu, &logits, &[rows, vocab]);
    let labels = [3, IGNORE_INDEX, 130, 0, 77, IGNORE_INDEX];
    let (loss_g, count_g, grad_g) = gpu.cross_entropy(&l_g, &labels, Some(0.25)).unwrap();
    let (loss_c, count_c, grad_c) = cpu.cross_entropy(&l_c, &labels, Some(0.25)).unwrap();
    assert_eq!(count_g, count_c);
    assert!(
        (loss_g - loss_c).abs() <= 1e-5 * loss_c.abs(),
        "{loss_g} vs {loss_c}"
    );
    check_close(
        "cross_entropy grad",
        &as_f32(host(gpu, &grad_g.unwrap())),
        &host(&cpu, &grad_c.unwrap()),
        1e-5,
    )
    .unwrap();
    let (loss_only, _, none) = gpu.cross_entropy(&l_g, &labels, None).unwrap();
    assert!(none.is_none());
    assert!((loss_only - loss_g).abs() <= 1e-6 * loss_g.abs());
    assert!(matches!(
        gpu.cross_entropy(&l_g, &[0, 1, 2, 3, 4, 131], None),
        Err(ApexError::InvalidIndex { index: 131, .. })
    ));

    let index = [4, 1, 4, 0, 4, 2];
    let (mut t_g, mut t_c) = upload_both(gpu, &values(5 * d, 8), &[5, d]);
    gpu.scatter_add_rows(&x_g, &index, &mut t_g).unwrap();
    cpu.scatter_add_rows(&x_c, &index, &mut t_c).unwrap();
    check_close(
        "scatter_add_rows",
        &as_f32(host(gpu, &t_g)),
        &host(&cpu, &t_c),
        1e-6,
    )
    .unwrap();

    let (mut p_g, mut p_c) = upload_both(gpu, &x, &[rows, d]);
    let (mut m_g, mut m_c) = upload_both(gpu, &values(rows * d, 9), &[rows, d]);
    let sq: Vec<f64> = values(rows * d, 10).iter().map(|v| v * v).collect();
    let (mut v_g, mut v_c) = upload_both(gpu, &sq, &[rows, d]);
    let step = AdamWStep {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
        step: 3,
        grad_scale: 0.5,
    };
    gpu.adamw_step(&mut p_g, &gy_g, &mut m_g, &mut v_g, &step)
        .unwrap();
    cpu.adamw_step(&mut p_c, &gy_c, &mut m_c, &mut v_c, &step)
        .unwrap();
    for (what, g, c) in [("param", &p_g, &p_c), ("m", &m_g, &m_c), ("v", &v_g, &v_c)] {
        check_close(what, &as_f32(host(gpu, g)), &host(&cpu, c), 1e-5).unwrap();
    }
}
