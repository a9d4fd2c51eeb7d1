//! What a run reports: events for progress display and the JSONL metrics file,
//! and the per-run summary of the comparison table.

use crate::error::{Result, TrainError};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The result of one training run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSummary {
    pub method: String,
    /// Trainable scalars (adapters and APEX extras included), first stage.
    pub trainable: u64,
    /// Parameters of the plain model.
    pub model_parameters: u64,
    /// `trainable / model_parameters`.
    pub trainable_fraction: f64,
    pub steps: usize,
    pub final_validation_loss: f64,
    pub final_validation_perplexity: f64,
    /// Wall time of the run, validation included.
    pub seconds: f64,
    /// Training tokens per second over the optimizer steps alone.
    pub train_tokens_per_second: f64,
}

/// One thing that happened during a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A stage starts: the model is converted and a fresh optimizer made.
    StageStart {
        method: String,
        stage: usize,
        step: usize,
        trainable: u64,
        model_parameters: u64,
    },
    /// One optimizer step.
    Train {
        method: String,
        stage: usize,
        step: usize,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        tokens_per_second: f64,
    },
    /// A validation pass after `step` optimizer steps.
    Validation {
        method: String,
        stage: usize,
        step: usize,
        loss: f64,
        perplexity: f64,
    },
    /// Effective rank (spec §7) of one projection's dense weight before and
    /// after a stage, and of the update between them.
    EffectiveRank {
        method: String,
        stage: usize,
        layer: usize,
        module: String,
        before: f64,
        after: f64,
        update: f64,
    },
    /// The run is over.
    RunEnd { summary: RunSummary },
}

/// Appends events as JSON lines to a file.
pub struct JsonlWriter {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl JsonlWriter {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path).map_err(TrainError::io(path))?;
        Ok(JsonlWriter {
            file: std::io::BufWriter::new(file),
            path: path.to_path_buf(),
        })
    }

    /// Writes one event as a line.
    pub fn write(&mut self, event: &Event) -> Result<()> {
        let line = serde_json::to_string(event)
            .map_err(|e| TrainError::Data(format!("metric does not serialise: {e}")))?;
        writeln!(self.file, "{line}").map_err(TrainError::io(&self.path))
    }

    /// Flushes buffered lines to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(TrainError::io(&self.path))
    }
}
