//! Selection (spec §3 with the §0 decisions): per layer the advantageous set A
//! (top-k), the disadvantageous set D (bottom-k of C \ A) and the tuned-only
//! extras E, the k schedule with exclusion of earlier D sets, the cross-layer
//! head budget, and the two ablations.
//!
//! **Units.** FFN units are channels (n = N). Attention units are KV groups
//! (n = H_kv, §0.3): a group's score is the sum of its query heads' scores,
//! and the ratios apply to groups, k = max(1, ⌊H_kv·ρ_attn/2^m⌋) and
//! t = ⌊H_kv·τ_attn⌋. For MHA a group is a head and every number equals the
//! reference's.
//!
//! **Determinism (§0.4).** A is ordered by descending score, D and E by
//! ascending score, ties by ascending index; D is drawn from C \ A, so A ∩ D =
//! ∅ even when every score is equal. Random choices (the `random_assessment`
//! shuffle, the budget rule's layers) use `rand`'s `StdRng` seeded from
//! [`ApexSettings::seed`], the selection number, the module kind and the
//! layer, so every worker makes the same choice without communicating.

use crate::error::{ApexError, Result};
use crate::model_config::ModelConfig;
use crate::permute::LayoutPlan;
use crate::recorder::ModelScores;
use crate::settings::{ApexSettings, KSchedule};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::cmp::Ordering;

/// k = max(1, ⌊n·ρ/2^m⌋) when ρ > 0, else 0 (spec §0.7): the per-layer size of
/// A and of D, and the recorders' top/bottom count. The floor of the f64
/// product matches the reference's Python `int(n * ratio / 2**m)`.
pub fn unit_k(units: usize, ratio: f64, m: u32) -> usize {
    if ratio <= 0.0 || units == 0 {
        return 0;
    }
    let scaled = units as f64 * ratio / 2f64.powi(m as i32);
    (scaled.floor() as usize).max(1)
}

/// ⌊n·τ⌋, the units a layer tunes directly in total, or `None` without τ.
pub fn tuned_units(units: usize, tuned_ratio: Option<f64>) -> Option<usize> {
    tuned_ratio.map(|tau| (units as f64 * tau).floor() as usize)
}

/// Sums each KV group's query-head scores (§0.3): heads [g·r, (g+1)·r) form
/// group g.
pub fn group_scores(head_scores: &[f64], group_size: usize) -> Result<Vec<f64>> {
    if group_size == 0 || head_scores.len() % group_size != 0 {
        return Err(ApexError::config(
            "group_size",
            format!(
                "{} head scores do not form groups of {group_size}",
                head_scores.len()
            ),
        ));
    }
    Ok(head_scores
        .chunks(group_size)
        .map(|group| group.iter().sum())
        .collect())
}

/// How many units each layer mixes under the cross-layer head budget (§3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadBudget {
    /// Every layer uses k units.
    Uniform { k: usize },
    /// `layers` layers, chosen at random, use k = 1; the others mix nothing.
    Sparse { layers: usize },
}

/// The head budget rule: B = n·L·ρ − Σ|O| (not divided by 2^m, as in the
/// reference). If B/L < 2, ⌊B/2⌋ layers mix one unit each; otherwise every
/// layer uses [`unit_k`].
pub fn head_budget(
    units: usize,
    layers: usize,
    ratio: f64,
    m: u32,
    excluded_total: usize,
) -> HeadBudget {
    let budget = (units * layers) as f64 * ratio - excluded_total as f64;
    if budget / (layers as f64) < 2.0 {
        let chosen = (budget / 2.0).floor().max(0.0) as usize;
        HeadBudget::Sparse {
            layers: chosen.min(layers),
        }
    } else {
        HeadBudget::Uniform {
            k: unit_k(units, ratio, m),
        }
    }
}

/// The sets chosen in one layer, in the layer's current index space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSelection {
    /// D: k units, ascending score.
    pub disadvantageous: Vec<usize>,
    /// A: k units, descending score.
    pub advantageous: Vec<usize>,
    /// O: earlier D sets, tuned directly this stage (only with τ set).
    pub carried: Vec<usize>,
    /// E: the next lowest-scoring candidates, ascending score.
    pub extras: Vec<usize>,
}

impl LayerSelection {
    /// k = |D| = |A|.
    pub fn k(&self) -> usize {
        self.disadvantageous.len()
    }

