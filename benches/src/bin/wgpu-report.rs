//! `wgpu-report`: a self-contained GPU measurement of the wgpu backend, for a
//! machine with a GPU but no Rust toolchain. Build it here, copy the binary,
//! run it there:
//!
//! ```text
//! cargo build --release -p apex-benches --bin wgpu-report
//! ./target/release/wgpu-report [--peak-tflops 67] [--quick] [--sizes 1024,2048] [--gemm-only]
//! ```
//!
//! `--sizes` replaces the square matmul sizes; `--gemm-only` stops after the
//! matmul table (for comparing GEMM kernels across builds). The matmul rows
//! give the fraction of the fp32 peak: `--peak-tflops`, else the datasheet
//! value for a few known adapters (see [`known_peak_tflops`]).
//!
//! It first checks the backend against the CPU reference on the device
//! (GEMM in every tile variant and layout, the fused Monarch kernels against
//! the composite), then times: square matmul GFLOP/s, the Monarch map fused vs
//! as separate block-matmul passes, and the FFN layer pair APEX vs dense.
//! Exit status 1 when a check fails or no adapter exists.

use apex_benches::{random_tensor, random_values, ApexPair, DensePair, MonarchBench, Sizes};
use apex_core::{ops, Backend, BatchView, MatView, Monarch, MonarchInit};
use apex_cpu::CpuBackend;
use apex_wgpu::{WgpuBackend, MONARCH_COMPOSITE_FROM_BLOCK};
use std::process::ExitCode;
use std::time::Instant;

/// Seconds per call of `step` (each followed by a device sync), after warm-up,
/// over enough calls to fill `budget` seconds.
fn time(gpu: &WgpuBackend, budget: f64, mut step: impl FnMut()) -> f64 {
    for _ in 0..2 {
        step();
    }
    gpu.synchronize().expect("sync");
    let start = Instant::now();
    step();
    gpu.synchronize().expect("sync");
    let once = start.elapsed().as_secs_f64();
    let reps = ((budget / once.max(1e-9)) as usize).clamp(3, 500);
    let start = Instant::now();
    for _ in 0..reps {
        step();
    }
    gpu.synchronize().expect("sync");
    start.elapsed().as_secs_f64() / reps as f64
}

/// Datasheet fp32 (non-tensor-core) peak in TFLOP/s, by adapter name:
/// NVIDIA's H200, H100 and A100 product briefs (SXM unless named).
fn known_peak_tflops(adapter: &str) -> Option<f64> {
    const PEAKS: [(&str, f64); 6] = [
        ("H200 NVL", 60.0),
        ("H200", 67.0),
        ("H100 PCIe", 51.0),
        ("H100 NVL", 60.0),
        ("H100", 67.0),
        ("A100", 19.5),
    ];
    PEAKS
        .iter()
        .find(|(name, _)| adapter.contains(name))
        .map(|&(_, peak)| peak)
}

fn max_rel_error(got: &[f64], want: &[f64]) -> f64 {
    let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / (scale + w.abs()))
        .fold(0.0, f64::max)
}

/// How `check_gemm` lays out A and B.
#[derive(Clone, Copy)]
enum Layout {
    /// Row-major: the vec4 loads along k (A) and n (B) where sizes allow.
    Plain,
    /// Stored transposed: the vec4 loads along m (A) and k (B).
    Transposed,
    /// Columns 1.. of a wider row-major matrix: misaligned, scalar loads.
    Sliced,
}

impl Layout {
    /// (view, elements) of `batch` stacked `rows × cols` matrices.
    fn place(self, rows: usize, cols: usize, batch: usize) -> (BatchView, usize) {
        match self {
            Layout::Plain => (
                BatchView::strided(MatView::full(rows, cols), rows * cols),
                batch * rows * cols,
            ),
            Layout::Transposed => (
                BatchView::strided(MatView::full(cols, rows).t(), rows * cols),
                batch * rows * cols,
            ),
            Layout::Sliced => (
                BatchView::strided(
                    MatView::full(rows, cols + 1).columns(1..cols + 1),
                    rows * (cols + 1),
                ),
                batch * rows * (cols + 1),
            ),
        }
    }
}

