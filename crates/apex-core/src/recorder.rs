//! Advantage assessment (spec §2): per-batch unit statistics computed on the
//! device, and score accumulators that fold them in with the four
//! `act_record_method`s.
//!
//! Statistics come from device tensors through [`channel_norms`],
//! [`head_norms`] and [`head_output_norms`]; they are small host vectors (one
//! value per FFN channel or head), so accumulation runs on the host.
//!
//! **Data parallelism.** Every method is linear in the per-batch updates, so
//! each worker accumulates only its own batches and the workers' states are
//! summed once per stage ([`ScoreRecorder::merge`]). This reproduces the
//! reference's per-forward all-reduce exactly: for `rank` and `ma-rank` the
//! reference sums the workers' top/bottom masks, for `avg` and `ma` it averages
//! their norms, which [`ScoreRecorder::scores`] does by dividing by the number
//! of merged workers. The EMA methods need every worker to have folded in the
//! same number of batches (true with the reference's `drop_last` sampler).

use crate::backend::Backend;
use crate::error::{ApexError, Result};
use crate::layout::MatView;
use crate::model_config::ModelConfig;
use crate::ops::{dims2, download_f64, full, matmul, zero};
use crate::selection::unit_k;
use crate::settings::{ApexSettings, RecordMethod};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Decay of the `ma` and `ma-rank` EMAs (spec §2.2).
const EMA_DECAY: f64 = 0.9;

/// The score accumulator of one layer and module kind (n units).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecorder {
    method: RecordMethod,
    k: usize,
    state: Vec<f64>,
    updates: u64,
    workers: u64,
}

