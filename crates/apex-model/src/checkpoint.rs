//! HF checkpoint I/O: `config.json` + `model.safetensors` with HF tensor names,
//! so a model trained here (APEX fused or not) is a plain `LlamaForCausalLM`
//! checkpoint. Writes are atomic: each file goes to a temporary name in the
//! same directory and is renamed into place, so a crash never leaves a
//! half-written checkpoint under the final name.

use crate::error::{ModelError, Result};
use crate::layer::{DecoderLayer, Param};
use crate::linear::Linear;
use crate::model::{layer_prefix, LlamaModel, EMBED_NAME, FINAL_NORM_NAME, LM_HEAD_NAME};
use apex_core::{ops, ApexError, ModelConfig, TransformerOps};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// File name of the weights inside a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the config inside a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One exported tensor: `(HF name, shape, f32 values)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((bits >> 10) & 0x1f) as i32;
    let frac = (bits & 0x3ff) as f64;
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Decodes little-endian tensor bytes of a float dtype to f64.
fn decode(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f64>> {
    let out = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64)
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16_to_f64(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        _ => return None,
    };
    Some(out)
}

/// Reads named tensors out of one safetensors buffer, checking shape, dtype and
/// finiteness, and uploads them to the backend.
struct TensorReader<'a, B: TransformerOps> {
    backend: &'a B,
    file: SafeTensors<'a>,
    path: String,
}

impl<B: TransformerOps> TensorReader<'_, B> {
    fn read(&self, name: &str, shape: &[usize]) -> Result<B::Tensor> {
        let view = self
            .file
            .tensor(name)
            .map_err(|_| ModelError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        if view.shape() != shape {
            return Err(ModelError::TensorShape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                got: view.shape().to_vec(),
            });
        }
        let values =
            decode(view.dtype(), view.data()).ok_or_else(|| ModelError::UnsupportedDtype {
                path: self.path.clone(),
                name: name.to_string(),
                dtype: format!("{:?}", view.dtype()),
            })?;
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::NonFiniteTensor {
                path: self.path.clone(),
                name: name.to_string(),
                index,
            });
        }
        Ok(ops::upload_f64(self.backend, &values, shape)?)
    }

    fn param(&self, name: &str, shape: &[usize]) -> Result<Param<B>> {
        Ok(Param {
            value: self.read(name, shape)?,
            trainable: false,
        })
    }

    fn frozen(&self, name: &str, shape: &[usize]) -> Result<Linear<B>> {
        Ok(Linear::dense(
            self.read(&format!("{name}.weight"), shape)?,
            false,
        ))
    }
}

/// Rejects configs this decoder does not implement.
pub fn check_supported(config: &ModelConfig) -> Result<()> {
    if config.attention_bias || config.mlp_bias {
        return Err(ApexError::config(
            "attention_bias/mlp_bias",
            "projection biases are not supported (LLaMA has none)",
        )
        .into());
    }
    if config.head_dim() % 2 != 0 {
        return Err(ApexError::config("head_dim", "RoPE needs an even head_dim").into());
    }
    Ok(())
}

