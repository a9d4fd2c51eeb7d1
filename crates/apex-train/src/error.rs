//! The error type of apex-train.

use apex_core::ApexError;
use apex_model::ModelError;
use thiserror::Error;

/// Errors from data loading, training and reporting.
#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Core(#[from] ApexError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A `tokenizer.json` could not be read or used.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: String, reason: String },
    /// The data cannot feed the requested run (too short, empty, out of vocabulary).
    #[error("data: {0}")]
    Data(String),
    /// A training option is out of range or inconsistent.
    #[error("invalid option `{field}`: {reason}")]
    Option { field: String, reason: String },
    /// The loss or a gradient became NaN or infinite.
    #[error("training diverged at step {step}: {what} is not finite")]
    Diverged { step: usize, what: String },
}

impl TrainError {
    /// Shorthand for [`TrainError::Option`].
    pub fn option(field: impl Into<String>, reason: impl Into<String>) -> Self {
        TrainError::Option {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An I/O error naming `path`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| TrainError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// `Result` with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
