//! The training methods compared in one harness and how each one turns a plain
//! dense model into the model it trains.
//!
//! * `full`: every weight trainable (embeddings and norms included).
//! * `lora`: rank-r adapters on all seven projections of every layer.
//! * `s2`: the APEX selection's rows/heads trained directly, no mixer.
//! * `apex`: the APEX stage loop (spec §6.1).

use crate::error::{Result, TrainError};
use apex_core::{ops, TransformerOps};
use apex_model::{Linear, LlamaModel, Lora};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt;
use std::str::FromStr;

/// A training method.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    Full,
    /// LoRA with `W + (alpha/rank)·B·A` on q, k, v, o, gate, up, down.
    Lora {
        rank: usize,
        alpha: f64,
    },
    S2,
    Apex,
}

impl Method {
    /// Short name used in tables, metrics and file names.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Full => "full",
            Method::Lora { .. } => "lora",
            Method::S2 => "s2",
            Method::Apex => "apex",
        }
    }

    /// Whether the method runs the select/convert/fuse stage loop.
    pub fn uses_selection(&self) -> bool {
        matches!(self, Method::S2 | Method::Apex)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = TrainError;

    /// `full`, `s2`, `apex` or `lora` (rank 8, alpha 16; see [`Method::Lora`]).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(Method::Full),
            "s2" => Ok(Method::S2),
            "apex" => Ok(Method::Apex),
            "lora" => Ok(Method::Lora {
                rank: 8,
                alpha: 16.0,
            }),
            other => Err(TrainError::option(
                "method",
                format!("`{other}` is not one of apex, full, s2, lora"),
            )),
        }
    }
}

/// Full fine-tuning: every tensor trainable.
pub fn make_full<B: TransformerOps>(model: &mut LlamaModel<B>) {
    model.set_projections_trainable(true);
    model.set_embeddings_trainable(true);
    model.set_norms_trainable(true);
}

/// Replaces every projection by LoRA on its (frozen) dense weight. A is drawn
/// like PEFT's default (kaiming-uniform, bound `1/√in`), B is zero, so the
/// model starts as the base model.
pub fn make_lora<B: TransformerOps>(
    backend: &B,
    model: &mut LlamaModel<B>,
    rank: usize,
    alpha: f64,
    seed: u64,
) -> Result<()> {
    if rank == 0 {
        return Err(TrainError::option("lora_rank", "must be positive"));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    for layer in &mut model.layers {
        for (_, linear) in layer.projections_mut() {
            let base = linear.dense_weight(backend, None)?;
            let (out, inp) = linear.dims(backend)?;
            let bound = 1.0 / (inp as f64).sqrt();
            let a: Vec<f64> = (0..rank * inp)
                .map(|_| rng.random_range(-bound..=bound))
                .collect();
            *linear = Linear::Lora(Lora {
                base,
                lora_a: ops::upload_f64(backend, &a, &[rank, inp])?,
                lora_b: backend.zeros(&[out, rank])?,
                scale: alpha / rank as f64,
            });
        }
    }
    Ok(())
}