    /// t = 2k + |O| + |E|, the units tuned directly.
    pub fn tuned(&self) -> usize {
        2 * self.k() + self.carried.len() + self.extras.len()
    }

    /// The tuned-only list O ++ E (old first, §3.2).
    pub fn tuned_only(&self) -> Vec<usize> {
        self.carried.iter().chain(&self.extras).copied().collect()
    }

    /// The layout [D | A | O ++ E | rest] over `units` units.
    pub fn layout(&self, units: usize) -> Result<LayoutPlan> {
        LayoutPlan::new(
            &self.disadvantageous,
            &self.advantageous,
            &self.tuned_only(),
            units,
        )
    }
}

/// Selects one layer (spec §3.2).
///
/// * C = all units minus `excluded` (O).
/// * A = the k highest scores of C; D = the k lowest of C \ A. If C holds
///   fewer than 2k units, k shrinks to |C|/2 (A and D must stay equal).
/// * With `tuned_total` = ⌊n·τ⌋: E = the next ⌊n·τ⌋ − 2k − |O| lowest of
///   C \ (A ∪ D) (clamped at 0, §9.17), and O is tuned too.
/// * `reverse` swaps A and D (ablation).
pub fn select_layer(
    scores: &[f64],
    k: usize,
    tuned_total: Option<usize>,
    excluded: &[usize],
    reverse: bool,
) -> Result<LayerSelection> {
    let units = scores.len();
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(ApexError::NonFinite {
            what: "selection scores".into(),
            index,
        });
    }
    let mut is_excluded = vec![false; units];
    for &unit in excluded {
        if unit >= units || is_excluded[unit] {
            return Err(ApexError::InvalidIndex {
                op: "excluded units",
                index: unit,
                bound: units,
            });
        }
        is_excluded[unit] = true;
    }
    let candidates: Vec<usize> = (0..units).filter(|&u| !is_excluded[u]).collect();
    let k = k.min(candidates.len() / 2);

    let mut descending = candidates.clone();
    descending.sort_by(|&i, &j| match scores[j].total_cmp(&scores[i]) {
        Ordering::Equal => i.cmp(&j),
        other => other,
    });
    let top = descending[..k].to_vec();

    let mut ascending: Vec<usize> = descending[k..].to_vec();
    ascending.sort_by(|&i, &j| scores[i].total_cmp(&scores[j]).then(i.cmp(&j)));
    let bottom = ascending[..k].to_vec();

    let (carried, extras) = match tuned_total {
        Some(total) => {
            let wanted = total.saturating_sub(2 * k + excluded.len());
            let available = ascending.len() - k;
            (
                excluded.to_vec(),
                ascending[k..k + wanted.min(available)].to_vec(),
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    let (advantageous, disadvantageous) = if reverse {
        (bottom, top)
    } else {
        (top, bottom)
    };
    Ok(LayerSelection {
        disadvantageous,
        advantageous,
        carried,
        extras,
    })
}

/// One selection of a whole model: a layout per layer for the FFN channels and
/// for the attention KV groups, in the model's current index space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSelection {
    /// The stage counter m this selection used.
    pub m: u32,
    /// Per layer, over the N FFN channels.
    pub ffn: Vec<LayoutPlan>,
    /// Per layer, over the H_kv KV groups.
    pub attention: Vec<LayoutPlan>,
}

/// Selection across stages: counts selections and, under
/// [`KSchedule::Halving`], carries the earlier D sets O into each new index
/// space (§3.5: O ← inverse_order(O ∪ D)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectionState {
    completed: u32,
    excluded_ffn: Vec<Vec<usize>>,
    excluded_attention: Vec<Vec<usize>>,
}

/// Distinguishes the random streams of the FFN shuffle, the head shuffle and
/// the budget rule.
#[derive(Clone, Copy)]
enum Stream {
    FfnShuffle = 1,
    HeadShuffle = 2,
    HeadBudget = 3,
}

/// SplitMix64 finaliser: decorrelates seeds that differ in a few bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rng_for(seed: u64, selection: u32, stream: Stream, layer: usize) -> StdRng {
    let key = [u64::from(selection), stream as u64, layer as u64]
        .into_iter()
        .fold(mix(seed), |acc, part| mix(acc ^ part));
    StdRng::seed_from_u64(key)
}

fn check_scores(
    scores: &[Vec<f64>],
    layers: usize,
    units: usize,
    what: &'static str,
) -> Result<()> {
    if scores.len() != layers {
        return Err(ApexError::shape(what, &[layers, units], &[scores.len()]));
    }
    match scores.iter().find(|layer| layer.len() != units) {
        Some(layer) => Err(ApexError::shape(
            what,
            &[layers, units],
            &[layers, layer.len()],
        )),
        None => Ok(()),
    }
}

