//! Device work per FFN-pair training step on the CUDA backend, counted on the
//! host emulator (the counts are the same on a GPU, where the GPU path may
//! swap some kernel GEMMs for cuBLAS calls one for one). At T = 512 a step's
//! GPU time is set by these counts rather than by its FLOPs, so they are
//! printed (`cargo test -p apex-benches --test ffn_device_work -- --nocapture`)
//! and APEX's launches per step are held to the bound derived below.

use apex_benches::{ApexPair, DensePair, Sizes};
use apex_cuda::{Counters, CudaBackend};

/// A reduced FFN pair: small enough for the emulator, with the same
/// structure (k = 48 gives b = 6 Monarch blocks of p = 8, as k = 288 gives
/// 16 × 18 at full size).
const SIZES: Sizes = Sizes {
    matmul: 64,
    tokens: 128,
    d: 96,
    n: 256,
    k: 48,
    t_tuned: 120,
};

fn emulator() -> Option<CudaBackend> {
    match CudaBackend::emulated() {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            eprintln!("skipped: no CUDA emulator ({e})");
            None
        }
    }
}

/// The counts of one `step` (after a warm-up step).
fn per_step(gpu: &CudaBackend, step: impl Fn()) -> Counters {
    step();
    gpu.reset_counters();
    step();
    gpu.counters()
}

fn print(name: &str, c: &Counters) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "{name:>6}: {} device calls = {} kernel launches + {} cuBLAS + {} memsets + {} copies; \
         {} allocations ({:.2} MiB, {:.2} MiB zero-filled); {} uploads ({} B), {} downloads",
        c.device_calls(),
        c.kernel_launches(),
        c.cublas_calls,
        c.zero_fills,
        c.device_copies,
        c.allocations,
        mib(c.allocated_bytes),
        mib(c.zero_filled_bytes),
        c.uploads,
        c.upload_bytes,
        c.downloads,
    );
    for (kernel, count) in &c.launches {
        println!("        {kernel:<24} {count}");
    }
}

#[test]
fn ffn_pair_device_work_per_step() {
    let Some(gpu) = emulator() else { return };
    let dense = DensePair::new(&gpu, SIZES).unwrap();
    let apex = ApexPair::new(&gpu, SIZES).unwrap();
    let dense_counts = per_step(&gpu, || {
        dense.step(&gpu).unwrap();
    });
    let apex_counts = per_step(&gpu, || {
        apex.step(&gpu).unwrap();
    });
    println!(
        "FFN pair T={} d={} N={} k={} t={} on {}",
        SIZES.tokens,
        SIZES.d,
        SIZES.n,
        SIZES.k,
        SIZES.t_tuned,
        gpu.info().name
    );
    print("dense", &dense_counts);
    print("apex", &apex_counts);
    // Nothing in a step talks to the host.
    for c in [&dense_counts, &apex_counts] {
        assert_eq!(
            (c.uploads, c.downloads, c.device_copies),
            (0, 0, 0),
            "{c:?}"
        );
    }
    // Device calls per step, one per GEMM (kernel or cuBLAS; a split-K GEMM's
    // reduction pass is counted apart) and per elementwise/reduction/Monarch
    // launch, no bias:
    //   up forward (MixColumn)   GEMM tuned rows, GEMM frozen rows, copy Z = [Z_D|Z_A],
    //                            scale the unmixed half, Monarch + scaled half (fused)   5
    //   SiLU                                                                               1
    //   down forward (MixRow)    copy X[:, k:t], scale X_D, Monarch X·M onto A,
    //                            GEMM tuned columns, GEMM frozen columns (β = 1)          5
    //   down backward            GEMM ∂S, GEMM P = G·U, column_dot ∂v, copy P[:, k:t],
    //                            Monarch + P_D ⊙ v (fused), 2 factor-gradient GEMMs,
    //                            GEMM ∂X frozen columns                                   8
    //   SiLU gradient, product                                                             2
    //   up backward              column_dot ∂v, column_dot ∂c, copy G[:, 2k:t],
    //                            scale G_D, Monarch + G_A ⊙ c (fused), 2 factor-
    //                            gradient GEMMs, GEMM ∂S, 2 GEMMs ∂X                     10
    //                                                                          total     31
    // and three memsets: the shared mixer gradients (∂W1, ∂W2, ∂v) that both
    // modules accumulate into. Every other output is written before it is read.
    let calls =
        |c: &Counters| c.kernel_launches() + c.cublas_calls - c.launches_of("gemm_splitk_reduce");
    assert!(calls(&apex_counts) <= 31, "{apex_counts:?}");
    assert!(apex_counts.zero_fills <= 3, "{apex_counts:?}");
    // Dense: 6 GEMMs, SiLU, SiLU gradient, product; no memsets.
    assert!(calls(&dense_counts) <= 9, "{dense_counts:?}");
    assert_eq!(dense_counts.zero_fills, 0, "{dense_counts:?}");
}
