//! apex-cuda's own behaviour on every CUDA device this machine has: the real
//! GPU (if any) and the host emulator (if a C++20 compiler is present). An
//! absent device's trials are ignored with the reason printed, never passed.
//! Numerical conformance lives in apex-conformance (primitives, vectors, ops).

use apex_core::{ops, ApexError, Backend, MatView, Monarch, MonarchInit, ScaledColumns};
use apex_cuda::{CudaBackend, CudaOptions, GemmPath};
use libtest_mimic::{Arguments, Trial};

type Body = (&'static str, fn(&CudaBackend));

const BODIES: &[Body] = &[
    ("copies_on_write_keep_clones_independent", copies_on_write),
    ("reshape_shares_until_written", reshape_shares_until_written),
    ("upload_checks_its_length", upload_checks_its_length),
    ("gemm_paths_agree", gemm_paths_agree),
    (
        "fused_and_composite_monarch_agree",
        fused_and_composite_monarch_agree,
    ),
    ("empty_tensors_round_trip", empty_tensors_round_trip),
    (
        "fused_and_composite_monarch_add_scaled_agree",
        fused_and_composite_monarch_add_scaled_agree,
    ),
    ("counters_count_device_work", counters_count_device_work),
];

fn copies_on_write(gpu: &CudaBackend) {
    let a = gpu.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let mut b = a.clone();
    gpu.fill(&mut b, MatView::full(2, 2), 7.0).unwrap();
    assert_eq!(gpu.download(&a).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(gpu.download(&b).unwrap(), vec![7.0; 4]);
}

fn reshape_shares_until_written(gpu: &CudaBackend) {
    let a = gpu
        .upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])
        .unwrap();
    let mut r = gpu.reshape(&a, &[3, 2]).unwrap();
    assert_eq!(gpu.shape(&r), &[3, 2]);
    assert_eq!(gpu.download(&r).unwrap(), gpu.download(&a).unwrap());
    gpu.axpby(
        2.0,
        &a,
        MatView::full(3, 2),
        0.0,
        &mut r,
        MatView::full(3, 2),
    )
    .unwrap();
    assert_eq!(
        gpu.download(&a).unwrap(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
    assert_eq!(
        gpu.download(&r).unwrap(),
        vec![2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    );
    assert!(matches!(
        gpu.reshape(&a, &[4, 2]),
        Err(ApexError::ShapeMismatch { .. })
    ));
}

fn upload_checks_its_length(gpu: &CudaBackend) {
    assert!(matches!(
        gpu.upload(&[1.0, 2.0, 3.0], &[2, 2]),
        Err(ApexError::ShapeMismatch { op: "upload", .. })
    ));
}

/// The handwritten kernels and the default path (cuBLAS on a GPU that has
/// it) give the same product, transposed operands included.
fn gemm_paths_agree(gpu: &CudaBackend) {
    let kernels = gpu.with_options(CudaOptions {
        gemm: GemmPath::Kernels,
        ..gpu.options()
    });
    let (m, n, k) = (70, 90, 130);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0)
        .collect();
    let b: Vec<f32> = (0..n * k)
        .map(|i| ((i * 53 % 97) as f32) / 48.0 - 1.0)
        .collect();
    let ta = gpu.upload(&a, &[m, k]).unwrap();
    let tb = gpu.upload(&b, &[n, k]).unwrap();
    let run = |backend: &CudaBackend| {
        let c = ops::matmul(
            backend,
            &ta,
            MatView::full(m, k),
            &tb,
            MatView::full(n, k).t(),
        )
        .unwrap();
        backend.download(&c).unwrap()
    };
    let (auto, own) = (run(gpu), run(&kernels));
    let scale = own.iter().fold(0f32, |s, v| s.max(v.abs()));
    for (x, y) in auto.iter().zip(&own) {
        assert!((x - y).abs() <= 1e-4 * scale, "{x} vs {y}");
    }
}

fn fused_and_composite_monarch_agree(gpu: &CudaBackend) {
    let composite = gpu.with_options(CudaOptions {
        fused_monarch: false,
        ..gpu.options()
    });
    let monarch = Monarch::new(gpu, 48, MonarchInit::Noise, false, 3).unwrap();
    let x: Vec<f32> = (0..37 * 48).map(|i| ((i % 13) as f32) - 6.0).collect();
    let x = gpu.upload(&x, &[37, 48]).unwrap();
    let fused = gpu.download(&monarch.forward(gpu, &x).unwrap()).unwrap();
    let reference = gpu
        .download(&monarch.forward(&composite, &x).unwrap())
        .unwrap();
    let scale = reference.iter().fold(0f32, |s, v| s.max(v.abs()));
    for (x, y) in fused.iter().zip(&reference) {
        assert!((x - y).abs() <= 1e-5 * scale, "{x} vs {y}");
    }
}

/// `out = y ⊙ s + op(x) + β·out` in one fused launch equals the composite
/// (scale_columns, then the two-GEMM product), both directions, with strided
/// views and β ≠ 0.
fn fused_and_composite_monarch_add_scaled_agree(gpu: &CudaBackend) {
    let composite = gpu.with_options(CudaOptions {
        fused_monarch: false,
        ..gpu.options()
    });
    let (n, k) = (37, 48);
    let monarch = Monarch::new(gpu, k, MonarchInit::Noise, false, 3).unwrap();
    let values = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7 + seed) % 13) as f32) / 4.0 - 1.5)
            .collect()
    };
    // x and y are column windows of wider tensors; out a window too.
    let wide = gpu.upload(&values(n * 2 * k, 1), &[n, 2 * k]).unwrap();
    let s = gpu.upload(&values(k, 2), &[k]).unwrap();
    let start = gpu.upload(&values(n * 3 * k, 3), &[n, 3 * k]).unwrap();
    let (wv, ov) = (MatView::full(n, 2 * k), MatView::full(n, 3 * k));
    let (x_view, y_view, out_view) = (wv.columns(k..2 * k), wv.columns(0..k), ov.columns(k..2 * k));
    for transposed in [false, true] {
        let scaled = ScaledColumns {
            y: &wide,
            view: y_view,
            scale: &s,
        };
        let run = |backend: &CudaBackend| {
            let mut out = start.clone();
            let mid = monarch
                .add_scaled_into(
                    backend, transposed, &wide, x_view, scaled, 0.5, &mut out, out_view,
                )
                .unwrap();
            (
                backend.download(&out).unwrap(),
                backend.download(&mid).unwrap(),
            )
        };
        let (fused, reference) = (run(gpu), run(&composite));
        for (got, want) in [(&fused.0, &reference.0), (&fused.1, &reference.1)] {
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in got.iter().zip(want) {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "{a} vs {b} (transposed {transposed})"
                );
            }
        }
    }
}

