//! apex-cuda's own behaviour on every CUDA device this machine has: the real
//! GPU (if any) and the host emulator (if a C++20 compiler is present). An
//! absent device's trials are ignored with the reason printed, never passed.
//! Numerical conformance lives in apex-conformance (primitives, vectors, ops).

use apex_core::{ops, ApexError, Backend, MatView, Monarch, MonarchInit};
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