/// GEMMs in the three tile variants and every load path vs the CPU.
fn check_gemm(gpu: &WgpuBackend) -> Result<f64, String> {
    let cpu = CpuBackend::<f64>::new();
    let mut worst = 0.0f64;
    for (batch, m, n, k) in [(1, 1000, 1000, 300), (4, 300, 260, 77), (16, 512, 18, 18)] {
        for layout in [Layout::Plain, Layout::Transposed, Layout::Sliced] {
            let (a_view, a_len) = layout.place(m, k, batch);
            let (b_view, b_len) = layout.place(k, n, batch);
            let a_data = random_values(a_len, 1.0, 1);
            let b_data = random_values(b_len, 1.0, 2);
            let c_view = BatchView::strided(MatView::full(m, n), m * n);
            let run = |backend_out: &mut Vec<f64>, on_gpu: bool| -> apex_core::Result<()> {
                if on_gpu {
                    let a = ops::upload_f64(gpu, &a_data, &[a_data.len()])?;
                    let b = ops::upload_f64(gpu, &b_data, &[b_data.len()])?;
                    let mut c = gpu.zeros(&[batch * m * n])?;
                    gpu.gemm(batch, 1.0, &a, a_view, &b, b_view, 0.0, &mut c, c_view)?;
                    *backend_out = ops::download_f64(gpu, &c)?;
                } else {
                    let a = cpu.upload(&a_data, &[a_data.len()])?;
                    let b = cpu.upload(&b_data, &[b_data.len()])?;
                    let mut c = cpu.zeros(&[batch * m * n])?;
                    cpu.gemm(batch, 1.0, &a, a_view, &b, b_view, 0.0, &mut c, c_view)?;
                    *backend_out = cpu.download(&c)?;
                }
                Ok(())
            };
            let (mut got, mut want) = (Vec::new(), Vec::new());
            run(&mut got, true).map_err(|e| e.to_string())?;
            run(&mut want, false).map_err(|e| e.to_string())?;
            worst = worst.max(max_rel_error(&got, &want));
        }
    }
    Ok(worst)
}

