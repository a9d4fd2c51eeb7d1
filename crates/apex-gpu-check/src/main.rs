//! `apex-gpu-check`: everything apex-cuda needs checked and measured on a
//! real GPU, in one binary that runs where there is no cargo, and one report.
//!
//! 1. Device: name, compute capability, libraries actually loaded.
//! 2. Conformance, CUDA against the CPU reference: the committed golden
//!    vectors; random operator cases at larger sizes against cpu-f64; every
//!    primitive on random strided views (large tiles, split-K); the fused
//!    Monarch against the composite; typed errors for bad views. Each under
//!    the default path (cuBLAS + fused Monarch) and the handwritten kernels.
//! 3. Training against the CPU: tiny APEX and full runs follow the cpu-f32
//!    loss curves and end with the same fused weights; tokens/s of training
//!    steps on both backends.
//! 4. Benchmarks: dense GEMM 4096³ (own kernel, cuBLAS fp32, cuBLAS TF32),
//!    Monarch forward+backward (fused, composite, separate bmm + permutation
//!    passes), the FFN layer pair APEX vs dense (GPU and CPU).
//!
//! Exit status 1 when any check fails. `cargo xtask gpu-check` builds and
//! runs it (or stages it for a machine without cargo).

mod baseline;

use apex_benches::{random_tensor, ApexPair, DensePair, Sizes as BenchSizes};
use apex_conformance::primitives::{self, Scale};
use apex_conformance::runner::{format_report, run_directory};
use apex_conformance::trajectory::{compare_trajectories, run_trajectory, TrajectorySpec};
use apex_conformance::{compare, random_case, run_case, Op, Sizes};
use apex_core::{find_divisor, ops, Backend, MatView, Monarch, MonarchInit};
use apex_cpu::CpuBackend;
use apex_cuda::{CudaBackend, CudaOptions, GemmPath};
use apex_train::{EmbeddedSizes, Method};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "apex-gpu-check",
    about = "Check and measure apex-cuda on this machine's GPU"
)]
struct Args {
    /// Where to write the Markdown report.
    #[arg(long, default_value = "gpu-report.md")]
    report: PathBuf,
    /// The committed golden vectors (tests/vectors of the repository).
    #[arg(long, default_value = "tests/vectors")]
    vectors: PathBuf,
    /// Shorter timings and fewer random cases (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Dry run on the host emulator with small sizes (checks this program
    /// and the kernels without a GPU; its timings mean nothing).
    #[arg(long)]
    emulated: bool,
}

