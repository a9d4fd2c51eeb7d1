//! `cargo xtask gpu-check`: builds `apex-gpu-check` in release and runs it
//! on this machine's GPU (report in `<target>/gpu-report.md`; `--emulated`
//! is a dry run on the host emulator), or with `--stage DIR` puts the
//! binary, the wgpu benchmark binary (`wgpu-report`), the golden vectors and
//! `run.sh` into DIR for a GPU machine that has no Rust toolchain:
//!
//! ```sh
//! cargo xtask gpu-check --stage .gpu       # here
//! bash .gpu/run.sh "$OUT"                  # there: writes $OUT/gpu-report.md
//!                                          # and $OUT/wgpu-report.txt
//! ```
//!
//! `run.sh` gives the CUDA check 300 s and wgpu-report 200 s (both well inside
//! a 10-minute device command). wgpu needs a Vulkan loader: when the machine
//! has none, `run.sh` unpacks the loader packages it finds in `DIR/vulkan/`
//! or `.gl/` next to DIR (see the device README), and points Vulkan at the
//! NVIDIA driver's ICD file when present.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Finds the NVIDIA driver and CUDA 13 libraries (libcuda, libnvrtc,
/// libcublas) on a machine we did not set up, then runs the check.
const RUN_SH: &str = r#"#!/usr/bin/env bash
# Runs apex-gpu-check on a GPU machine without cargo: bash run.sh [REPORT_DIR]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${OUT:-$here}}
# cudarc opens libraries by name: make the driver's and the CUDA 13 toolkit's
# (or the Python wheels') directories visible to the loader.
add() { [ -d "$1" ] && LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$1"; }
add /usr/local/nvidia/lib64
add /usr/local/cuda/lib64
add /usr/local/cuda/targets/x86_64-linux/lib
for py in python3 /opt/torch/.venv/bin/python3; do
  for dir in $("$py" -c 'import nvidia, os; [print(os.path.join(p, d, "lib")) for p in nvidia.__path__ for d in sorted(os.listdir(p))]' 2>/dev/null); do
    add "$dir"
  done
done
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
ldconfig -p | grep -E 'libcuda\.so|libnvrtc\.so|libcublas\.so' || true
timeout 300 "$here/apex-gpu-check" --vectors "$here/vectors" --report "$out/gpu-report.md" "${@:2}"
status=$?
if [ -x "$here/wgpu-report" ]; then
  if ! ldconfig -p | grep -q libvulkan; then
    for deb in "$here"/vulkan/*.deb "$here"/../.gl/*.deb; do
      [ -f "$deb" ] && dpkg -x "$deb" /
    done
    ldconfig
  fi
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
  timeout 200 "$here/wgpu-report" 2>&1 | tee "$out/wgpu-report.txt"
fi
exit $status
"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() {
            let dest = to.join(path.file_name().expect("a file name"));
            std::fs::copy(&path, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        }
    }
    Ok(())
}

/// `cargo build --release` with `args`.
fn build_release(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release"])
        .args(args)
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed: {status}"));
    }
    Ok(())
}

pub fn run(stage: Option<&Path>, quick: bool, emulated: bool) -> Result<bool, String> {
    build_release(&["-p", "apex-gpu-check"])?;
    let binary = target_dir().join("release/apex-gpu-check");
    let vectors = repo_root().join("tests/vectors");
    let Some(dir) = stage else {
        let report = target_dir().join("gpu-report.md");
        let mut command = Command::new(&binary);
        command
            .arg("--vectors")
            .arg(&vectors)
            .arg("--report")
            .arg(&report);
        if quick {
            command.arg("--quick");
        }
        if emulated {
            command.arg("--emulated");
        }
        let status = command
            .status()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        return Ok(status.success());
    };
    build_release(&["-p", "apex-benches", "--bin", "wgpu-report"])?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (from, name) in [
        (binary, "apex-gpu-check"),
        (target_dir().join("release/wgpu-report"), "wgpu-report"),
    ] {
        std::fs::copy(&from, dir.join(name)).map_err(|e| format!("{}: {e}", from.display()))?;
    }
    copy_dir(&vectors, &dir.join("vectors"))?;
    std::fs::write(dir.join("run.sh"), RUN_SH).map_err(|e| e.to_string())?;
    println!(
        "staged {} (apex-gpu-check, wgpu-report, vectors, run.sh); on the GPU machine: \
         bash {}/run.sh \"$OUT\" (put Vulkan loader .deb files in {}/vulkan/ if it has no \
         libvulkan)",
        dir.display(),
        dir.display(),
        dir.display()
    );
    Ok(true)
}
