//! Perplexity evaluation: non-overlapping windows scored independently, as
//! `apex eval` and HF's `LlamaForCausalLM(labels=window)` do.

use crate::data::eval_batches;
use crate::error::{Result, TrainError};
use apex_core::TransformerOps;
use apex_model::LlamaModel;
use serde::Serialize;

/// Mean next-token cross-entropy over the windows of a token stream.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EvalResult {
    /// Windows scored.
    pub windows: usize,
    /// Predictions scored (`windows·(seq_len−1)`).
    pub predictions: usize,
    /// Mean cross-entropy in nats.
    pub mean_cross_entropy: f64,
    /// `exp(mean_cross_entropy)`.
    pub perplexity: f64,
}

/// Scores the first `max_windows` (all when `None`) non-overlapping windows of
/// `seq_len` tokens of `tokens` (the last partial window is dropped), in
/// batches of `batch_size` windows.
pub fn evaluate<B: TransformerOps>(
    backend: &B,
    model: &LlamaModel<B>,
    tokens: &[usize],
    seq_len: usize,
    batch_size: usize,
    max_windows: Option<usize>,
) -> Result<EvalResult> {
    if seq_len < 2 {
        return Err(TrainError::option(
            "seq_len",
            "needs at least 2 tokens per window",
        ));
    }
    let batches = eval_batches(tokens, seq_len, batch_size, max_windows)?;
    if batches.is_empty() {
        return Err(TrainError::Data(format!(
            "{} tokens hold no window of {seq_len}",
            tokens.len()
        )));
    }
    let (mut sum, mut count, mut windows) = (0.0, 0usize, 0usize);
    for batch in &batches {
        let loss = model.loss(backend, batch)?;
        sum += loss.sum;
        count += loss.count;
        windows += batch.batch;
    }
    let mean = sum / count as f64;
    Ok(EvalResult {
        windows,
        predictions: count,
        mean_cross_entropy: mean,
        perplexity: mean.exp(),
    })
}
