//! `cargo xtask bench`: runs `cargo bench -p apex-benches` and tabulates
//! criterion's estimates with the workload list of `apex_benches::workloads`:
//! the CPU table, then the wgpu table when an adapter exists (labelled as
//! software rendering on lavapipe, where the shapes are small).

use apex_benches::{wgpu_sizes, workloads, Sizes, Target, Workload};
use apex_core::Backend;
use apex_wgpu::WgpuBackend;
use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Mean time in nanoseconds of `group/id` from criterion's last run.
fn mean_ns(group: &str, id: &str) -> Result<f64, String> {
    let path = target_dir()
        .join("criterion")
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    json["mean"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no mean.point_estimate", path.display()))
}

fn format_time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} µs", ns / 1e3)
    }
}

pub fn run(quick: bool, openblas: bool) -> Result<bool, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["bench", "-p", "apex-benches", "--bench", "ops"]);
    if openblas {
        cmd.args(["--features", "openblas"]);
    }
    cmd.arg("--");
    if quick {
        cmd.args(["--warm-up-time", "0.2", "--measurement-time", "1"]);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    if !status.success() {
        return Err(format!("cargo bench failed: {status}"));
    }
    println!();
    println!(
        "backend cpu-f32 ({} threads)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    print_table(&workloads(Target::Cpu, Sizes::FULL))?;
    println!();
    match WgpuBackend::new() {
        Ok(gpu) => {
            let adapter = gpu.adapter();
            let note = if adapter.software {
                " — SOFTWARE RENDERING (a CPU Vulkan such as lavapipe; small shapes, not GPU speed)"
            } else {
                ""
            };
            println!("backend {}{note}", gpu.name());
            print_table(&workloads(Target::Wgpu, wgpu_sizes(&adapter)))?;
        }
        Err(why) => println!("backend wgpu: SKIPPED ({why})"),
    }
    println!("ratio = time / time of the group's baseline row (measured in this run)");
    Ok(true)
}

fn print_table(rows: &[Workload]) -> Result<(), String> {
    println!(
        "{:<15} {:<27} {:<42} {:>11} {:>8} {:>9}",
        "group", "op", "shape", "time", "ratio", "GFLOP/s"
    );
    for w in rows {
        let ns = mean_ns(&w.group, w.id)?;
        let base = mean_ns(&w.group, w.baseline)?;
        println!(
            "{:<15} {:<27} {:<42} {:>11} {:>7.3}x {:>9.1}",
            w.group,
            w.id,
            w.shape,
            format_time(ns),
            ns / base,
            w.flops / ns
        );
    }
    Ok(())
}
