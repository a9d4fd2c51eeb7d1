//! # apex-model
//!
//! A LLaMA-family decoder (token embedding, RMSNorm, RoPE, causal GQA
//! attention, SwiGLU FFN, final norm, tied or untied LM head) with a hand-written
//! backward, generic over any backend that implements
//! [`apex_core::TransformerOps`]. Checkpoints are HF `config.json` +
//! `model.safetensors` with HF tensor names, so what this crate saves loads in
//! transformers as `LlamaForCausalLM`.
//!
//! Frozen weights never get a gradient: [`Gradients`] only holds entries for
//! tensors the model marks trainable.
//!
//! ```
//! use apex_core::ModelConfig;
//! use apex_cpu::CpuBackend;
//! use apex_model::{Batch, Gradients, LlamaModel, StepConfig};
//!
//! let cpu = CpuBackend::<f32>::new();
//! let config = ModelConfig::from_json_str(r#"{"hidden_size": 16, "intermediate_size": 32,
//!     "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 1,
//!     "vocab_size": 10, "tie_word_embeddings": true}"#, "inline").unwrap();
//! let mut model = LlamaModel::init_random(&cpu, &config, 0.02, 7).unwrap();
//! model.set_norms_trainable(true);
//! let batch = Batch::next_token(&[&[1, 2, 3, 4]]).unwrap();
//! let mut grads = Gradients::new();
//! let out = model.forward_backward(&cpu, &batch, &StepConfig::plain(), &mut grads).unwrap();
//! assert_eq!(out.loss.count, 3);
//! assert!(grads.get("model.norm.weight").is_some());
//! assert!(grads.get("model.layers.0.mlp.up_proj.weight").is_none()); // frozen
//! ```

pub mod attention;
pub mod checkpoint;
pub mod cv;
pub mod error;
pub mod grads;
pub mod layer;
pub mod linear;
pub mod model;
pub mod params;
pub mod replicated_mix_row;

pub use checkpoint::{write_atomic, CONFIG_FILE, WEIGHTS_FILE};
pub use cv::CvRegulariser;
pub use error::{ModelError, Result};
pub use grads::Gradients;
pub use layer::{DecoderLayer, LayerStats, Param};
pub use linear::{Dense, Linear, LinearCache, Lora};
pub use model::{Batch, LlamaModel, LossSum, StepConfig, StepOutput};
pub use params::{ParamGroup, ParamVisitor};
pub use replicated_mix_row::ReplicatedMixRow;