impl<B: TransformerOps> LlamaModel<B> {
    /// Loads `dir/config.json` and `dir/model.safetensors` (F32, F16, BF16 or
    /// F64 tensors; HF names; `lm_head.weight` only when embeddings are untied).
    /// Every parameter comes back frozen.
    pub fn load(backend: &B, dir: &Path) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        let origin = config_path.display().to_string();
        let config = ModelConfig::from_json_str(&text, &origin)?;
        let config_json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ApexError::format(origin.clone(), e.to_string()))?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights_path).map_err(io_err(&weights_path))?;
        Self::from_safetensors(
            backend,
            config,
            config_json,
            &bytes,
            &weights_path.display().to_string(),
        )
    }

    /// Builds a model from a config and the bytes of a safetensors file;
    /// `path` names the file in errors.
    pub fn from_safetensors(
        backend: &B,
        config: ModelConfig,
        config_json: serde_json::Value,
        bytes: &[u8],
        path: &str,
    ) -> Result<Self> {
        config.validate()?;
        check_supported(&config)?;
        let file = SafeTensors::deserialize(bytes).map_err(|e| ModelError::CorruptCheckpoint {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        let r = TensorReader {
            backend,
            file,
            path: path.to_string(),
        };
        let d = config.hidden_size;
        let q = config.num_attention_heads * config.head_dim();
        let kv = config.kv_heads() * config.head_dim();
        let n = config.intermediate_size;
        let v = config.vocab_size;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for index in 0..config.num_hidden_layers {
            let p = layer_prefix(index);
            layers.push(DecoderLayer {
                input_norm: r.param(&format!("{p}.input_layernorm.weight"), &[d])?,
                q_proj: r.frozen(&format!("{p}.self_attn.q_proj"), &[q, d])?,
                k_proj: r.frozen(&format!("{p}.self_attn.k_proj"), &[kv, d])?,
                v_proj: r.frozen(&format!("{p}.self_attn.v_proj"), &[kv, d])?,
                o_proj: r.frozen(&format!("{p}.self_attn.o_proj"), &[d, q])?,
                post_attention_norm: r
                    .param(&format!("{p}.post_attention_layernorm.weight"), &[d])?,
                gate_proj: r.frozen(&format!("{p}.mlp.gate_proj"), &[n, d])?,
                up_proj: r.frozen(&format!("{p}.mlp.up_proj"), &[n, d])?,
                down_proj: r.frozen(&format!("{p}.mlp.down_proj"), &[d, n])?,
                attn_mixer: None,
                ffn_mixer: None,
            });
        }
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(r.param(LM_HEAD_NAME, &[v, d])?)
        };
        Ok(LlamaModel {
            embed_tokens: r.param(EMBED_NAME, &[v, d])?,
            norm: r.param(FINAL_NORM_NAME, &[d])?,
            layers,
            lm_head,
            config,
            config_json,
        })
    }

    /// The plain model's tensors, projections folded to dense weights.
    pub fn named_tensors(&self, backend: &B) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        let mut push = |name: String, t: &B::Tensor| -> Result<()> {
            let values = ops::download_f64(backend, t)?;
            out.push((
                name,
                backend.shape(t).to_vec(),
                values.into_iter().map(|x| x as f32).collect(),
            ));
            Ok(())
        };
        push(EMBED_NAME.into(), &self.embed_tokens.value)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let p = layer_prefix(index);
            push(
                format!("{p}.input_layernorm.weight"),
                &layer.input_norm.value,
            )?;
            push(
                format!("{p}.post_attention_layernorm.weight"),
                &layer.post_attention_norm.value,
            )?;
            for (name, _) in layer.projections() {
                push(
                    format!("{p}.{name}.weight"),
                    &layer.dense_weight(backend, name)?,
                )?;
            }
        }
        push(FINAL_NORM_NAME.into(), &self.norm.value)?;
        if let Some(head) = &self.lm_head {
            push(LM_HEAD_NAME.into(), &head.value)?;
        }
        Ok(out)
    }

    /// Saves `dir/config.json` and `dir/model.safetensors` (F32) atomically,
    /// creating `dir` if needed. Adapters are merged and APEX modules fused, so the result loads in
    /// HF transformers as a plain `LlamaForCausalLM`.
    pub fn save(&self, backend: &B, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tensors = self.named_tensors(backend)?;
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let views = tensors
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), data)| {
                safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                    .map(|view| (name.clone(), view))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| ModelError::Input(format!("tensor does not serialise: {e}")))?;
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let weights = safetensors::serialize(views, Some(metadata))
            .map_err(|e| ModelError::Input(format!("safetensors serialisation failed: {e}")))?;
        write_atomic(&dir.join(WEIGHTS_FILE), &weights)?;
        let config = serde_json::to_string_pretty(&self.config_json)
            .map_err(|e| ModelError::Input(format!("config does not serialise: {e}")))?;
        write_atomic(&dir.join(CONFIG_FILE), config.as_bytes())
    }
}
