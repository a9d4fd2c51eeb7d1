//! Token data for training and evaluation: text files → ids, a held-out
//! validation split, fixed-length windows, and a seeded batch sampler.

use crate::error::{Result, TrainError};
use crate::tokenizer::TextTokenizer;
use apex_model::Batch;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::PathBuf;

/// Training and validation token streams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSplit {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

impl TokenSplit {
    /// Splits every document: its last `validation_fraction` of tokens go to
    /// validation, so each file is represented on both sides.
    pub fn from_documents(documents: &[Vec<usize>], validation_fraction: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&validation_fraction) {
            return Err(TrainError::option(
                "validation_fraction",
                "must be in [0, 1)",
            ));
        }
        let mut split = TokenSplit::default();
        for doc in documents {
            let held = (doc.len() as f64 * validation_fraction).round() as usize;
            let cut = doc.len() - held;
            split.train.extend_from_slice(&doc[..cut]);
            split.validation.extend_from_slice(&doc[cut..]);
        }
        Ok(split)
    }

    /// Reads and tokenizes text files, then splits them.
    pub fn from_files(
        files: &[PathBuf],
        tokenizer: &TextTokenizer,
        validation_fraction: f64,
    ) -> Result<Self> {
        if files.is_empty() {
            return Err(TrainError::Data("no data files given".into()));
        }
        let docs = files
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
                tokenizer.encode(&text)
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_documents(&docs, validation_fraction)
    }

    /// Fails unless both sides hold at least one window of `seq_len` tokens
    /// and every id is below `vocab_size`.
    pub fn check(&self, seq_len: usize, vocab_size: usize) -> Result<()> {
        for (name, tokens) in [("training", &self.train), ("validation", &self.validation)] {
            if tokens.len() < seq_len {
                return Err(TrainError::Data(format!(
                    "the {name} split has {} tokens, less than one window of {seq_len}",
                    tokens.len()
                )));
            }
            if let Some(&bad) = tokens.iter().find(|&&t| t >= vocab_size) {
                return Err(TrainError::Data(format!(
                    "token id {bad} in the {name} split is outside the model's vocabulary of {vocab_size}"
                )));
            }
        }
        Ok(())
    }
}

/// Non-overlapping windows of `seq_len` tokens; a last partial window is dropped.
pub fn windows(tokens: &[usize], seq_len: usize) -> Vec<&[usize]> {
    if seq_len == 0 {
        return Vec::new();
    }
    tokens.chunks_exact(seq_len).collect()
}

/// Draws training batches of whole windows, reshuffling (seeded) every epoch.
pub struct BatchSampler<'a> {
    windows: Vec<&'a [usize]>,
    order: Vec<usize>,
    cursor: usize,
    batch_size: usize,
    rng: StdRng,
}

impl<'a> BatchSampler<'a> {
    /// A sampler over the windows of `tokens`.
    pub fn new(tokens: &'a [usize], seq_len: usize, batch_size: usize, seed: u64) -> Result<Self> {
        let windows = windows(tokens, seq_len);
        if windows.is_empty() || batch_size == 0 {
            return Err(TrainError::Data(format!(
                "{} tokens give no batch of {batch_size} windows of {seq_len}",
                tokens.len()
            )));
        }
        let mut sampler = BatchSampler {
            order: (0..windows.len()).collect(),
            windows,
            cursor: 0,
            batch_size,
            rng: StdRng::seed_from_u64(seed),
        };
        sampler.order.shuffle(&mut sampler.rng);
        Ok(sampler)
    }

    /// The next batch of `batch_size` windows (wrapping into a new epoch).
    pub fn next_batch(&mut self) -> Result<Batch> {
        let mut picked = Vec::with_capacity(self.batch_size);
        while picked.len() < self.batch_size {
            if self.cursor == self.order.len() {
                self.order.shuffle(&mut self.rng);
                self.cursor = 0;
            }
            picked.push(self.windows[self.order[self.cursor]]);
            self.cursor += 1;
        }
        Ok(Batch::next_token(&picked)?)
    }

    /// Windows per epoch.
    pub fn windows_per_epoch(&self) -> usize {
        self.windows.len()
    }
}

/// Batches covering the first `max_windows` windows of `tokens` in order (all
/// when `None`), for validation and evaluation.
pub fn eval_batches(
    tokens: &[usize],
    seq_len: usize,
    batch_size: usize,
    max_windows: Option<usize>,
) -> Result<Vec<Batch>> {
    let mut all = windows(tokens, seq_len);
    if let Some(max) = max_windows {
        all.truncate(max);
    }
    all.chunks(batch_size.max(1))
        .map(|chunk| Ok(Batch::next_token(chunk)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_contributes_its_tail_to_validation() {
        let docs = vec![(0..10).collect::<Vec<_>>(), (100..104).collect()];
        let split = TokenSplit::from_documents(&docs, 0.25).unwrap();
        assert_eq!(split.validation, vec![7, 8, 9, 103]);
        assert_eq!(split.train.len(), 7 + 3);
    }

    #[test]
    fn windows_drop_the_partial_tail_and_sampler_wraps_epochs() {
        let tokens: Vec<usize> = (0..10).collect();
        assert_eq!(windows(&tokens, 4), vec![&[0, 1, 2, 3][..], &[4, 5, 6, 7]]);
        let mut sampler = BatchSampler::new(&tokens, 4, 3, 1).unwrap();
        let batch = sampler.next_batch().unwrap();
        assert_eq!(batch.tokens.len(), 12);
        assert!(BatchSampler::new(&tokens, 11, 1, 1).is_err());
    }

    #[test]
    fn out_of_vocabulary_and_short_splits_are_reported() {
        let split = TokenSplit {
            train: vec![1, 2, 3, 4],
            validation: vec![1, 9, 1, 1],
        };
        assert!(split.check(4, 10).is_ok());
        assert!(matches!(split.check(4, 5), Err(TrainError::Data(_))));
        assert!(matches!(split.check(5, 10), Err(TrainError::Data(_))));
    }
}
