//! The embedded default experiment: a small LLaMA-style model (GQA included)
//! on a byte-level vocabulary, pre-trained briefly on a generated corpus, then
//! trained further on a shifted corpus by each method.

use crate::corpus::Grammar;
use crate::data::TokenSplit;
use crate::error::Result;
use crate::tokenizer::TextTokenizer;
use apex_core::ModelConfig;

/// Sizes of the embedded model and corpus; every field is a CLI flag.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddedSizes {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub layers: usize,
    /// Bytes of generated text per corpus (base and shifted).
    pub corpus_bytes: usize,
}

impl Default for EmbeddedSizes {
    fn default() -> Self {
        EmbeddedSizes {
            hidden_size: 128,
            intermediate_size: 352,
            heads: 4,
            kv_heads: 2,
            layers: 4,
            corpus_bytes: 600_000,
        }
    }
}

impl EmbeddedSizes {
    /// The HF-style config of the embedded model (byte vocabulary, untied head).
    pub fn config(&self) -> Result<ModelConfig> {
        let text = serde_json::json!({
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "num_hidden_layers": self.layers,
            "vocab_size": TextTokenizer::Bytes.vocab_size(),
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "max_position_embeddings": 1024,
            "tie_word_embeddings": false,
        });
        Ok(ModelConfig::from_json_str(
            &text.to_string(),
            "embedded model",
        )?)
    }
}

/// The two generated corpora of the embedded default, as text and as
/// byte-tokenized training/validation splits.
#[derive(Clone, Debug)]
pub struct EmbeddedCorpora {
    pub base_text: String,
    pub shifted_text: String,
    pub base: TokenSplit,
    pub shifted: TokenSplit,
}

/// Generates the base and the shifted corpus of `seed` and splits each.
pub fn embedded_corpora(
    sizes: &EmbeddedSizes,
    seed: u64,
    validation_fraction: f64,
) -> Result<EmbeddedCorpora> {
    let base = Grammar::base(seed);
    let shifted = base.shifted(seed);
    let base_text = base.generate(sizes.corpus_bytes, seed + 1);
    let shifted_text = shifted.generate(sizes.corpus_bytes, seed + 2);
    let tok = TextTokenizer::Bytes;
    let split = |text: &str| TokenSplit::from_documents(&[tok.encode(text)?], validation_fraction);
    Ok(EmbeddedCorpora {
        base: split(&base_text)?,
        shifted: split(&shifted_text)?,
        base_text,
        shifted_text,
    })
}