/// A backend of the same kind as `gpu` with its own counters (the trials
/// share `gpu` across threads).
fn fresh(gpu: &CudaBackend) -> CudaBackend {
    if gpu.name().contains("emulated") {
        CudaBackend::emulated().unwrap()
    } else {
        CudaBackend::new().unwrap()
    }
}

fn counters_count_device_work(gpu: &CudaBackend) {
    let gpu = fresh(gpu);
    let a = gpu.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let mut z = gpu.zeros(&[3]).unwrap();
    let c = gpu.counters();
    assert_eq!((c.uploads, c.upload_bytes), (1, 16));
    assert_eq!((c.allocations, c.allocated_bytes), (2, 28));
    assert_eq!((c.zero_fills, c.zero_filled_bytes), (1, 12));
    gpu.reset_counters();
    assert_eq!(gpu.counters(), apex_cuda::Counters::default());

    let v = MatView::full(2, 2);
    let product = ops::matmul(&gpu, &a, v, &a, v).unwrap();
    let c = gpu.counters();
    // One product into an uninitialised output: no memset.
    assert_eq!(c.kernel_launches() + c.cublas_calls, 1, "{c:?}");
    assert_eq!((c.allocations, c.zero_fills), (1, 0));

    gpu.reset_counters();
    let shared = z.clone();
    gpu.fill(&mut z, MatView::full(1, 3), 2.0).unwrap();
    gpu.download(&product).unwrap();
    let c = gpu.counters();
    // Writing a shared buffer copies it first (copy-on-write).
    assert_eq!((c.device_copies, c.device_copy_bytes), (1, 12));
    assert_eq!(c.launches_of("elementwise"), 1);
    assert_eq!((c.downloads, c.download_bytes), (1, 16));
    assert_eq!(c.device_calls(), 2);
    drop(shared);
}

fn empty_tensors_round_trip(gpu: &CudaBackend) {
    let e = gpu.zeros(&[0, 5]).unwrap();
    assert!(gpu.download(&e).unwrap().is_empty());
    let g = gpu.gather_rows(&e, &[]).unwrap();
    assert_eq!(gpu.shape(&g), &[0, 5]);
}

/// Without a driver or device, construction fails with the reason (and
/// never panics); with one, it succeeds and names the device.
fn construction_reports_why_not() {
    match (CudaBackend::probe(), CudaBackend::new()) {
        (Err(why), Err(ApexError::Backend { message, .. })) => {
            assert_eq!(message, why);
            eprintln!("no CUDA device on this machine: {why}");
        }
        (Ok(count), Ok(gpu)) => {
            assert!(count >= 1);
            assert!(!gpu.info().name.is_empty());
        }
        (probe, new) => panic!("probe {probe:?} disagrees with new {new:?}"),
    }
}

fn trials(label: &str, backend: Result<CudaBackend, ApexError>, out: &mut Vec<Trial>) {
    if let Err(why) = &backend {
        eprintln!("SKIPPED backend {label}: {why}");
    }
    for &(name, body) in BODIES {
        let name = format!("{name}::{label}");
        out.push(match &backend {
            Ok(b) => {
                let b = b.clone();
                Trial::test(name, move || {
                    body(&b);
                    Ok(())
                })
            }
            Err(_) => Trial::test(name, || Ok(())).with_ignored_flag(true),
        });
    }
}

fn main() {
    let args = Arguments::from_args();
    let mut all = vec![Trial::test("construction_reports_why_not", || {
        construction_reports_why_not();
        Ok(())
    })];
    trials("cuda", CudaBackend::new(), &mut all);
    trials("cuda_emulated", CudaBackend::emulated(), &mut all);
    libtest_mimic::run(&args, all).exit();
}