impl SelectionState {
    /// The state before the first selection of a model with `layers` layers.
    pub fn new(layers: usize) -> Self {
        SelectionState {
            completed: 0,
            excluded_ffn: vec![Vec::new(); layers],
            excluded_attention: vec![Vec::new(); layers],
        }
    }

    /// Selections made so far.
    pub fn completed(&self) -> u32 {
        self.completed
    }

    /// The stage counter m of the next selection: 1 under `constant`, s for
    /// the s-th selection under `halving`. Recorders gathering the scores for
    /// that selection use the same m (§3.1).
    pub fn next_m(&self, schedule: KSchedule) -> u32 {
        match schedule {
            KSchedule::Constant => 1,
            KSchedule::Halving => self.completed + 1,
        }
    }

    /// Per layer, the FFN channels excluded from the next selection (O).
    pub fn excluded_ffn(&self) -> &[Vec<usize>] {
        &self.excluded_ffn
    }

    /// Per layer, the KV groups excluded from the next selection (O).
    pub fn excluded_attention(&self) -> &[Vec<usize>] {
        &self.excluded_attention
    }

    /// Selects A, D and the tuned-only units of every layer from `scores`
    /// (recorded in the model's current index space) and returns the layouts
    /// to permute the model with. Under `halving`, the new D sets join O,
    /// remapped into the permuted index space.
    pub fn select(
        &mut self,
        settings: &ApexSettings,
        config: &ModelConfig,
        scores: &ModelScores,
    ) -> Result<ModelSelection> {
        settings.validate()?;
        config.validate()?;
        let layers = config.num_hidden_layers;
        let (channels, heads, groups) = (
            config.intermediate_size,
            config.num_attention_heads,
            config.kv_heads(),
        );
        check_scores(&scores.ffn, layers, channels, "ffn scores")?;
        check_scores(&scores.heads, layers, heads, "head scores")?;
        if self.excluded_ffn.len() != layers {
            return Err(ApexError::shape(
                "selection state",
                &[layers],
                &[self.excluded_ffn.len()],
            ));
        }
        let m = self.next_m(settings.k_schedule);
        let selection = self.completed + 1;
        let shuffled = |mut s: Vec<f64>, stream, layer| {
            if settings.random_assessment {
                s.shuffle(&mut rng_for(settings.seed, selection, stream, layer));
            }
            s
        };

        let ffn_k = unit_k(channels, settings.u_ratio, m);
        let ffn_tuned = tuned_units(channels, settings.tuned_ffn_ratio);
        let ffn = (0..layers)
            .map(|layer| {
                let s = shuffled(scores.ffn[layer].clone(), Stream::FfnShuffle, layer);
                select_layer(
                    &s,
                    ffn_k,
                    ffn_tuned,
                    &self.excluded_ffn[layer],
                    settings.reverse,
                )?
                .layout(channels)
            })
            .collect::<Result<Vec<_>>>()?;

        let excluded_total = self.excluded_attention.iter().map(Vec::len).sum();
        let layer_k: Vec<usize> =
            match head_budget(groups, layers, settings.v_ratio, m, excluded_total) {
                HeadBudget::Uniform { k } => vec![k; layers],
                HeadBudget::Sparse { layers: chosen } => {
                    let mut rng = rng_for(settings.seed, selection, Stream::HeadBudget, 0);
                    let mut k = vec![0; layers];
                    for layer in rand::seq::index::sample(&mut rng, layers, chosen) {
                        k[layer] = 1;
                    }
                    k
                }
            };
        let attention_tuned = tuned_units(groups, settings.tuned_attn_ratio);
        let attention = (0..layers)
            .map(|layer| {
                let g = group_scores(&scores.heads[layer], config.group_size())?;
                let g = shuffled(g, Stream::HeadShuffle, layer);
                select_layer(
                    &g,
                    layer_k[layer],
                    attention_tuned,
                    &self.excluded_attention[layer],
                    false,
                )?
                .layout(groups)
            })
            .collect::<Result<Vec<_>>>()?;

        if settings.k_schedule == KSchedule::Halving {
            carry_forward(&mut self.excluded_ffn, &ffn)?;
            carry_forward(&mut self.excluded_attention, &attention)?;
        }
        self.completed = selection;
        Ok(ModelSelection { m, ffn, attention })
    }
}

