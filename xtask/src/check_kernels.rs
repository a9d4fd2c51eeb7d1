//! `cargo xtask check-kernels`: every `kernels/cuda/*.cu` compiled with NVRTC
//! to PTX for sm_80 and sm_90 and assembled with `ptxas -v`, on a machine
//! without a GPU or a CUDA install. Fails on any compile error, ptxas error,
//! register spill, or PTX ISA newer than a CUDA 13.0 driver (580.x) loads;
//! prints registers, shared memory and stack per kernel.
//!
//! NVRTC, ptxas and the runtime headers come from NVIDIA's PyPI wheels,
//! installed once with pip into `<target>/cuda-tools`. cudarc finds NVRTC by
//! library name only, and the loader reads `LD_LIBRARY_PATH` at process
//! start, so the compile step runs in a child process of this binary
//! (`xtask compile-kernels`) with that variable pointing at the wheel.

use apex_cuda::kernels::{self, Target};
use std::path::{Path, PathBuf};
use std::process::Command;

const WHEELS: &[&str] = &[
    "nvidia-cuda-nvrtc-cu12==12.9.86",
    "nvidia-cuda-nvcc-cu12==12.9.86",
    "nvidia-cuda-runtime-cu12==12.9.79",
];
const ARCHS: [u32; 2] = [80, 90];
/// The newest PTX ISA a CUDA 13.0 driver loads.
const MAX_PTX_ISA: (u32, u32) = (9, 0);

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The wheel contents, installed on first use.
fn tools() -> Result<PathBuf, String> {
    let dir = target_dir().join("cuda-tools");
    let marker = dir.join(format!("installed-{}", WHEELS.join("+").replace('=', "")));
    if marker.exists() {
        return Ok(dir);
    }
    eprintln!("installing NVRTC and ptxas wheels into {}", dir.display());
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--upgrade",
            "--target",
        ])
        .arg(&dir)
        .args(WHEELS)
        .status()
        .map_err(|e| format!("cannot run `python3 -m pip`: {e}"))?;
    if !status.success() {
        return Err(format!("pip install of {WHEELS:?} failed: {status}"));
    }
    std::fs::write(&marker, "").map_err(|e| format!("{}: {e}", marker.display()))?;
    Ok(dir)
}

