//! Running golden vectors on a backend and reporting the result.

use crate::case::run_case;
use crate::compare::{compare, TensorReport};
use crate::vector_file::read_vector;
use apex_core::{ApexError, Backend, Result};
use std::path::{Path, PathBuf};

/// The outcome of one vector file: per-tensor reports, or why it could not run.
#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub op: Option<String>,
    pub tensors: Vec<TensorReport>,
    /// A malformed file or a failure inside the backend.
    pub error: Option<ApexError>,
}

impl FileReport {
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && !self.tensors.is_empty()
            && self.tensors.iter().all(TensorReport::passed)
    }
}

/// Runs one vector file on `backend` with relative tolerance `rtol`.
pub fn run_file<B: Backend>(backend: &B, path: &Path, rtol: f64) -> FileReport {
    let mut report = FileReport {
        path: path.to_path_buf(),
        op: None,
        tensors: Vec::new(),
        error: None,
    };
    let vector = match read_vector(path) {
        Ok(v) => v,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    report.op = Some(vector.case.op.name().to_string());
    let outputs = match run_case(backend, &vector.case) {
        Ok(o) => o,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    for (name, want) in &vector.expected {
        report.tensors.push(match outputs.get(name) {
            Some(got) => compare(name, got, want, rtol),
            None => TensorReport::missing(name),
        });
    }
    report
}

/// All `.safetensors` files directly in `dir`, sorted by name.
pub fn vector_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| ApexError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Runs every vector in `dir`.
pub fn run_directory<B: Backend>(backend: &B, dir: &Path, rtol: f64) -> Result<Vec<FileReport>> {
    Ok(vector_paths(dir)?
        .iter()
        .map(|p| run_file(backend, p, rtol))
        .collect())
}

/// Human-readable lines for a report: one per tensor, then the verdict.
pub fn format_report(report: &FileReport) -> String {
    let name = report
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut text = String::new();
    if let Some(err) = &report.error {
        text.push_str(&format!("{name}: ERROR {err}\n"));
        return text;
    }
    for t in &report.tensors {
        let verdict = if t.passed() { "ok" } else { "FAIL" };
        let detail = if t.missing {
            "not produced".to_string()
        } else if let Some((want, got)) = &t.shape_mismatch {
            format!("shape {got:?}, expected {want:?}")
        } else {
            format!(
                "max abs {:.3e}  max rel {:.3e}  failing {}",
                t.max_abs_error, t.max_rel_error, t.failures
            )
        };
        text.push_str(&format!(
            "  {name:<44} {:<18} {detail:<52} {verdict}\n",
            t.name
        ));
    }
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    text.push_str(&format!(
        "{name}: {} ({verdict})\n",
        report.op.as_deref().unwrap_or("?")
    ));
    text
}
