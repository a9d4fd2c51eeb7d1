//! APEX settings: the selection ratios, the recording and selection options
//! and the ablations, with the shipped script as a preset (spec §6.4).
//!
//! Field names follow the reference's command-line flags (`u_ratio`,
//! `v_ratio`, `tuned_ffn_ratio`, …) so a run can be compared with the
//! authors' script option by option.

use crate::error::{ApexError, Result};
use crate::monarch::MonarchInit;
use serde::{Deserialize, Serialize};

/// How k evolves over stages (spec §3.1, §0.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KSchedule {
    /// m = 1 at every selection (the shipped script).
    Constant,
    /// m = s at selection s, and earlier D sets are excluded from later
    /// selections and tuned directly (the reference's `track_old_min_values`).
    Halving,
}

/// How per-batch statistics are folded into the scores (spec §2.2,
/// `act_record_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordMethod {
    /// s ← s + (top-k mask − bottom-k mask) (the default and the script's).
    Rank,
    /// s ← s + a.
    Avg,
    /// s ← 0.9·s + 0.1·a.
    Ma,
    /// s ← 0.9·s + 0.1·(top-k mask − bottom-k mask).
    MaRank,
}

/// The per-head statistic a_h fed to the head recorders (spec §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadStatistic {
    /// A1 (default): Frobenius norm of the head's context vectors before
    /// `o_proj`; see [`crate::recorder::head_norms`].
    ContextNorm,
    /// A2: Frobenius norm of the head's contribution after `o_proj`; see
    /// [`crate::recorder::head_output_norms`].
    OutputNorm,
    /// A3: Frobenius norm of the head's attention probabilities over valid
    /// queries; see [`crate::recorder::head_norms`].
    AttentionProbs,
}

/// Everything that decides which units APEX selects and which parameters it
/// trains.
///
/// Ratios are fractions of the units of one layer: FFN channels, or KV groups
/// for attention (spec §0.3; for MHA a group is one head).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApexSettings {
    /// ρ_ffn: k_f = max(1, ⌊N·ρ_ffn/2^m⌋) FFN channels form A and as many D.
    pub u_ratio: f64,
    /// ρ_attn: k = max(1, ⌊H_kv·ρ_attn/2^m⌋) KV groups form A and as many D.
    pub v_ratio: f64,
    /// τ_ffn: ⌊N·τ_ffn⌋ FFN channels per layer are tuned directly; `None`
    /// tunes only D and A.
    pub tuned_ffn_ratio: Option<f64>,
    /// τ_attn: ⌊H_kv·τ_attn⌋ KV groups per layer are tuned directly.
    pub tuned_attn_ratio: Option<f64>,
    /// Constant k, or halving with exclusion of earlier D sets.
    pub k_schedule: KSchedule,
    /// Score accumulation method.
    pub record_method: RecordMethod,
    /// Count padding positions in the statistics (the reference does; the
    /// default masks them, spec §0.5).
    pub count_padding: bool,
    /// Which per-head statistic feeds the head recorders.
    pub head_statistic: HeadStatistic,
    /// Also tune the q and k rows of the selected heads directly.
    pub finetune_qk: bool,
    /// Train the token embedding and the LM head densely.
    pub train_embeddings_and_lm_head: bool,
    /// Train all RMSNorm weights densely.
    pub train_norms: bool,
    /// Ablation: shuffle every score vector (seeded) before selecting.
    pub random_assessment: bool,
    /// Ablation: swap A and D for the FFN (the reference has no head variant).
    pub reverse: bool,
    /// D receives v⊙D + M·A (true), or A mixes with itself (false).
    pub mix_channels: bool,
    /// Monarch initialisation.
    pub init_method: MonarchInit,
    /// Use the largest proper divisor as the Monarch block count.
    pub find_largest_divisor: bool,
    /// The seed every random choice derives from.
    pub seed: u64,
}

impl ApexSettings {
    /// The shipped script `scripts/train_apex_llama2_7b.sh` (spec §6.4):
    /// ρ = 0.375 for both, τ_attn = 0.5625, τ_ffn = 0.465, `rank`, constant k,
    /// `random` init, q/k and embeddings tuned, seed 42. Padding is counted as
    /// in the reference.
    pub fn reference() -> Self {
        ApexSettings {
            u_ratio: 0.375,
            v_ratio: 0.375,
            tuned_ffn_ratio: Some(0.465),
            tuned_attn_ratio: Some(0.5625),
            k_schedule: KSchedule::Constant,
            record_method: RecordMethod::Rank,
            count_padding: true,
            head_statistic: HeadStatistic::ContextNorm,
            finetune_qk: true,
            train_embeddings_and_lm_head: true,
            train_norms: false,
            random_assessment: false,
            reverse: false,
            mix_channels: true,
            init_method: MonarchInit::Random,
            find_largest_divisor: false,
            seed: 42,
        }
    }

    /// The statistics mask to use for a batch: `None` (count every row) when
    /// `count_padding` is set, else the caller's valid-token mask.
    pub fn row_mask<'a>(&self, valid_rows: &'a [bool]) -> Option<&'a [bool]> {
        (!self.count_padding).then_some(valid_rows)
    }

    /// Rejects ratios outside [0, 1] and non-finite values.
    pub fn validate(&self) -> Result<()> {
        let ratios = [
            ("u_ratio", Some(self.u_ratio)),
            ("v_ratio", Some(self.v_ratio)),
            ("tuned_ffn_ratio", self.tuned_ffn_ratio),
            ("tuned_attn_ratio", self.tuned_attn_ratio),
        ];
        for (field, value) in ratios {
            if let Some(value) = value {
                if !(0.0..=1.0).contains(&value) {
                    return Err(ApexError::config(
                        field,
                        format!("{value} is not a fraction in [0, 1]"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Default for ApexSettings {
    /// The reference code's argparse defaults (flags off, `noise` init) with
    /// the project's fixes (padding masked), and the script's ratios, which are
    /// the only validated ones: APEX trains only its own expansion parameters.
    fn default() -> Self {
        ApexSettings {
            count_padding: false,
            finetune_qk: false,
            train_embeddings_and_lm_head: false,
            init_method: MonarchInit::Noise,
            ..ApexSettings::reference()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_differ_where_documented() {
        let reference = ApexSettings::reference();
        let default = ApexSettings::default();
        reference.validate().unwrap();
        default.validate().unwrap();
        assert!(reference.count_padding && !default.count_padding);
        assert!(reference.finetune_qk && !default.finetune_qk);
        assert_eq!(reference.init_method, MonarchInit::Random);
        assert_eq!(default.init_method, MonarchInit::Noise);
    }

    #[test]
    fn out_of_range_and_nan_ratios_are_rejected() {
        for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let settings = ApexSettings {
                tuned_attn_ratio: Some(bad),
                ..ApexSettings::reference()
            };
            assert!(matches!(
                settings.validate(),
                Err(ApexError::InvalidConfig { ref field, .. }) if field == "tuned_attn_ratio"
            ));
        }
    }

    #[test]
    fn count_padding_drops_the_mask() {
        let mask = [true, false];
        assert_eq!(ApexSettings::reference().row_mask(&mask), None);
        assert_eq!(ApexSettings::default().row_mask(&mask), Some(&mask[..]));
    }
}