/// The child step: every kernel file to `<out>/<stem>.sm_<arch>.ptx`.
pub fn compile_to(out: &Path, include: Option<&str>) -> Result<bool, String> {
    let (major, minor) = kernels::nvrtc_version()?;
    println!("NVRTC {major}.{minor}");
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for file in kernels::FILES {
        let stem = file.name.trim_end_matches(".cu");
        for arch in ARCHS {
            let compiled = kernels::compile(file, Target::Ptx(arch), include)?;
            if !compiled.log.is_empty() {
                println!("{} sm_{arch}:\n{}", file.name, compiled.log);
            }
            let path = out.join(format!("{stem}.sm_{arch}.ptx"));
            std::fs::write(&path, &compiled.image)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(true)
}

/// One kernel's resources as ptxas reports them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Usage {
    kernel: String,
    registers: u32,
    smem: u32,
    stack: u32,
    spill_stores: u32,
    spill_loads: u32,
}

/// Numbers preceding `unit` in `line` ("16896 bytes smem" → 16896).
fn number_before(line: &str, unit: &str) -> Option<u32> {
    let head = &line[..line.find(unit)?];
    head.split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// Parses `ptxas -v` output into one [`Usage`] per entry function.
fn parse_ptxas(output: &str) -> Vec<Usage> {
    let mut all: Vec<Usage> = Vec::new();
    for line in output.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            all.push(Usage {
                kernel: rest.split('\'').next().unwrap_or_default().to_string(),
                ..Usage::default()
            });
        } else if let Some(usage) = all.last_mut() {
            if line.contains("bytes stack frame") {
                usage.stack = number_before(line, "bytes stack frame").unwrap_or(0);
                usage.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
                usage.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used") && line.contains("registers") {
                usage.registers = number_before(line, "registers").unwrap_or(0);
                usage.smem = number_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    all
}

/// The `.version X.Y` of a PTX file.
fn ptx_isa(ptx: &str) -> Option<(u32, u32)> {
    let line = ptx
        .lines()
        .find(|l| l.trim_start().starts_with(".version"))?;
    let (major, minor) = line.split_whitespace().nth(1)?.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

pub fn run() -> Result<bool, String> {
    let tools = tools()?;
    let nvrtc_lib = tools.join("nvidia/cuda_nvrtc/lib");
    let include = tools.join("nvidia/cuda_runtime/include");
    let ptxas = tools.join("nvidia/cuda_nvcc/bin/ptxas");
    let out = target_dir().join("cuda-kernels-ptx");
    let library_path = match std::env::var_os("LD_LIBRARY_PATH") {
        Some(old) => format!("{}:{}", nvrtc_lib.display(), old.to_string_lossy()),
        None => nvrtc_lib.display().to_string(),
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = Command::new(exe)
        .arg("compile-kernels")
        .arg("--out")
        .arg(&out)
        .arg("--include")
        .arg(&include)
        .env("LD_LIBRARY_PATH", library_path)
        .status()
        .map_err(|e| format!("cannot start the compile step: {e}"))?;
    if !status.success() {
        return Err(format!("NVRTC compilation failed ({status})"));
    }
    let mut ok = true;
    let mut rows = Vec::new();
    for file in kernels::FILES {
        let stem = file.name.trim_end_matches(".cu");
        for arch in ARCHS {
            let path = out.join(format!("{stem}.sm_{arch}.ptx"));
            let ptx =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            match ptx_isa(&ptx) {
                Some(isa) if isa <= MAX_PTX_ISA => {}
                other => {
                    println!(
                        "FAIL {}: PTX ISA {other:?} is newer than a CUDA 13.0 driver loads",
                        path.display()
                    );
                    ok = false;
                }
            }
            let output = Command::new(&ptxas)
                .args([
                    "-v",
                    "--warn-on-spills",
                    &format!("-arch=sm_{arch}"),
                    "-o",
                    "/dev/null",
                ])
                .arg(&path)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", ptxas.display()))?;
            let text = String::from_utf8_lossy(&output.stderr);
            if !output.status.success() || text.contains("error") {
                println!("FAIL ptxas {}:\n{text}", path.display());
                ok = false;
            }
            for usage in parse_ptxas(&text) {
                rows.push((file.name, arch, usage));
            }
            let expected = file.entries.len();
            let found = rows
                .iter()
                .filter(|(f, a, _)| *f == file.name && *a == arch)
                .count();
            if found != expected {
                println!(
                    "FAIL {} sm_{arch}: ptxas reported {found} kernels, expected {expected}",
                    file.name
                );
                ok = false;
            }
        }
    }
    println!();
    println!(
        "{:<17} {:<28} {:>6} {:>9} {:>11} {:>7} {:>13}",
        "file", "kernel", "arch", "registers", "smem (B)", "stack", "spill st/ld"
    );
    for (file, arch, u) in &rows {
        let spills = u.spill_stores + u.spill_loads > 0;
        println!(
            "{:<17} {:<28} {:>6} {:>9} {:>11} {:>7} {:>8}/{:<4}{}",
            file,
            u.kernel,
            format!("sm_{arch}"),
            u.registers,
            u.smem,
            u.stack,
            u.spill_stores,
            u.spill_loads,
            if spills { " SPILL" } else { "" }
        );
        if spills {
            ok = false;
        }
    }
    println!("(the fused Monarch kernels also take R·k·4 bytes of dynamic shared memory, sized at launch)");
    println!(
        "{}: {} kernels × {} architectures",
        if ok { "PASS" } else { "FAIL" },
        rows.len() / ARCHS.len(),
        ARCHS.len()
    );
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptxas_verbose_output_is_parsed_per_kernel() {
        let text = "ptxas info    : 0 bytes gmem\n\
            ptxas info    : Compiling entry function 'gemm_large' for 'sm_90'\n\
            ptxas info    : Function properties for gemm_large\n\
            \x20   8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
            ptxas info    : Used 128 registers, used 1 barriers, 16896 bytes smem\n\
            ptxas info    : Compiling entry function 'gather' for 'sm_90'\n\
            ptxas info    : Function properties for gather\n\
            \x20   0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
            ptxas info    : Used 40 registers, used 0 barriers, 408 bytes cmem[0]\n";
        let usage = parse_ptxas(text);
        assert_eq!(
            usage,
            vec![
                Usage {
                    kernel: "gemm_large".into(),
                    registers: 128,
                    smem: 16896,
                    stack: 8,
                    spill_stores: 4,
                    spill_loads: 12,
                },
                Usage {
                    kernel: "gather".into(),
                    registers: 40,
                    ..Usage::default()
                },
            ]
        );
    }

    #[test]
    fn ptx_isa_version_is_read_from_the_header() {
        assert_eq!(ptx_isa("//\n.version 8.8\n.target sm_90\n"), Some((8, 8)));
        assert_eq!(ptx_isa("no header"), None);
    }
}