impl ScoreRecorder {
    /// A zeroed accumulator over `units` units. `k` is the top/bottom count of
    /// the rank methods, k_rec = max(1, ⌊n·ρ/2^m⌋) (see [`unit_k`]).
    pub fn new(method: RecordMethod, units: usize, k: usize) -> Result<Self> {
        if k > units {
            return Err(ApexError::config(
                "recorder.k",
                format!("k = {k} exceeds the {units} recorded units"),
            ));
        }
        Ok(ScoreRecorder {
            method,
            k,
            state: vec![0.0; units],
            updates: 0,
            workers: 1,
        })
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// True for a recorder over zero units.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// The accumulation method.
    pub fn method(&self) -> RecordMethod {
        self.method
    }

    /// Per-batch updates folded in by each worker.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Folds in one batch's statistic `a` (length n, finite).
    ///
    /// Top-k and bottom-k break ties by index (§0.4): top takes the larger
    /// score then the smaller index, bottom the smaller score then the smaller
    /// index. If 2k > n the two sets overlap and the overlap cancels, as in
    /// the reference.
    pub fn update(&mut self, a: &[f64]) -> Result<()> {
        if a.len() != self.state.len() {
            return Err(ApexError::shape(
                "recorder update",
                &[self.state.len()],
                &[a.len()],
            ));
        }
        if let Some(index) = a.iter().position(|v| !v.is_finite()) {
            return Err(ApexError::NonFinite {
                what: "recorder statistic".into(),
                index,
            });
        }
        match self.method {
            RecordMethod::Avg => self.state.iter_mut().zip(a).for_each(|(s, &v)| *s += v),
            RecordMethod::Ma => self
                .state
                .iter_mut()
                .zip(a)
                .for_each(|(s, &v)| *s = EMA_DECAY * *s + (1.0 - EMA_DECAY) * v),
            RecordMethod::Rank | RecordMethod::MaRank => {
                let delta = rank_delta(a, self.k);
                if self.method == RecordMethod::Rank {
                    self.state.iter_mut().zip(delta).for_each(|(s, d)| *s += d);
                } else {
                    self.state
                        .iter_mut()
                        .zip(delta)
                        .for_each(|(s, d)| *s = EMA_DECAY * *s + (1.0 - EMA_DECAY) * d);
                }
            }
        }
        self.updates += 1;
        Ok(())
    }

    /// Adds another worker's accumulator of the same layer and module.
    ///
    /// Fails when the method, k or size differ, or, for `ma`/`ma-rank`, when
    /// the workers folded in different numbers of batches (the EMA sum is only
    /// the reference's all-reduced EMA when the step counts agree).
    pub fn merge(&mut self, other: &ScoreRecorder) -> Result<()> {
        if (self.method, self.k) != (other.method, other.k) {
            return Err(ApexError::config(
                "recorder.merge",
                format!(
                    "cannot merge {:?} (k = {}) with {:?} (k = {})",
                    self.method, self.k, other.method, other.k
                ),
            ));
        }
        if self.state.len() != other.state.len() {
            return Err(ApexError::shape(
                "recorder merge",
                &[self.state.len()],
                &[other.state.len()],
            ));
        }
        let ema = matches!(self.method, RecordMethod::Ma | RecordMethod::MaRank);
        if ema && self.updates != other.updates {
            return Err(ApexError::config(
                "recorder.merge",
                format!(
                    "EMA workers folded in {} and {} batches; they must agree",
                    self.updates, other.updates
                ),
            ));
        }
        self.state
            .iter_mut()
            .zip(&other.state)
            .for_each(|(s, &o)| *s += o);
        self.updates = self.updates.max(other.updates);
        self.workers += other.workers;
        Ok(())
    }

    /// The scores to select from: the summed state, divided by the number of
    /// merged workers for `avg` and `ma` (they average norms across workers).
    pub fn scores(&self) -> Vec<f64> {
        match self.method {
            RecordMethod::Rank | RecordMethod::MaRank => self.state.clone(),
            RecordMethod::Avg | RecordMethod::Ma => {
                let workers = self.workers as f64;
                self.state.iter().map(|s| s / workers).collect()
            }
        }
    }

    /// Zeroes the accumulator with a new k (scores are reset after every
    /// selection, §0.6).
    pub fn reset(&mut self, k: usize) -> Result<()> {
        *self = ScoreRecorder::new(self.method, self.state.len(), k)?;
        Ok(())
    }
}

/// `1[j ∈ TopK(a)] − 1[j ∈ BottomK(a)]`, ties broken by index.
fn rank_delta(a: &[f64], k: usize) -> Vec<f64> {
    let mut by_score: Vec<usize> = (0..a.len()).collect();
    // Ascending score, then ascending index: the first k are BottomK.
    by_score.sort_by(|&i, &j| a[i].total_cmp(&a[j]).then(i.cmp(&j)));
    let mut delta = vec![0.0; a.len()];
    for &j in &by_score[..k] {
        delta[j] -= 1.0;
    }
    // TopK: descending score, then ascending index.
    by_score.sort_by(|&i, &j| match a[j].total_cmp(&a[i]) {
        Ordering::Equal => i.cmp(&j),
        other => other,
    });
    for &j in &by_score[..k] {
        delta[j] += 1.0;
    }
    delta
}

/// The scores of a whole model: one FFN and one head vector per layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelScores {
    /// L vectors of N channel scores.
    pub ffn: Vec<Vec<f64>>,
    /// L vectors of H query-head scores (groups are scored at selection).
    pub heads: Vec<Vec<f64>>,
}

/// All recorders of a model: per layer one over the N FFN channels and one
/// over the H query heads.
///
/// Heads are recorded per query head with k_rec over H, as in the reference;
/// the KV-group score is the sum of its heads' scores (§0.3), formed at
/// selection. For `avg` and `ma` that equals recording the group sums.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecorder {
    /// One recorder per layer over the FFN channels.
    pub ffn: Vec<ScoreRecorder>,
    /// One recorder per layer over the query heads.
    pub heads: Vec<ScoreRecorder>,
}

