//! Reading conformance vectors: one `.safetensors` file per case (spec §0.1),
//! string metadata `op`, `mix`, sizes; tensors `input.<name>` / `expected.<name>`.

use crate::case::{Case, HostTensor, Op};
use apex_core::{ApexError, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

/// A parsed vector file: the case to run and the outputs it must reproduce.
#[derive(Clone, Debug)]
pub struct VectorFile {
    pub case: Case,
    pub expected: BTreeMap<String, HostTensor>,
    /// The string metadata as stored (sizes etc.), for reports.
    pub metadata: BTreeMap<String, String>,
}

fn bad(path: &Path, reason: impl Into<String>) -> ApexError {
    ApexError::format(path.display().to_string(), reason)
}

/// Reads and validates one vector file. Malformed, truncated or inconsistent
/// files are [`ApexError::Format`] errors naming the file and the problem.
pub fn read_vector(path: &Path) -> Result<VectorFile> {
    let bytes = std::fs::read(path).map_err(|source| ApexError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_vector(&bytes, path)
}

/// Parses vector bytes; `path` only names the file in errors.
pub fn parse_vector(bytes: &[u8], path: &Path) -> Result<VectorFile> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(path, format!("not a readable safetensors file: {e}")))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let tensors = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(path, format!("not a readable safetensors file: {e}")))?;
    let op_name = metadata
        .get("op")
        .ok_or_else(|| bad(path, "metadata has no `op`"))?;
    let op = Op::parse(op_name).ok_or_else(|| bad(path, format!("unknown op `{op_name}`")))?;
    let mix = match metadata.get("mix").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(bad(
                path,
                format!("metadata `mix` must be true or false, got `{other}`"),
            ))
        }
    };
    let mut inputs = BTreeMap::new();
    let mut expected = BTreeMap::new();
    for (name, view) in tensors.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(
                path,
                format!("tensor `{name}` is {:?}, expected F32", view.dtype()),
            ));
        }
        let data: Vec<f64> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect();
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(ApexError::NonFinite {
                what: format!("{}: tensor `{name}`", path.display()),
                index: i,
            });
        }
        let tensor = HostTensor {
            data,
            shape: view.shape().to_vec(),
        };
        if let Some(short) = name.strip_prefix("input.") {
            inputs.insert(short.to_string(), tensor);
        } else if let Some(short) = name.strip_prefix("expected.") {
            expected.insert(short.to_string(), tensor);
        } else {
            return Err(bad(
                path,
                format!("tensor `{name}` is neither input.* nor expected.*"),
            ));
        }
    }
    for name in op.inputs() {
        if !inputs.contains_key(*name) {
            return Err(bad(
                path,
                format!("missing tensor `input.{name}` for op {op_name}"),
            ));
        }
    }
    if expected.is_empty() {
        return Err(bad(path, "no expected.* tensors"));
    }
    Ok(VectorFile {
        case: Case { op, mix, inputs },
        expected,
        metadata,
    })
}
