//! Text → token ids: bytes (the embedded default, vocabulary 256) or an HF
//! `tokenizer.json` read with the pure-Rust `tokenizers` crate.

use crate::error::{Result, TrainError};
use std::path::Path;

/// A tokenizer that never adds special tokens (no BOS), as `apex eval` and the
/// parity reference require.
pub enum TextTokenizer {
    /// One token per UTF-8 byte, ids 0..256.
    Bytes,
    /// An HF tokenizer loaded from a `tokenizer.json`.
    Hf(Box<tokenizers::Tokenizer>),
}

impl TextTokenizer {
    /// Reads `path` (an HF `tokenizer.json`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let tok = tokenizers::Tokenizer::from_file(path).map_err(|e| TrainError::Tokenizer {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(TextTokenizer::Hf(Box::new(tok)))
    }

    /// Number of distinct ids (special tokens included).
    pub fn vocab_size(&self) -> usize {
        match self {
            TextTokenizer::Bytes => 256,
            TextTokenizer::Hf(t) => t.get_vocab_size(true),
        }
    }

    /// The ids of `text`, with no special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>> {
        match self {
            TextTokenizer::Bytes => Ok(text.bytes().map(usize::from).collect()),
            TextTokenizer::Hf(t) => {
                let enc = t.encode(text, false).map_err(|e| TrainError::Tokenizer {
                    path: "tokenizer.json".into(),
                    reason: e.to_string(),
                })?;
                Ok(enc.get_ids().iter().map(|&i| i as usize).collect())
            }
        }
    }
}
