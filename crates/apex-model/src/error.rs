//! The error type of apex-model: everything that can go wrong reading a
//! checkpoint or running the model, with the file and tensor it concerns.

use apex_core::ApexError;
use thiserror::Error;

/// Errors from loading, saving and running a [`crate::LlamaModel`].
#[derive(Debug, Error)]
pub enum ModelError {
    /// A backend primitive or a config check failed.
    #[error(transparent)]
    Core(#[from] ApexError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The safetensors file is truncated, corrupt or not safetensors at all.
    #[error("{path}: not a readable safetensors checkpoint ({reason})")]
    CorruptCheckpoint { path: String, reason: String },
    /// A tensor the config requires is absent from the checkpoint.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor { path: String, name: String },
    /// A tensor has a shape other than the config implies.
    #[error("{path}: tensor `{name}` has shape {got:?}, the config implies {expected:?}")]
    TensorShape {
        path: String,
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A tensor is stored in a dtype the loader does not read.
    #[error(
        "{path}: tensor `{name}` has unsupported dtype {dtype} (F32, F16, BF16 and F64 are read)"
    )]
    UnsupportedDtype {
        path: String,
        name: String,
        dtype: String,
    },
    /// A tensor holds NaN or infinity.
    #[error("{path}: tensor `{name}` holds a non-finite value at element {index}")]
    NonFiniteTensor {
        path: String,
        name: String,
        index: usize,
    },
    /// A batch does not fit the model (token ids, sequence length).
    #[error("invalid input: {0}")]
    Input(String),
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