/// Fused Monarch forward and transposed apply vs the two-GEMM composite
/// (every k here has blocks smaller than `MONARCH_COMPOSITE_FROM_BLOCK`).
fn check_monarch(gpu: &WgpuBackend) -> Result<f64, String> {
    let mut worst = 0.0f64;
    for (rows, k) in [(512, 288), (37, 961), (9, 35)] {
        let run = || -> apex_core::Result<f64> {
            let m = Monarch::new(gpu, k, MonarchInit::Noise, false, 3)?;
            let x = random_tensor(gpu, &[rows, k], 1.0, 4)?;
            let view = MatView::full(rows, k);
            let mut err = 0.0f64;
            for transposed in [false, true] {
                let mut fused = gpu.zeros(&[rows, k])?;
                let mut composite = gpu.zeros(&[rows, k])?;
                if transposed {
                    gpu.monarch_apply_transposed(&m, &x, view, 0.0, &mut fused, view)?;
                    m.apply_transposed_composite(gpu, &x, view, 0.0, &mut composite, view)?;
                } else {
                    gpu.monarch_forward(&m, &x, view, 0.0, &mut fused, view)?;
                    m.forward_composite(gpu, &x, view, 0.0, &mut composite, view)?;
                }
                err = err.max(max_rel_error(
                    &ops::download_f64(gpu, &fused)?,
                    &ops::download_f64(gpu, &composite)?,
                ));
            }
            Ok(err)
        };
        worst = worst.max(run().map_err(|e| e.to_string())?);
    }
    Ok(worst)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let peak_tflops: Option<f64> = args
        .iter()
        .position(|a| a == "--peak-tflops")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    let gemm_only = args.iter().any(|a| a == "--gemm-only");
    let sizes_arg: Option<Vec<usize>> = args
        .iter()
        .position(|a| a == "--sizes")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').filter_map(|s| s.parse().ok()).collect());
    let budget = if quick { 0.2 } else { 1.0 };
    let gpu = match WgpuBackend::new() {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("wgpu-report: {e}");
            return ExitCode::FAILURE;
        }
    };
    let adapter = gpu.adapter();
    println!("# apex-wgpu report");
    println!(
        "adapter: {} | api {} | driver {} | {}",
        adapter.name,
        adapter.api,
        adapter.driver,
        if adapter.software {
            "SOFTWARE RENDERING"
        } else {
            "hardware"
        }
    );

    println!("\n## correctness on this device (max |got−want| / (max|want| + |want|))");
    let mut ok = true;
    for (what, result) in [
        (
            "gemm vs cpu-f64 (3 tile variants; plain, transposed, misaligned views)",
            check_gemm(&gpu),
        ),
        (
            "fused monarch vs composite (k = 288, 961, 35)",
            check_monarch(&gpu),
        ),
    ] {
        match result {
            Ok(err) => {
                let pass = err <= 1e-4;
                ok &= pass;
                println!("{what}: {err:.2e} {}", if pass { "PASS" } else { "FAIL" });
            }
            Err(e) => {
                ok = false;
                println!("{what}: ERROR {e}");
            }
        }
    }

    println!("\n## matmul C = A·B, f32, row-major (apex gemm kernel)");
    let peak_tflops = match (peak_tflops, known_peak_tflops(&adapter.name)) {
        (Some(peak), _) => {
            println!("fp32 peak {peak} TFLOP/s (--peak-tflops)");
            Some(peak)
        }
        (None, Some(peak)) => {
            println!("fp32 peak {peak} TFLOP/s (datasheet value for this adapter name)");
            Some(peak)
        }
        (None, None) => None,
    };
    let sizes: &[usize] = if let Some(sizes) = &sizes_arg {
        sizes
    } else if adapter.software {
        &[128, 256]
    } else if quick {
        &[1024, 2048]
    } else {
        &[1024, 2048, 4096]
    };
    for &n in sizes {
        let a = random_tensor(&gpu, &[n, n], 1.0, 1).expect("upload");
        let b = random_tensor(&gpu, &[n, n], 1.0, 2).expect("upload");
        let mut c = gpu.zeros(&[n, n]).expect("alloc");
        let v = MatView::full(n, n);
        for (label, b_view) in [("A·B ", v), ("A·Bᵀ", v.t())] {
            let secs = time(&gpu, budget, || {
                ops::gemm_into(&gpu, 1.0, &a, v, &b, b_view, 0.0, &mut c, v).expect("gemm")
            });
            let gflops = 2.0 * (n as f64).powi(3) / secs / 1e9;
            let peak = peak_tflops
                .map(|p| format!(" = {:.1}% of {p} TFLOP/s", gflops / (p * 10.0)))
                .unwrap_or_default();
            println!(
                "{n}³ {label}: {:>9.3} ms  {gflops:>9.1} GFLOP/s{peak}",
                secs * 1e3
            );
        }
    }

    if gemm_only {
        return if ok {
            ExitCode::SUCCESS
        } else {
            println!("\nCORRECTNESS CHECK FAILED");
            ExitCode::FAILURE
        };
    }

    println!(
        "\n## Monarch: the backend's override (fused kernel for p < {MONARCH_COMPOSITE_FROM_BLOCK}) vs separate block-matmul passes (composite)"
    );
    let shapes = if adapter.software {
        vec![Sizes::SOFTWARE]
    } else {
        vec![
            Sizes::GPU,
            Sizes {
                tokens: 4096,
                k: 2064,
                ..Sizes::GPU
            },
        ]
    };
    for sizes in &shapes {
        let m = MonarchBench::new(&gpu, *sizes).expect("monarch");
        let fwd_fused = time(&gpu, budget, || {
            m.monarch.forward(&gpu, &m.x).expect("forward");
        });
        let fwd_comp = time(&gpu, budget, || {
            m.forward_composite(&gpu).expect("forward");
        });
        let fb_fused = time(&gpu, budget, || {
            m.forward_backward(&gpu, true).expect("fwd+bwd");
        });
        let fb_comp = time(&gpu, budget, || {
            m.forward_backward(&gpu, false).expect("fwd+bwd");
        });
        let dense = time(&gpu, budget, || {
            m.dense_forward(&gpu).expect("dense");
        });
        // The backend's Monarch override runs the composite itself for large blocks.
        let path = if m.monarch.block() >= MONARCH_COMPOSITE_FROM_BLOCK {
            "override=composite"
        } else {
            "override=fused"
        };
        println!(
            "T={} k={} (b={}, p={}, {path}): forward override {:.3} ms vs composite {:.3} ms ({:.2}x); \
             fwd+bwd override {:.3} ms vs composite {:.3} ms ({:.2}x); dense k×k forward {:.3} ms",
            sizes.tokens,
            sizes.k,
            m.monarch.nblocks(),
            m.monarch.block(),
            fwd_fused * 1e3,
            fwd_comp * 1e3,
            fwd_comp / fwd_fused,
            fb_fused * 1e3,
            fb_comp * 1e3,
            fb_comp / fb_fused,
            dense * 1e3
        );
    }

    println!(
        "\n## FFN layer pair fwd+bwd: APEX (MixColumn up, MixRow down, shared mixer) vs dense"
    );
    let ffn_shapes = if adapter.software {
        vec![Sizes::SOFTWARE]
    } else {
        vec![
            Sizes::GPU,
            Sizes {
                tokens: 4096,
                ..Sizes::GPU
            },
        ]
    };
    for sizes in &ffn_shapes {
        let dense = DensePair::new(&gpu, *sizes).expect("dense pair");
        let apex = ApexPair::new(&gpu, *sizes).expect("apex pair");
        let t_dense = time(&gpu, budget, || {
            dense.step(&gpu).expect("dense step");
        });
        let t_apex = time(&gpu, budget, || {
            apex.step(&gpu).expect("apex step");
        });
        println!(
            "d={} N={} k={} t={} T={}: dense {:.3} ms, apex {:.3} ms, apex/dense = {:.3}",
            sizes.d,
            sizes.n,
            sizes.k,
            sizes.t_tuned,
            sizes.tokens,
            t_dense * 1e3,
            t_apex * 1e3,
            t_apex / t_dense
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        println!("\nCORRECTNESS CHECK FAILED");
        ExitCode::FAILURE
    }
}