/// O ← inverse_order(O ∪ D) per layer, order-preserving (old first).
fn carry_forward(excluded: &mut [Vec<usize>], plans: &[LayoutPlan]) -> Result<()> {
    for (old, plan) in excluded.iter_mut().zip(plans) {
        let mut units = std::mem::take(old);
        units.extend(
            plan.disadvantageous()
                .iter()
                .filter(|&&d| !units.contains(&d))
                .copied()
                .collect::<Vec<_>>(),
        );
        *old = plan.remap(&units)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_function_uses_max_one_and_floor() {
        assert_eq!(unit_k(11008, 0.375, 1), 2064);
        assert_eq!(unit_k(32, 0.375, 1), 6);
        assert_eq!(unit_k(32, 0.375, 2), 3);
        assert_eq!(unit_k(3, 0.375, 1), 1);
        assert_eq!(unit_k(3, 0.0, 1), 0);
        assert_eq!(tuned_units(11008, Some(0.465)), Some(5118));
        assert_eq!(tuned_units(32, Some(0.5625)), Some(18));
        assert_eq!(tuned_units(32, None), None);
    }

    #[test]
    fn group_score_is_the_sum_of_its_heads() {
        let g = group_scores(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3).unwrap();
        assert_eq!(g, vec![6.0, 15.0]);
        assert!(group_scores(&[1.0, 2.0], 3).is_err());
    }

    #[test]
    fn budget_rule_switches_below_two_units_per_layer() {
        // 3 groups · 30 layers · 0.375 = 33.75 → 1.125 per layer → ⌊16.875⌋ layers.
        assert_eq!(
            head_budget(3, 30, 0.375, 1, 0),
            HeadBudget::Sparse { layers: 16 }
        );
        // 32 · 32 · 0.375 = 384 → 12 per layer.
        assert_eq!(
            head_budget(32, 32, 0.375, 1, 0),
            HeadBudget::Uniform { k: 6 }
        );
        assert_eq!(
            head_budget(4, 2, 0.5, 1, 10),
            HeadBudget::Sparse { layers: 0 }
        );
    }

    #[test]
    fn select_layer_orders_and_sizes_the_sets() {
        // Scores of units 0..8; ⌊8·0.75⌋ = 6 tuned, k = 2.
        let s = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4];
        let sel = select_layer(&s, 2, Some(6), &[], false).unwrap();
        assert_eq!(sel.advantageous, vec![2, 6]);
        assert_eq!(sel.disadvantageous, vec![1, 5]);
        assert_eq!(sel.extras, vec![3, 7]);
        assert_eq!(sel.tuned(), 6);
        let rev = select_layer(&s, 2, Some(6), &[], true).unwrap();
        assert_eq!(rev.advantageous, vec![1, 5]);
        assert_eq!(rev.disadvantageous, vec![2, 6]);
        assert_eq!(rev.extras, vec![3, 7]);
    }

    #[test]
    fn excluded_units_are_skipped_and_carried() {
        let s = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4];
        let sel = select_layer(&s, 1, Some(6), &[1, 2], false).unwrap();
        assert_eq!(sel.advantageous, vec![6]);
        assert_eq!(sel.disadvantageous, vec![5]);
        assert_eq!(sel.carried, vec![1, 2]);
        assert_eq!(sel.extras, vec![3, 7]);
        let without_tau = select_layer(&s, 1, None, &[1, 2], false).unwrap();
        assert!(without_tau.carried.is_empty() && without_tau.extras.is_empty());
    }

    #[test]
    fn k_shrinks_to_half_the_candidates_and_e_clamps() {
        let s = [3.0, 1.0, 2.0];
        let sel = select_layer(&s, 2, Some(1), &[], false).unwrap();
        assert_eq!(
            (sel.advantageous.clone(), sel.disadvantageous.clone()),
            (vec![0], vec![1])
        );
        assert!(sel.extras.is_empty());
    }

    #[test]
    fn bad_scores_and_exclusions_are_errors() {
        assert!(matches!(
            select_layer(&[1.0, f64::NAN], 1, None, &[], false),
            Err(ApexError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            select_layer(&[1.0, 2.0], 1, None, &[2], false),
            Err(ApexError::InvalidIndex { index: 2, .. })
        ));
        assert!(select_layer(&[1.0, 2.0], 1, None, &[0, 0], false).is_err());
    }
}
