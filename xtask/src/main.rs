//! `cargo xtask <task>`: project automation.
//!
//! * `conformance --vectors DIR [--backend cpu|cpu-f64|wgpu|cuda|cuda-emulated]`: runs every golden
//!   vector in DIR, prints per file and tensor the max abs/rel error and the
//!   verdict, exits 1 on any failure (a malformed file is a failure with its
//!   reason, never a panic).
//! * `bench [--quick]`: runs the criterion benchmarks and prints the table
//!   (op, shape, time, ratio to the dense baseline of the same run, GFLOP/s).
//! * `check-kernels`: compiles every CUDA kernel with NVRTC for sm_80/sm_90,
//!   assembles it with `ptxas -v`, fails on errors or spills (no GPU needed).
//! * `gpu-check [--stage DIR] [--quick] [--emulated]`: builds `apex-gpu-check`
//!   in release and runs it on this GPU (or the host emulator), or stages it
//!   for a GPU machine without cargo.

mod bench;
mod check_kernels;
mod conformance;
mod gpu_check;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "xtask", about = "apex-rs project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run golden conformance vectors on a backend.
    Conformance {
        /// Directory of `.safetensors` vectors (spec §0.1).
        #[arg(long, default_value = "tests/vectors")]
        vectors: PathBuf,
        /// Backend to run: cpu (f32), cpu-f64, wgpu (f32, default adapter), cuda
        /// (GPU 0) or cuda-emulated (the CUDA kernels on the host emulator).
        #[arg(long, default_value = "cpu")]
        backend: String,
    },
    /// Run the criterion benchmarks and print the comparison table.
    Bench {
        /// Shorter measurement (noisier), for a smoke run.
        #[arg(long)]
        quick: bool,
        /// Build the CPU backend with its OpenBLAS GEMM path (needs libopenblas-dev).
        #[arg(long)]
        openblas: bool,
    },
    /// Compile every kernels/cuda file with NVRTC and check it with ptxas.
    CheckKernels,
    /// Check and measure apex-cuda on a GPU (conformance, benchmarks, one report).
    GpuCheck {
        /// Do not run: put the binary, vectors and run.sh into this directory.
        #[arg(long)]
        stage: Option<PathBuf>,
        /// Shorter timings and fewer random cases.
        #[arg(long)]
        quick: bool,
        /// Dry run on the host emulator (small sizes, meaningless timings).
        #[arg(long)]
        emulated: bool,
    },
    /// The compile step of check-kernels (run with NVRTC on LD_LIBRARY_PATH).
    #[command(hide = true)]
    CompileKernels {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        include: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Conformance { vectors, backend } => conformance::run(&vectors, &backend),
        Task::Bench { quick, openblas } => bench::run(quick, openblas),
        Task::CheckKernels => check_kernels::run(),
        Task::GpuCheck {
            stage,
            quick,
            emulated,
        } => gpu_check::run(stage.as_deref(), quick, emulated),
        Task::CompileKernels { out, include } => {
            check_kernels::compile_to(&out, include.as_deref())
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