impl ModelRecorder {
    /// Zeroed recorders for stage counter `m` (k_rec = max(1, ⌊n·ρ/2^m⌋)).
    pub fn new(settings: &ApexSettings, config: &ModelConfig, m: u32) -> Result<Self> {
        let (ffn_units, heads) = (config.intermediate_size, config.num_attention_heads);
        let ffn_k = unit_k(ffn_units, settings.u_ratio, m);
        let head_k = unit_k(heads, settings.v_ratio, m);
        let layers = config.num_hidden_layers;
        Ok(ModelRecorder {
            ffn: (0..layers)
                .map(|_| ScoreRecorder::new(settings.record_method, ffn_units, ffn_k))
                .collect::<Result<_>>()?,
            heads: (0..layers)
                .map(|_| ScoreRecorder::new(settings.record_method, heads, head_k))
                .collect::<Result<_>>()?,
        })
    }

    /// Adds another worker's recorders, layer by layer.
    pub fn merge(&mut self, other: &ModelRecorder) -> Result<()> {
        if (self.ffn.len(), self.heads.len()) != (other.ffn.len(), other.heads.len()) {
            return Err(ApexError::shape(
                "model recorder merge",
                &[self.ffn.len(), self.heads.len()],
                &[other.ffn.len(), other.heads.len()],
            ));
        }
        for (mine, theirs) in self.ffn.iter_mut().zip(&other.ffn) {
            mine.merge(theirs)?;
        }
        for (mine, theirs) in self.heads.iter_mut().zip(&other.heads) {
            mine.merge(theirs)?;
        }
        Ok(())
    }

    /// The current scores of every layer.
    pub fn scores(&self) -> ModelScores {
        ModelScores {
            ffn: self.ffn.iter().map(ScoreRecorder::scores).collect(),
            heads: self.heads.iter().map(ScoreRecorder::scores).collect(),
        }
    }
}

/// Per-column Σ x² over the valid rows of a 2-D tensor (all rows for `None`).
fn masked_column_squares<B: Backend>(
    backend: &B,
    x: &B::Tensor,
    valid_rows: Option<&[bool]>,
    op: &'static str,
) -> Result<Vec<f64>> {
    let (rows, cols) = dims2(backend, x, op)?;
    let gathered;
    let source = match valid_rows {
        Some(mask) if mask.len() != rows => {
            return Err(ApexError::shape(op, &[rows], &[mask.len()]));
        }
        Some(mask) if mask.contains(&false) => {
            let index: Vec<usize> = (0..rows).filter(|&r| mask[r]).collect();
            gathered = backend.gather_rows(x, &index)?;
            &gathered
        }
        _ => x,
    };
    let view = full(backend, source, op)?;
    let mut sums = backend.zeros(&[cols])?;
    backend.column_dot(source, view, source, view, zero::<B>(), &mut sums, 0)?;
    download_f64(backend, &sums)
}

/// FFN channel statistic (spec §2.1): a_j = ‖G[:, j]‖₂ over the valid rows of
/// G = SiLU(X W_gᵀ), shape (B·T) × N with the batch flattened into rows.
///
/// `valid_rows` (length B·T) masks padding; `None` counts every row (the
/// reference, see [`ApexSettings::row_mask`]).
pub fn channel_norms<B: Backend>(
    backend: &B,
    silu_gate: &B::Tensor,
    valid_rows: Option<&[bool]>,
) -> Result<Vec<f64>> {
    let squares = masked_column_squares(backend, silu_gate, valid_rows, "channel_norms")?;
    Ok(squares.into_iter().map(f64::sqrt).collect())
}

/// Per-head Frobenius norm over the valid rows of a (B·T) × (H·w) matrix whose
/// columns [h·w, (h+1)·w) belong to head h.
///
/// * A1 (`ContextNorm`, the default statistic): the attention context before
///   `o_proj`, w = d_h: a_h = ‖O[:, h, :]‖_F (spec §2.3).
/// * A3 (`AttentionProbs`): the attention probabilities with the query tokens
///   in rows and head h's key distribution in columns [h·T, (h+1)·T): a_h is
///   large for heads that attend sharply.
pub fn head_norms<B: Backend>(
    backend: &B,
    per_head_columns: &B::Tensor,
    num_heads: usize,
    valid_rows: Option<&[bool]>,
) -> Result<Vec<f64>> {
    const OP: &str = "head_norms";
    let (_, cols) = dims2(backend, per_head_columns, OP)?;
    if num_heads == 0 || cols % num_heads != 0 {
        return Err(ApexError::config(
            "num_heads",
            format!("{cols} columns do not split into {num_heads} heads"),
        ));
    }
    let squares = masked_column_squares(backend, per_head_columns, valid_rows, OP)?;
    Ok(squares
        .chunks(cols / num_heads)
        .map(|head| head.iter().sum::<f64>().sqrt())
        .collect())
}

