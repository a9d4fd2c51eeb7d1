//! The one error type of apex-core. Every fallible public call returns [`Result`].

use thiserror::Error;

/// Errors raised by the APEX operators, the backends and the file readers.
#[derive(Debug, Error)]
pub enum ApexError {
    /// Two operands (or an operand and the op's expectation) disagree in shape.
    #[error("{op}: shape mismatch: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        op: &'static str,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A strided view reaches past the end of the tensor it reads or writes.
    #[error("{op}: view reaches element {needed} but the tensor holds {len}")]
    ViewOutOfBounds {
        op: &'static str,
        needed: usize,
        len: usize,
    },
    /// An index list (permutation, gather) names a position outside `0..bound`
    /// or is not a permutation where one is required.
    #[error("{op}: invalid index {index} (bound {bound})")]
    InvalidIndex {
        op: &'static str,
        index: usize,
        bound: usize,
    },
    /// A configuration value is out of range or inconsistent with another.
    #[error("invalid config `{field}`: {reason}")]
    InvalidConfig { field: String, reason: String },
    /// Data holds NaN or infinity where finite values are required.
    #[error("non-finite value in {what} at element {index}")]
    NonFinite { what: String, index: usize },
    /// A file is malformed, truncated or misses a required entry.
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    /// An I/O error, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A backend-specific failure (driver, device, kernel compilation).
    #[error("backend {backend}: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
}

/// `Result` with [`ApexError`].
pub type Result<T, E = ApexError> = std::result::Result<T, E>;

impl ApexError {
    /// Shorthand for [`ApexError::ShapeMismatch`].
    pub fn shape(op: &'static str, expected: &[usize], got: &[usize]) -> Self {
        ApexError::ShapeMismatch {
            op,
            expected: expected.to_vec(),
            got: got.to_vec(),
        }
    }

    /// Shorthand for [`ApexError::InvalidConfig`].
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApexError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ApexError::Format`].
    pub fn format(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ApexError::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
