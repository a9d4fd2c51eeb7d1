//! Criterion benchmarks of the CPU backend. Run through `cargo xtask bench`
//! for the table, or directly: `cargo bench -p apex-benches`.

use apex_benches::{random_values, ApexPair, DensePair, MonarchBench, MATMUL_N};
use apex_core::{ops, Backend, MatView};
use apex_cpu::CpuBackend;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

fn matmul(c: &mut Criterion) {
    let cpu = CpuBackend::<f32>::new();
    let n = MATMUL_N;
    let a = ops::upload_f64(&cpu, &random_values(n * n, 1.0, 1), &[n, n]).unwrap();
    let b = ops::upload_f64(&cpu, &random_values(n * n, 1.0, 2), &[n, n]).unwrap();
    let mut out = cpu.zeros(&[n, n]).unwrap();
    let v = MatView::full(n, n);
    let mut group = c.benchmark_group("matmul");
    group.bench_function("apex-gemm", |bench| {
        bench.iter(|| ops::gemm_into(&cpu, 1.0, &a, v, &b, v, 0.0, &mut out, v).unwrap())
    });
    let a_nd = ndarray::Array2::from_shape_vec((n, n), cpu.download(&a).unwrap()).unwrap();
    let b_nd = ndarray::Array2::from_shape_vec((n, n), cpu.download(&b).unwrap()).unwrap();
    group.bench_function("ndarray-dot", |bench| {
        bench.iter(|| black_box(a_nd.dot(&b_nd)))
    });
    group.finish();
}

fn monarch(c: &mut Criterion) {
    let cpu = CpuBackend::<f32>::new();
    let m = MonarchBench::new(&cpu).unwrap();
    let mut group = c.benchmark_group("monarch");
    group.bench_function("forward", |bench| {
        bench.iter(|| black_box(m.monarch.forward(&cpu, &m.x).unwrap()))
    });
    group.bench_function("dense-kxk-forward", |bench| {
        bench.iter(|| black_box(m.dense_forward(&cpu).unwrap()))
    });
    group.bench_function("forward-backward", |bench| {
        bench.iter(|| black_box(m.monarch.backward(&cpu, &m.x, &m.x).unwrap()))
    });
    group.finish();
}

fn ffn_pair(c: &mut Criterion) {
    let cpu = CpuBackend::<f32>::new();
    let dense = DensePair::new(&cpu).unwrap();
    let apex = ApexPair::new(&cpu).unwrap();
    let mut group = c.benchmark_group("ffn-pair");
    group.bench_function("dense", |bench| {
        bench.iter(|| black_box(dense.step(&cpu).unwrap()))
    });
    group.bench_function("apex", |bench| {
        bench.iter(|| black_box(apex.step(&cpu).unwrap()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = matmul, monarch, ffn_pair
}
criterion_main!(benches);
