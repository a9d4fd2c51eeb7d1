//! The HF-style `config.json` of a LLaMA-family model: the sizes APEX, the
//! planner and the model need, accepting the variants current checkpoints use.

use crate::error::{ApexError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Sizes of a LLaMA-family decoder, read from (and written as) an HF
/// `config.json`. Unknown keys are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// d, the residual width.
    pub hidden_size: usize,
    /// N, the SwiGLU intermediate width.
    pub intermediate_size: usize,
    /// H, query heads.
    pub num_attention_heads: usize,
    /// H_kv, key/value heads (GQA); defaults to H (MHA).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// L, decoder layers.
    pub num_hidden_layers: usize,
    /// V, vocabulary size.
    pub vocab_size: usize,
    /// Whether the LM head reuses the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// d_h; defaults to d / H.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RoPE base; may also sit under `rope_parameters.rope_theta`.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Newer checkpoints nest RoPE settings here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// Longest sequence the model was trained for.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    /// Whether q/k/v/o carry biases (false for LLaMA).
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether gate/up/down carry biases (false for LLaMA).
    #[serde(default)]
    pub mlp_bias: bool,
}

/// The nested `rope_parameters` object of newer HF configs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_type: Option<String>,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}

impl ModelConfig {
    /// Parses and validates a `config.json` text; `origin` names it in errors.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self> {
        let config: ModelConfig = serde_json::from_str(text).map_err(|e| {
            ApexError::format(origin, format!("not a valid model config.json: {e}"))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ApexError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// H_kv (defaults to H).
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// d_h (defaults to d / H).
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// r = H / H_kv, query heads per KV group.
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.kv_heads().max(1)
    }

    /// RoPE base: top-level `rope_theta`, else `rope_parameters.rope_theta`, else 10000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_theta
            .or_else(|| self.rope_parameters.as_ref().and_then(|p| p.rope_theta))
            .unwrap_or(10_000.0)
    }

    /// Total parameter count of the model (embeddings, layers, norms, LM head unless tied).
    pub fn parameter_count(&self) -> u64 {
        let d = self.hidden_size as u64;
        let q = (self.num_attention_heads * self.head_dim()) as u64;
        let kv = (self.kv_heads() * self.head_dim()) as u64;
        let n = self.intermediate_size as u64;
        let v = self.vocab_size as u64;
        let attn = d * q + 2 * d * kv + q * d;
        let attn_bias = if self.attention_bias {
            q + 2 * kv + d
        } else {
            0
        };
        let ffn = 3 * d * n;
        let ffn_bias = if self.mlp_bias { 2 * n + d } else { 0 };
        let per_layer = attn + attn_bias + ffn + ffn_bias + 2 * d;
        let embeddings = v * d * if self.tie_word_embeddings { 1 } else { 2 };
        self.num_hidden_layers as u64 * per_layer + embeddings + d
    }

    /// Rejects zero sizes and head counts that do not divide.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_hidden_layers", self.num_hidden_layers),
            ("vocab_size", self.vocab_size),
            ("num_key_value_heads", self.kv_heads()),
            ("head_dim", self.head_dim()),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ApexError::config(field, "must be positive"));
            }
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return Err(ApexError::config(
                "num_key_value_heads",
                format!(
                    "{} query heads are not divisible into {} KV groups",
                    self.num_attention_heads,
                    self.kv_heads()
                ),
            ));
        }
        if self.head_dim.is_none() && self.hidden_size % self.num_attention_heads != 0 {
            return Err(ApexError::config(
                "hidden_size",
                format!(
                    "{} is not divisible by {} heads and no head_dim is given",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(ApexError::config(
                "rms_norm_eps",
                "must be a positive finite number",
            ));
        }
        let theta = self.rope_theta();
        if !(theta.is_finite() && theta > 0.0) {
            return Err(ApexError::config(
                "rope_theta",
                "must be a positive finite number",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA2_7B: &str = r#"{"hidden_size": 4096, "intermediate_size": 11008,
        "num_attention_heads": 32, "num_key_value_heads": 32, "num_hidden_layers": 32,
        "vocab_size": 32008, "tie_word_embeddings": false, "rms_norm_eps": 1e-5}"#;

    #[test]
    fn llama2_7b_parameter_count_matches_the_spec() {
        let c = ModelConfig::from_json_str(LLAMA2_7B, "llama2").unwrap();
        assert_eq!(c.parameter_count(), 6_738_481_152);
        assert_eq!(c.head_dim(), 128);
        assert_eq!(c.rope_theta(), 10_000.0);
    }

    #[test]
    fn nested_rope_theta_and_explicit_head_dim_are_read() {
        let text = r#"{"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 100,
            "head_dim": 32, "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}}"#;
        let c = ModelConfig::from_json_str(text, "t").unwrap();
        assert_eq!(c.head_dim(), 32);
        assert_eq!(c.group_size(), 2);
        assert_eq!(c.rope_theta(), 500000.0);
    }

    #[test]
    fn malformed_and_inconsistent_configs_are_clear_errors() {
        assert!(matches!(
            ModelConfig::from_json_str("{\"hidden_size\": 4", "bad.json"),
            Err(ApexError::Format { .. })
        ));
        let text = r#"{"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
            "num_key_value_heads": 3, "num_hidden_layers": 2, "vocab_size": 100}"#;
        assert!(matches!(
            ModelConfig::from_json_str(text, "t"),
            Err(ApexError::InvalidConfig { .. })
        ));
    }
}
