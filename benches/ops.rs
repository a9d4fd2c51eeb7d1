//! Criterion benchmarks of the CPU backend and, when an adapter exists, the
//! wgpu backend. Run through `cargo xtask bench` for the table, or directly:
//! `cargo bench -p apex-benches`.
//!
//! GPU work is asynchronous, so every timed wgpu iteration ends with
//! `synchronize()`: the time is the device's, not the time to record commands.

use apex_benches::{random_values, wgpu_sizes, ApexPair, DensePair, MonarchBench, Sizes, Target};
use apex_core::{ops, Backend, MatView};
use apex_cpu::CpuBackend;
use apex_wgpu::WgpuBackend;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

/// The groups of `apex_benches::workloads(target, sizes)` for one backend;
/// `sync` waits for the device after each iteration.
fn backend_groups<B: Backend>(
    c: &mut Criterion,
    backend: &B,
    target: Target,
    sizes: Sizes,
    sync: impl Fn(),
) {
    let prefix = target.group_prefix();
    let fused_rows = target == Target::Wgpu;
    let n = sizes.matmul;
    let a = ops::upload_f64(backend, &random_values(n * n, 1.0, 1), &[n, n]).unwrap();
    let b = ops::upload_f64(backend, &random_values(n * n, 1.0, 2), &[n, n]).unwrap();
    let mut out = backend.zeros(&[n, n]).unwrap();
    let v = MatView::full(n, n);
    let one = ops::one::<B>();
    let zero = ops::zero::<B>();
    let mut group = c.benchmark_group(format!("{prefix}matmul"));
    group.bench_function("apex-gemm", |bench| {
        bench.iter(|| {
            ops::gemm_into(backend, one, &a, v, &b, v, zero, &mut out, v).unwrap();
            sync()
        })
    });
    if !fused_rows {
        let f32_matrix = |t: &B::Tensor| {
            let values = ops::download_f64(backend, t).unwrap();
            ndarray::Array2::from_shape_vec((n, n), values.iter().map(|&v| v as f32).collect())
                .unwrap()
        };
        let (a_nd, b_nd) = (f32_matrix(&a), f32_matrix(&b));
        group.bench_function("ndarray-dot", |bench| {
            bench.iter(|| black_box(a_nd.dot(&b_nd)))
        });
    }
    group.finish();

    let m = MonarchBench::new(backend, sizes).unwrap();
    let mut group = c.benchmark_group(format!("{prefix}monarch"));
    group.bench_function("forward", |bench| {
        bench.iter(|| {
            black_box(m.monarch.forward(backend, &m.x).unwrap());
            sync()
        })
    });
    if fused_rows {
        group.bench_function("forward-composite", |bench| {
            bench.iter(|| {
                black_box(m.forward_composite(backend).unwrap());
                sync()
            })
        });
    }
    group.bench_function("dense-kxk-forward", |bench| {
        bench.iter(|| {
            black_box(m.dense_forward(backend).unwrap());
            sync()
        })
    });
    group.bench_function("forward-backward", |bench| {
        bench.iter(|| {
            black_box(m.forward_backward(backend, true).unwrap());
            sync()
        })
    });
    if fused_rows {
        group.bench_function("forward-backward-composite", |bench| {
            bench.iter(|| {
                black_box(m.forward_backward(backend, false).unwrap());
                sync()
            })
        });
    }
    group.finish();

    let dense = DensePair::new(backend, sizes).unwrap();
    let apex = ApexPair::new(backend, sizes).unwrap();
    let mut group = c.benchmark_group(format!("{prefix}ffn-pair"));
    group.bench_function("dense", |bench| {
        bench.iter(|| {
            black_box(dense.step(backend).unwrap());
            sync()
        })
    });
    group.bench_function("apex", |bench| {
        bench.iter(|| {
            black_box(apex.step(backend).unwrap());
            sync()
        })
    });
    group.finish();
}

fn cpu(c: &mut Criterion) {
    backend_groups(
        c,
        &CpuBackend::<f32>::new(),
        Target::Cpu,
        Sizes::FULL,
        || (),
    );
}

fn wgpu(c: &mut Criterion) {
    match WgpuBackend::new() {
        Ok(gpu) => {
            let sizes = wgpu_sizes(&gpu.adapter());
            let sync = || gpu.synchronize().unwrap();
            backend_groups(c, &gpu, Target::Wgpu, sizes, sync);
        }
        Err(why) => eprintln!("SKIPPED backend wgpu: {why}"),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = cpu, wgpu
}
criterion_main!(benches);
