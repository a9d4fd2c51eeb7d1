//! # apex-train
//!
//! APEX training on any backend that implements
//! [`apex_core::TransformerOps`]: token data from text files (byte-level or HF
//! `tokenizer.json`), AdamW with parameter groups and global-norm clipping, a
//! warmup cosine with stage restarts, the APEX stage loop (assess → select →
//! permute/convert → train with online statistics → fuse), the `full`, `s2`
//! and `lora` baselines in the same harness, JSONL metrics, a PNG loss plot,
//! effective-rank diagnostics, and the self-generated corpus of the embedded
//! default run.
//!
//! ```
//! use apex_cpu::CpuBackend;
//! use apex_model::LlamaModel;
//! use apex_train::{train, EmbeddedSizes, Method, TokenSplit, TrainOptions};
//!
//! let cpu = CpuBackend::<f32>::new();
//! let sizes = EmbeddedSizes { hidden_size: 16, intermediate_size: 32, heads: 2,
//!     kv_heads: 1, layers: 1, corpus_bytes: 4000 };
//! let model = LlamaModel::init_random(&cpu, &sizes.config().unwrap(), 0.02, 1).unwrap();
//! let text: Vec<usize> = "the cat sat on the mat. ".repeat(40).bytes().map(usize::from).collect();
//! let data = TokenSplit::from_documents(&[text], 0.2).unwrap();
//! let options = TrainOptions { steps: 3, batch_size: 2, seq_len: 16, ..TrainOptions::default() };
//! let run = train(&cpu, &model, &data, &Method::Full, &options, &mut |_| {}).unwrap();
//! assert_eq!(run.summary.steps, 3);
//! assert!(run.summary.final_validation_loss.is_finite());
//! ```

pub mod corpus;
pub mod data;
pub mod embedded;
pub mod erank;
pub mod error;
pub mod eval;
pub mod methods;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod schedule;
pub mod stage;
pub mod tokenizer;
pub mod trainer;

pub use data::TokenSplit;
pub use embedded::{embedded_corpora, EmbeddedCorpora, EmbeddedSizes};
pub use error::{Result, TrainError};
pub use eval::{evaluate, EvalResult};
pub use methods::Method;
pub use metrics::{Event, JsonlWriter, RunSummary};
pub use optim::AdamWConfig;
pub use tokenizer::TextTokenizer;
pub use trainer::{train, TrainOptions, TrainOutcome};