/// A2 (`OutputNorm`): a_h = ‖O_h W_o[:, h]ᵀ‖_F over the valid rows, the norm of
/// head h's contribution to the `o_proj` output. `context` is (B·T) × (H·d_h),
/// `o_proj` is d × (H·d_h). One (B·T)×d_h by d_h×d product per head.
pub fn head_output_norms<B: Backend>(
    backend: &B,
    context: &B::Tensor,
    o_proj: &B::Tensor,
    num_heads: usize,
    valid_rows: Option<&[bool]>,
) -> Result<Vec<f64>> {
    const OP: &str = "head_output_norms";
    let (rows, width) = dims2(backend, context, OP)?;
    let (out, o_width) = dims2(backend, o_proj, OP)?;
    if o_width != width {
        return Err(ApexError::shape(OP, &[out, width], &[out, o_width]));
    }
    if num_heads == 0 || width % num_heads != 0 {
        return Err(ApexError::config(
            "num_heads",
            format!("{width} columns do not split into {num_heads} heads"),
        ));
    }
    let head_dim = width / num_heads;
    let gathered;
    let (source, source_rows) = match valid_rows {
        Some(mask) if mask.len() != rows => {
            return Err(ApexError::shape(OP, &[rows], &[mask.len()]));
        }
        Some(mask) if mask.contains(&false) => {
            let index: Vec<usize> = (0..rows).filter(|&r| mask[r]).collect();
            gathered = backend.gather_rows(context, &index)?;
            (&gathered, index.len())
        }
        _ => (context, rows),
    };
    let context_view = MatView::full(source_rows, width);
    let weight_view = MatView::full(out, width);
    (0..num_heads)
        .map(|h| {
            let cols = h * head_dim..(h + 1) * head_dim;
            let contribution = matmul(
                backend,
                source,
                context_view.columns(cols.clone()),
                o_proj,
                weight_view.columns(cols).t(),
            )?;
            let squares = masked_column_squares(backend, &contribution, None, OP)?;
            Ok(squares.iter().sum::<f64>().sqrt())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
        }
    }

    /// Two batches over 4 units, k = 1:
    /// a1 = [5, 4, 2, √5]: top {0}, bottom {2};
    /// a2 = [1, 3, 2, 0]:  top {1}, bottom {3}.
    fn feed(method: RecordMethod) -> ScoreRecorder {
        let mut recorder = ScoreRecorder::new(method, 4, 1).unwrap();
        recorder.update(&[5.0, 4.0, 2.0, 5f64.sqrt()]).unwrap();
        recorder.update(&[1.0, 3.0, 2.0, 0.0]).unwrap();
        recorder
    }

    #[test]
    fn four_methods_match_hand_computed_scores() {
        close(&feed(RecordMethod::Rank).scores(), &[1.0, 1.0, -1.0, -1.0]);
        // 0.9·(0.1·[1,0,−1,0]) + 0.1·[0,1,0,−1]
        close(
            &feed(RecordMethod::MaRank).scores(),
            &[0.09, 0.1, -0.09, -0.1],
        );
        close(
            &feed(RecordMethod::Avg).scores(),
            &[6.0, 7.0, 4.0, 5f64.sqrt()],
        );
        // 0.9·(0.1·a1) + 0.1·a2
        close(
            &feed(RecordMethod::Ma).scores(),
            &[0.55, 0.66, 0.38, 0.09 * 5f64.sqrt()],
        );
    }

    #[test]
    fn rank_ties_go_to_the_lower_index() {
        let mut recorder = ScoreRecorder::new(RecordMethod::Rank, 4, 1).unwrap();
        recorder.update(&[2.0, 2.0, 1.0, 1.0]).unwrap();
        close(&recorder.scores(), &[1.0, 0.0, -1.0, 0.0]);
    }

    #[test]
    fn merged_workers_equal_the_all_reduced_reference_update() {
        // Worker 1 sees a1 = [5, 4, 2, √5] (top 0, bottom 2), worker 2 sees
        // b = [0, 6, 1, 3] (top 1, bottom 0).
        let a1 = [5.0, 4.0, 2.0, 5f64.sqrt()];
        let b = [0.0, 6.0, 1.0, 3.0];
        let merged = |method| {
            let mut w1 = ScoreRecorder::new(method, 4, 1).unwrap();
            let mut w2 = ScoreRecorder::new(method, 4, 1).unwrap();
            w1.update(&a1).unwrap();
            w2.update(&b).unwrap();
            w1.merge(&w2).unwrap();
            w1.scores()
        };
        // rank: t = 1[0] + 1[1], b = 1[2] + 1[0].
        close(&merged(RecordMethod::Rank), &[0.0, 1.0, -1.0, 0.0]);
        close(&merged(RecordMethod::MaRank), &[0.0, 0.1, -0.1, 0.0]);
        // avg: (a1 + b)/2; ma: 0.1·(a1 + b)/2.
        let mean_last = (5f64.sqrt() + 3.0) / 2.0;
        close(&merged(RecordMethod::Avg), &[2.5, 5.0, 1.5, mean_last]);
        close(
            &merged(RecordMethod::Ma),
            &[0.25, 0.5, 0.15, 0.1 * mean_last],
        );
    }

    #[test]
    fn mismatched_merges_and_inputs_are_errors() {
        let mut ma = feed(RecordMethod::Ma);
        let mut short = ScoreRecorder::new(RecordMethod::Ma, 4, 1).unwrap();
        short.update(&[1.0; 4]).unwrap();
        assert!(matches!(
            ma.merge(&short),
            Err(ApexError::InvalidConfig { .. })
        ));
        assert!(ma.merge(&feed(RecordMethod::Rank)).is_err());
        assert!(matches!(
            ma.update(&[1.0, 2.0]),
            Err(ApexError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            ma.update(&[1.0, f64::NAN, 0.0, 0.0]),
            Err(ApexError::NonFinite { index: 1, .. })
        ));
        assert!(ScoreRecorder::new(RecordMethod::Rank, 2, 3).is_err());
    }

    #[test]
    fn model_recorders_use_k_of_the_stage_counter() {
        let config = ModelConfig::from_json_str(
            r#"{"hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 4,
                "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 10}"#,
            "t",
        )
        .unwrap();
        let settings = ApexSettings {
            u_ratio: 0.5,
            v_ratio: 0.5,
            ..ApexSettings::reference()
        };
        let ramp: Vec<f64> = (0..16).map(f64::from).collect();
        // m = 1: k = ⌊16·0.5/2⌋ = 4 channels, ⌊4·0.5/2⌋ = 1 head;
        // m = 2: k = 2 channels, max(1, ⌊0.5⌋) = 1 head.
        for (m, ffn_k) in [(1, 4), (2, 2)] {
            let mut recorder = ModelRecorder::new(&settings, &config, m).unwrap();
            recorder.ffn[1].update(&ramp).unwrap();
            recorder.heads[0].update(&[0.0, 3.0, 1.0, 2.0]).unwrap();
            let scores = recorder.scores();
            let mut want = vec![0.0; 16];
            want[..ffn_k].fill(-1.0);
            want[16 - ffn_k..].fill(1.0);
            assert_eq!(scores.ffn[1], want);
            assert_eq!(scores.ffn[0], vec![0.0; 16]);
            assert_eq!(scores.heads[0], vec![-1.0, 1.0, 0.0, 0.0]);
        }
    }

    #[test]
    fn reset_zeroes_the_state() {
        let mut recorder = feed(RecordMethod::Avg);
        recorder.reset(2).unwrap();
        assert_eq!(recorder.scores(), vec![0.0; 4]);
        assert_eq!(recorder.updates(), 0);
    }
}