/// Sizes and budgets of one run.
struct Profile {
    /// Primitive and Monarch-override shapes.
    scale: Scale,
    primitive_cases: usize,
    operator_cases: usize,
    /// Upper bounds of the random operator cases: rows, k, other dimension.
    operator_sizes: (usize, usize, usize),
    gemm_n: usize,
    /// (label, tokens, k) of the Monarch benchmarks.
    monarch: Vec<(&'static str, usize, usize)>,
    budget: Duration,
    /// The FFN pair has fixed (SmolLM2) sizes: far too slow on the emulator.
    ffn: bool,
    /// Training runs that must follow the CPU's trajectory.
    trajectories: Vec<TrajectorySpec>,
    /// (label, run) whose training tokens/s are measured on both backends.
    throughput: Vec<(&'static str, TrajectorySpec)>,
}

impl Profile {
    fn new(args: &Args) -> Self {
        if args.emulated {
            return Profile {
                scale: Scale::Small,
                primitive_cases: 3,
                operator_cases: 5,
                operator_sizes: (24, 12, 24),
                gemm_n: 256,
                monarch: vec![("small", 40, 48), ("odd block", 21, 35)],
                budget: Duration::from_millis(1),
                ffn: false,
                trajectories: vec![TrajectorySpec::tiny(Method::Apex).with_steps(3)],
                throughput: Vec::new(),
            };
        }
        Profile {
            scale: Scale::Large,
            primitive_cases: if args.quick { 4 } else { 12 },
            operator_cases: if args.quick { 10 } else { 40 },
            operator_sizes: (512, 300, 512),
            gemm_n: 4096,
            monarch: vec![
                ("bench (SmolLM2 FFN)", 512, 288),
                ("LLaMA-7B FFN", 4096, 2064),
                ("LLaMA-7B attention", 4096, 768),
            ],
            budget: Duration::from_millis(if args.quick { 150 } else { 600 }),
            ffn: true,
            trajectories: vec![
                TrajectorySpec::tiny(Method::Apex).with_steps(10),
                TrajectorySpec::tiny(Method::Full).with_steps(10),
            ],
            throughput: throughput_runs(if args.quick { 4 } else { 8 }),
        }
    }
}

/// The README's embedded default model (batch 8 × 128 tokens) and a
/// SmolLM2-135M-wide 4-layer model (batch 8 × 256), APEX and full fine-tuning.
fn throughput_runs(steps: usize) -> Vec<(&'static str, TrajectorySpec)> {
    let embedded = EmbeddedSizes {
        corpus_bytes: 0,
        ..EmbeddedSizes::default()
    };
    let smollm_wide = EmbeddedSizes {
        hidden_size: 576,
        intermediate_size: 1536,
        heads: 9,
        kv_heads: 3,
        layers: 4,
        corpus_bytes: 0,
    };
    let mut runs = Vec::new();
    for (label, model, seq_len) in [
        ("embedded default (d=128, 4 layers)", embedded, 128),
        ("SmolLM2 width (d=576, 4 layers)", smollm_wide, 256),
    ] {
        for method in [Method::Apex, Method::Full] {
            runs.push((
                label,
                TrajectorySpec {
                    model: model.clone(),
                    steps,
                    batch_size: 8,
                    seq_len,
                    method,
                },
            ));
        }
    }
    runs
}

/// The report under construction, and whether anything failed.
struct Report {
    text: String,
    failed: bool,
    started: Instant,
}

impl Report {
    fn line(&mut self, line: impl AsRef<str>) {
        println!("{}", line.as_ref());
        self.text.push_str(line.as_ref());
        self.text.push('\n');
    }

    /// One row of the conformance table.
    fn check(&mut self, name: &str, path: &str, result: Result<String, String>) {
        let (verdict, detail) = match result {
            Ok(detail) => ("pass", detail),
            Err(detail) => {
                self.failed = true;
                ("**FAIL**", detail.replace('\n', " "))
            }
        };
        let seconds = self.started.elapsed().as_secs_f64();
        self.line(format!(
            "| {name} | {path} | {verdict} | {detail} | {seconds:.0} |"
        ));
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut report = Report {
        text: String::new(),
        failed: false,
        started: Instant::now(),
    };
    report.line("# apex-cuda GPU check");
    report.line("");
    let profile = Profile::new(&args);
    let gpu = match if args.emulated {
        CudaBackend::emulated()
    } else {
        CudaBackend::new()
    } {
        Ok(gpu) => gpu,
        Err(e) => {
            report.line(format!("**No usable GPU**: {e}"));
            report.line(format!(
                "LD_LIBRARY_PATH={}",
                std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
            ));
            write_report(&args, &report);
            return ExitCode::FAILURE;
        }
    };
    device_section(&mut report, &gpu);
    conformance_section(&mut report, &gpu, &args, &profile);
    let training_speedups = training_section(&mut report, &gpu, &profile);
    benchmark_section(&mut report, &gpu, &profile, training_speedups.as_deref());
    report.line("");
    report.line(format!(
        "Total {:.0} s. Overall: {}",
        report.started.elapsed().as_secs_f64(),
        if report.failed { "**FAIL**" } else { "PASS" }
    ));
    write_report(&args, &report);
    if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn write_report(args: &Args, report: &Report) {
    match std::fs::write(&args.report, &report.text) {
        Ok(()) => eprintln!("report written to {}", args.report.display()),
        Err(e) => eprintln!("cannot write {}: {e}", args.report.display()),
    }
}

fn device_section(report: &mut Report, gpu: &CudaBackend) {
    let info = gpu.info();
    report.line("## Device");
    report.line("");
    report.line(format!(
        "{} — compute capability {}.{}, {} SMs, {} KB shared memory per CTA, {}, cuBLAS {}",
        info.name,
        info.compute_capability.0,
        info.compute_capability.1,
        info.multiprocessors,
        info.max_shared_per_block / 1024,
        info.versions,
        if info.cublas { "loaded" } else { "not found" }
    ));
    report.line("");
    report.line("Libraries loaded:");
    for library in &info.libraries {
        report.line(format!("* `{library}`"));
    }
    report.line(format!(
        "\nLD_LIBRARY_PATH=`{}`",
        std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
    ));
    report.line("");
}

/// The backend variants every check runs under.
fn variants(gpu: &CudaBackend) -> [(&'static str, CudaBackend); 2] {
    [
        ("cuBLAS + fused", gpu.clone()),
        (
            "kernels + fused",
            gpu.with_options(CudaOptions {
                gemm: GemmPath::Kernels,
                ..CudaOptions::default()
            }),
        ),
    ]
}

fn conformance_section(report: &mut Report, gpu: &CudaBackend, args: &Args, profile: &Profile) {
    report.line("## Conformance (CUDA against the CPU reference)");
    report.line("");
    report.line("| check | path | result | detail | at (s) |");
    report.line("|---|---|---|---|---|");
    let cases = profile.primitive_cases;
    for (path, backend) in variants(gpu) {
        report.check("golden vectors", path, vectors(&backend, args));
        report.check(
            "random operator cases vs cpu-f64",
            path,
            random_operator_cases(&backend, profile.operator_cases, profile.operator_sizes),
        );
        report.check(
            "primitives on strided views",
            path,
            primitives::check_primitives(&backend, profile.scale, cases, 5)
                .map(|()| format!("{cases} random shapes + path-reaching shapes")),
        );
        report.check(
            "Monarch override vs reference",
            path,
            primitives::check_monarch_override(&backend, profile.scale, 6)
                .map(|()| "forward and transposed, β = 0 and β ≠ 0".into()),
        );
    }
    let composite = gpu.with_options(CudaOptions {
        fused_monarch: false,
        gemm: GemmPath::Kernels,
        ..CudaOptions::default()
    });
    report.check(
        "Monarch composite vs reference",
        "kernels, composite",
        primitives::check_monarch_override(&composite, profile.scale, 7).map(|()| String::new()),
    );
    report.check(
        "bad views are typed errors",
        "default",
        primitives::check_errors(gpu).map(|()| String::new()),
    );
    report.line("");
}

fn vectors(backend: &CudaBackend, args: &Args) -> Result<String, String> {
    let reports = run_directory(backend, &args.vectors, 1e-4).map_err(|e| e.to_string())?;
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(format_report)
        .collect();
    if reports.is_empty() {
        return Err(format!("no vectors in {}", args.vectors.display()));
    }
    if failed.is_empty() {
        Ok(format!("{} files", reports.len()))
    } else {
        Err(format!(
            "{} of {} files: {}",
            failed.len(),
            reports.len(),
            failed.join(" ")
        ))
    }
}

/// Random cases of every operator at sizes beyond the unit tests, CUDA f32
/// against CPU f64, at the spec's f32 tolerance.
fn random_operator_cases(
    backend: &CudaBackend,
    count: usize,
    (max_rows, max_k, max_other): (usize, usize, usize),
) -> Result<String, String> {
    let cpu = CpuBackend::<f64>::new();
    let mut rng = StdRng::seed_from_u64(11);
    let ops = [
        Op::Monarch,
        Op::MixColumn,
        Op::MixRow,
        Op::S2Column,
        Op::S2Row,
    ];
    for i in 0..count {
        let op = ops[i % ops.len()];
        let k = rng.random_range(4..max_k);
        let t = 2 * k + rng.random_range(0..max_k / 4);
        let (outer, other) = (
            t + rng.random_range(0..max_k / 2),
            rng.random_range(8..max_other),
        );
        let sizes = Sizes {
            rows: rng.random_range(8..max_rows),
            k,
            t,
            n_in: if matches!(op, Op::MixRow | Op::S2Row) {
                outer
            } else {
                other
            },
            n_out: if matches!(op, Op::MixRow | Op::S2Row) {
                other
            } else {
                outer
            },
        };
        let case = random_case(
            op,
            rng.random_bool(0.7),
            rng.random_bool(0.3),
            sizes,
            i as u64,
        );
        let want = run_case(&cpu, &case).map_err(|e| format!("reference {op:?}: {e}"))?;
        let got = run_case(backend, &case).map_err(|e| format!("{op:?} {sizes:?}: {e}"))?;
        for (name, w) in &want {
            let t = compare(name, &got[name], w, 1e-4);
            if !t.passed() {
                return Err(format!(
                    "{op:?} mix={} {sizes:?} {name}: {} elements off, max abs {:.3e}",
                    case.mix, t.failures, t.max_abs_error
                ));
            }
        }
    }
    Ok(format!("{count} cases, all outputs within rtol 1e-4"))
}

/// The trainer on CUDA against the CPU: a tiny APEX run and a tiny full
/// fine-tuning run must follow the cpu-f32 loss curves step by step and end
/// with the same fused weights (the same units selected); then tokens/s of
/// training steps on both backends at two model sizes. Returns the cuda/cpu
/// tokens/s ratios in one line (None when no throughput run was made).
fn training_section(report: &mut Report, gpu: &CudaBackend, profile: &Profile) -> Option<String> {
    report.line("## Training trajectory (CUDA vs CPU)");
    report.line("");
    report.line("| check | path | result | detail | at (s) |");
    report.line("|---|---|---|---|---|");
    for spec in &profile.trajectories {
        let result = run_trajectory(&CpuBackend::<f32>::new(), spec).and_then(|want| {
            let got = run_trajectory(gpu, spec)?;
            compare_trajectories(&got, &want, 1e-3)?;
            Ok(format!(
                "{} steps, losses {:.4} → {:.4}, worst step rel. diff {:.1e}; fused weights agree",
                want.losses.len(),
                want.losses[0],
                want.losses[want.losses.len() - 1],
                got.losses
                    .iter()
                    .zip(&want.losses)
                    .map(|(g, w)| ((g - w) / w).abs())
                    .fold(0.0, f64::max)
            ))
        });
        report.check(
            &format!("{} run follows cpu-f32", spec.method.name()),
            "default",
            result,
        );
    }
    report.line("");
    if profile.throughput.is_empty() {
        return None;
    }
    let mut speedups = Vec::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    report.line(format!(
        "Training tokens/s (median step after the first, optimizer included; CPU: {threads} threads):"
    ));
    report.line("");
    report.line("| model | method | tokens/step | cpu-f32 | cuda-f32 | cuda / cpu |");
    report.line("|---|---|---|---|---|---|");
    for (label, spec) in &profile.throughput {
        let cpu = run_trajectory(&CpuBackend::<f32>::new(), spec);
        let cuda = run_trajectory(gpu, spec);
        match (cpu, cuda) {
            (Ok(cpu), Ok(cuda)) => {
                let ratio = cuda.tokens_per_second / cpu.tokens_per_second;
                speedups.push(format!(
                    "{} {}: {ratio:.1}×",
                    label.split(" (").next().unwrap_or(label),
                    spec.method.name()
                ));
                report.line(format!(
                    "| {label} | {} | {} | {:.0} | {:.0} | {ratio:.1}× |",
                    spec.method.name(),
                    spec.batch_size * spec.seq_len,
                    cpu.tokens_per_second,
                    cuda.tokens_per_second,
                ))
            }
            (cpu, cuda) => {
                report.failed = true;
                report.line(format!(
                    "| {label} | {} | **FAIL** | {} | {} | |",
                    spec.method.name(),
                    cpu.err().unwrap_or_default(),
                    cuda.err().unwrap_or_default()
                ));
            }
        }
    }
    report.line("");
    Some(format!("cuda/cpu tokens/s: {}", speedups.join("; ")))
}

/// Seconds per call of `step`: warm-up, then as many calls as fit in
/// `budget`, the device synchronised around the timed loop.
fn time_per_call(
    sync: &dyn Fn() -> apex_core::Result<()>,
    step: &mut dyn FnMut() -> apex_core::Result<()>,
    budget: Duration,
) -> apex_core::Result<f64> {
    for _ in 0..2 {
        step()?;
    }
    sync()?;
    let start = Instant::now();
    step()?;
    sync()?;
    let once = start.elapsed().as_secs_f64().max(1e-6);
    let calls = ((budget.as_secs_f64() / once) as usize).clamp(3, 500);
    let start = Instant::now();
    for _ in 0..calls {
        step()?;
    }
    sync()?;
    Ok(start.elapsed().as_secs_f64() / calls as f64)
}

fn format_time(seconds: f64) -> String {
    if seconds >= 1e-3 {
        format!("{:.3} ms", seconds * 1e3)
    } else {
        format!("{:.1} µs", seconds * 1e6)
    }
}

/// Targets of the issue: (name, measured, goal, met).
type Target = (String, String, String, bool);

/// `training_speedups`: the training section's cuda/cpu summary, for the
/// targets table.
fn benchmark_section(
    report: &mut Report,
    gpu: &CudaBackend,
    profile: &Profile,
    training_speedups: Option<&str>,
) {
    let budget = profile.budget;
    let mut targets: Vec<Target> = Vec::new();
    report.line("## Benchmarks");
    report.line("");
    report.line(format!(
        "Wall-clock per call, device synchronised around each timed loop after warm-up \
         (about {} ms of calls per row). Device: {}.",
        budget.as_millis(),
        gpu.info().name
    ));
    report.line("");
    if let Err(e) = gemm_benchmark(report, gpu, profile.gemm_n, budget, &mut targets) {
        report.failed = true;
        report.line(format!("GEMM benchmark failed: {e}"));
    }
    if let Err(e) = monarch_benchmark(report, gpu, &profile.monarch, budget, &mut targets) {
        report.failed = true;
        report.line(format!("Monarch benchmark failed: {e}"));
    }
    if !profile.ffn {
        report.line("FFN layer pair: skipped (fixed SmolLM2 sizes, too slow on the emulator).");
        report.line("");
    } else if let Err(e) = ffn_benchmark(report, gpu, budget, &mut targets) {
        report.failed = true;
        report.line(format!("FFN benchmark failed: {e}"));
    }
    targets.push((
        "training tokens/s next to the CPU".into(),
        training_speedups
            .unwrap_or("not measured (emulator)")
            .into(),
        "reported".into(),
        training_speedups.is_some(),
    ));
    report.line("### Targets (reported, not enforced)");
    report.line("");
    report.line("| target | measured | goal | met |");
    report.line("|---|---|---|---|");
    for (name, measured, goal, met) in targets {
        report.line(format!(
            "| {name} | {measured} | {goal} | {} |",
            if met { "yes" } else { "no" }
        ));
    }
}

fn gemm_benchmark(
    report: &mut Report,
    gpu: &CudaBackend,
    n: usize,
    budget: Duration,
    targets: &mut Vec<Target>,
) -> apex_core::Result<()> {
    let a = random_tensor(gpu, &[n, n], 1.0, 1)?;
    let b = random_tensor(gpu, &[n, n], 1.0, 2)?;
    let v = MatView::full(n, n);
    let flops = 2.0 * (n * n * n) as f64;
    let sync = || gpu.synchronize();
    let rows: [(&str, CudaOptions); 3] = [
        (
            "handwritten kernel (fp32 FMA)",
            CudaOptions {
                gemm: GemmPath::Kernels,
                ..CudaOptions::default()
            },
        ),
        ("cuBLAS fp32", CudaOptions::default()),
        (
            "cuBLAS TF32 tensor cores",
            CudaOptions {
                tf32: true,
                ..CudaOptions::default()
            },
        ),
    ];
    report.line(format!("### Dense GEMM {n}³ f32 (C = A·B, row-major)"));
    report.line("");
    report.line(
        "| implementation | time | TFLOP/s | vs cuBLAS fp32 | max rel. diff vs cuBLAS fp32 |",
    );
    report.line("|---|---|---|---|---|");
    let mut results = Vec::new();
    for (name, options) in rows {
        let backend = gpu.with_options(options);
        let mut c = backend.zeros(&[n, n])?;
        let seconds = time_per_call(
            &sync,
            &mut || ops::gemm_into(&backend, 1.0, &a, v, &b, v, 0.0, &mut c, v),
            budget,
        )?;
        results.push((name, seconds, backend.download(&c)?));
    }
    let reference = &results[1].2;
    let scale = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    for (name, seconds, c) in &results {
        let diff = c
            .iter()
            .zip(reference)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale;
        report.line(format!(
            "| {name} | {} | {:.1} | {:.2} | {diff:.1e} |",
            format_time(*seconds),
            flops / seconds / 1e12,
            results[1].1 / seconds
        ));
    }
    report.line("");
    let ratio = results[1].1 / results[0].1;
    targets.push((
        format!("dense fp32 GEMM {n}³, own kernel / cuBLAS fp32"),
        format!("{:.0}%", 100.0 * ratio),
        "≥ 70%".into(),
        ratio >= 0.7,
    ));
    Ok(())
}

fn monarch_benchmark(
    report: &mut Report,
    gpu: &CudaBackend,
    shapes: &[(&'static str, usize, usize)],
    budget: Duration,
    targets: &mut Vec<Target>,
) -> apex_core::Result<()> {
    let composite = gpu.with_options(CudaOptions {
        fused_monarch: false,
        ..CudaOptions::default()
    });
    let sync = || gpu.synchronize();
    report.line("### Monarch forward + backward (out, ∂x, ∂W1, ∂W2)");
    report.line("");
    report.line(
        "fused: the fused kernels for both products + GEMMs for ∂W; composite: two strided \
         batched GEMMs per product (permutations in the strides); separate: batched GEMMs on \
         contiguous blocks + explicit permutation passes (bmm + permute().contiguous()).",
    );
    report.line("");
    report
        .line("| shape | fused | composite | separate passes | separate / fused | max rel. diff |");
    report.line("|---|---|---|---|---|---|");
    for &(label, tokens, k) in shapes {
        let b = find_divisor(k, false);
        let monarch = Monarch::new(gpu, k, MonarchInit::Noise, false, 3)?;
        let x = random_tensor(gpu, &[tokens, k], 1.0, 4)?;
        let g = random_tensor(gpu, &[tokens, k], 1.0, 5)?;
        // Same numbers first: the baseline must compute what the fused path does.
        let (grad_x, grads) = monarch.backward(gpu, &x, &g)?;
        let [_, base_x, base_w1, base_w2] = baseline::forward_backward(gpu, &monarch, &x, &g)?;
        let mut diff = 0f32;
        for (got, want) in [
            (&grad_x, &base_x),
            (&grads.blkdiag1, &base_w1),
            (&grads.blkdiag2, &base_w2),
        ] {
            let (got, want) = (gpu.download(got)?, gpu.download(want)?);
            let scale = want.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
            let d = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
                / scale;
            diff = diff.max(d);
        }
        if diff > 1e-4 {
            report.failed = true;
        }
        let fused = time_per_call(
            &sync,
            &mut || monarch.backward(gpu, &x, &g).map(drop),
            budget,
        )?;
        let composite_time = time_per_call(
            &sync,
            &mut || monarch.backward(&composite, &x, &g).map(drop),
            budget,
        )?;
        let separate = time_per_call(
            &sync,
            &mut || baseline::forward_backward(gpu, &monarch, &x, &g).map(drop),
            budget,
        )?;
        report.line(format!(
            "| {label}: T={tokens} k={k} (b={b}, p={}) | {} | {} | {} | {:.2}× | {diff:.1e} |",
            k / b,
            format_time(fused),
            format_time(composite_time),
            format_time(separate),
            separate / fused
        ));
        targets.push((
            format!("Monarch fwd+bwd {label}, separate passes / fused"),
            format!("{:.2}×", separate / fused),
            "≥ 1.4×".into(),
            separate / fused >= 1.4,
        ));
    }
    report.line("");
    monarch_rows_table(report, gpu, shapes, budget)
}

/// Fused forward+backward of the largest shape with each row count per CTA
/// (the kernel's one tuning knob: weight reuse against shared memory).
fn monarch_rows_table(
    report: &mut Report,
    gpu: &CudaBackend,
    shapes: &[(&'static str, usize, usize)],
    budget: Duration,
) -> apex_core::Result<()> {
    let Some(&(label, tokens, k)) = shapes.iter().max_by_key(|s| s.2) else {
        return Ok(());
    };
    let monarch = Monarch::new(gpu, k, MonarchInit::Noise, false, 3)?;
    let x = random_tensor(gpu, &[tokens, k], 1.0, 4)?;
    let sync = || gpu.synchronize();
    report.line(format!(
        "Fused kernel rows per CTA, {label} (T={tokens}, k={k}):"
    ));
    report.line("");
    report.line("| rows per CTA | shared memory per CTA | forward + backward |");
    report.line("|---|---|---|");
    for rows in apex_cuda::kernels::MONARCH_ROWS {
        let backend = gpu.with_options(CudaOptions {
            monarch_rows: Some(rows),
            ..gpu.options()
        });
        let time = time_per_call(
            &sync,
            &mut || monarch.backward(&backend, &x, &x).map(drop),
            budget,
        )?;
        report.line(format!(
            "| {rows}{} | {} KB | {} |",
            if rows * k * 4 > gpu.info().max_shared_per_block {
                " (does not fit: composite)"
            } else {
                ""
            },
            rows * k * 4 / 1024,
            format_time(time)
        ));
    }
    report.line("");
    Ok(())
}

fn ffn_benchmark(
    report: &mut Report,
    gpu: &CudaBackend,
    budget: Duration,
    targets: &mut Vec<Target>,
) -> apex_core::Result<()> {
    report.line("### FFN layer pair, forward + backward (SmolLM2-135M FFN, T = 512)");
    report.line("");
    report.line("| backend | dense | APEX | APEX / dense |");
    report.line("|---|---|---|---|");
    let gpu_sync = || gpu.synchronize();
    let dense = DensePair::new(gpu, BenchSizes::FULL)?;
    let apex = ApexPair::new(gpu, BenchSizes::FULL)?;
    let d = time_per_call(&gpu_sync, &mut || dense.step(gpu).map(drop), budget)?;
    let a = time_per_call(&gpu_sync, &mut || apex.step(gpu).map(drop), budget)?;
    report.line(format!(
        "| {} | {} | {} | {:.2} |",
        gpu.name(),
        format_time(d),
        format_time(a),
        a / d
    ));
    targets.push((
        "FFN layer pair APEX / dense (GPU)".into(),
        format!("{:.2}", a / d),
        "≤ 0.9".into(),
        a / d <= 0.9,
    ));
    let cpu = CpuBackend::<f32>::new();
    let cpu_sync = || Ok(());
    let dense = DensePair::new(&cpu, BenchSizes::FULL)?;
    let apex = ApexPair::new(&cpu, BenchSizes::FULL)?;
    let cd = time_per_call(&cpu_sync, &mut || dense.step(&cpu).map(drop), budget)?;
    let ca = time_per_call(&cpu_sync, &mut || apex.step(&cpu).map(drop), budget)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    report.line(format!(
        "| cpu-f32 ({threads} threads) | {} | {} | {:.2} |",
        format_time(cd),
        format_time(ca),
        ca / cd
    ));
    report.line("");
    report.line(format!(
        "GPU speed-up over the CPU on this pair: dense {:.1}×, APEX {:.1}×.",
        cd / d,
        ca / a
    ));
    report.line("");
    Ok(())
}
