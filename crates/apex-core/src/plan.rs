//! The trainable-parameter planner (spec §6.5): from a model config and APEX
//! settings, how many parameters APEX trains per module kind and in total,
//! and which fraction of the model that is.
//!
//! Counted for the first stage (m = 1), which is every stage under the
//! `constant` schedule. Per layer and KV-group unit (§0.3), with k mixed and t
//! tuned units, r = H/H_kv and d_h the head width:
//!
//! | module | `s2` (direct update) | Monarch `blkdiag1/2` | `mixer_vec` | `mixer_scale` |
//! |---|---|---|---|---|
//! | q_proj (with `finetune_qk`) | t·r·d_h × d | | | |
//! | k_proj (with `finetune_qk`) | t·d_h × d | | | |
//! | v_proj | t·d_h × d | 2·b·p², over k·d_h dims | k·d_h | k·d_h |
//! | o_proj | d × t·r·d_h | shared with v_proj | shared | |
//! | gate_proj, up_proj | t_f × d each | | | k_f each |
//! | down_proj | d × t_f | | | |
//!
//! The FFN Monarch and `mixer_vec` (2·b·p² + k_f) are shared by gate, up and
//! down and counted once, on up_proj; o_proj applies v_proj's Monarch and
//! vector to each of its r query-head replicas, so it adds none. Here
//! b = [`find_divisor`] of the mixed width and p = width / b. Embeddings and
//! LM head count once when tied. Biases are never trained by APEX.

use crate::divisor::find_divisor;
use crate::error::Result;
use crate::model_config::ModelConfig;
use crate::selection::{head_budget, tuned_units, unit_k, HeadBudget};
use crate::settings::ApexSettings;
use std::fmt;

/// Where a trainable parameter lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
    /// The token embedding (and, when tied, the LM head).
    EmbedTokens,
    LmHead,
    /// All RMSNorm weights: 2 per layer and the final norm.
    Norms,
}

impl ModuleKind {
    /// The HF module name.
    pub fn name(self) -> &'static str {
        match self {
            ModuleKind::QProj => "q_proj",
            ModuleKind::KProj => "k_proj",
            ModuleKind::VProj => "v_proj",
            ModuleKind::OProj => "o_proj",
            ModuleKind::GateProj => "gate_proj",
            ModuleKind::UpProj => "up_proj",
            ModuleKind::DownProj => "down_proj",
            ModuleKind::EmbedTokens => "embed_tokens",
            ModuleKind::LmHead => "lm_head",
            ModuleKind::Norms => "norms",
        }
    }
}

/// Trainable parameters of one module in one layer, by parameter role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamCounts {
    /// `s2`: the direct update of the tuned rows or columns.
    pub s2: u64,
    /// `blkdiag1` + `blkdiag2`: the Monarch factors.
    pub blkdiag: u64,
    /// `mixer_vec` (v) + `mixer_scale` (c).
    pub mixer: u64,
    /// Dense weights trained whole (embeddings, LM head, norms).
    pub dense: u64,
}

impl ParamCounts {
    /// All roles together.
    pub fn total(&self) -> u64 {
        self.s2 + self.blkdiag + self.mixer + self.dense
    }
}

/// One table row: `layers` layers whose `module` trains `per_layer`
/// parameters each. A module appears in several rows when layers differ
/// (the head budget rule converts only some layers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanRow {
    pub module: ModuleKind,
    pub per_layer: ParamCounts,
    pub layers: usize,
}

impl PlanRow {
    /// `per_layer · layers`.
    pub fn total(&self) -> u64 {
        self.per_layer.total() * self.layers as u64
    }
}

/// What `layers` layers select for one unit kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitPlan {
    /// Layers with these numbers.
    pub layers: usize,
    /// Units per layer (N channels or H_kv groups).
    pub units: usize,
    /// k: units in A, and as many in D.
    pub k: usize,
    /// t: units tuned directly.
    pub tuned: usize,
    /// The mixed width k·(unit width) and its Monarch (blocks, block size);
    /// `None` when nothing is mixed.
    pub monarch: Option<(usize, usize, usize)>,
}

/// The planner's answer: the rows of the table and the totals.
#[derive(Clone, Debug, PartialEq)]
pub struct ParameterPlan {
    pub config: ModelConfig,
    pub settings: ApexSettings,
    /// FFN selection (all layers alike).
    pub ffn: UnitPlan,
    /// Attention selection; two entries under the sparse head budget.
    pub attention: Vec<UnitPlan>,
    pub rows: Vec<PlanRow>,
    /// Σ rows.
    pub trainable: u64,
    /// All parameters of the model.
    pub model_parameters: u64,
}

impl ParameterPlan {
    /// trainable / model parameters.
    pub fn fraction(&self) -> f64 {
        self.trainable as f64 / self.model_parameters as f64
    }
}

/// The mixed width, Monarch block count and block size for k units `width` wide.
fn monarch(k: usize, width: usize, largest: bool) -> Option<(usize, usize, usize)> {
    (k > 0).then(|| {
        let dims = k * width;
        let blocks = find_divisor(dims, largest);
        (dims, blocks, dims / blocks)
    })
}

/// 2·b·p² for a Monarch, 0 without one.
fn monarch_params(monarch: Option<(usize, usize, usize)>) -> u64 {
    monarch.map_or(0, |(_, b, p)| 2 * (b * p * p) as u64)
}

/// t for a layer with k mixed units: ⌊n·τ⌋, or 2k without τ, never below 2k.
fn tuned_count(units: usize, k: usize, tuned_ratio: Option<f64>) -> usize {
    tuned_units(units, tuned_ratio).map_or(2 * k, |t| t.max(2 * k))
}

/// Plans the first stage of APEX training for `config` with `settings`.
pub fn plan(config: &ModelConfig, settings: &ApexSettings) -> Result<ParameterPlan> {
    config.validate()?;
    settings.validate()?;
    let d = config.hidden_size as u64;
    let layers = config.num_hidden_layers;
    let (head_dim, r) = (config.head_dim(), config.group_size());
    let largest = settings.find_largest_divisor;
    let m = 1;
    let mut rows = Vec::new();

    let attention = match head_budget(config.kv_heads(), layers, settings.v_ratio, m, 0) {
        HeadBudget::Uniform { k } => vec![(layers, k)],
        HeadBudget::Sparse { layers: chosen } => vec![(chosen, 1), (layers - chosen, 0)],
    };
    let attention: Vec<UnitPlan> = attention
        .into_iter()
        .filter(|&(n, _)| n > 0)
        .map(|(n, k)| {
            let k = k.min(config.kv_heads() / 2);
            UnitPlan {
                layers: n,
                units: config.kv_heads(),
                k,
                tuned: tuned_count(config.kv_heads(), k, settings.tuned_attn_ratio),
                monarch: monarch(k, head_dim, largest),
            }
        })
        .collect();
    for unit in &attention {
        let kv_rows = (unit.tuned * head_dim) as u64;
        let q_rows = kv_rows * r as u64;
        let mixed = unit.monarch.map_or(0, |(dims, _, _)| dims as u64);
        let qk = |rows: u64| ParamCounts {
            s2: if settings.finetune_qk { rows * d } else { 0 },
            ..ParamCounts::default()
        };
        let attention_rows = [
            (ModuleKind::QProj, qk(q_rows)),
            (ModuleKind::KProj, qk(kv_rows)),
            (
                ModuleKind::VProj,
                ParamCounts {
                    s2: kv_rows * d,
                    blkdiag: monarch_params(unit.monarch),
                    mixer: 2 * mixed,
                    dense: 0,
                },
            ),
            (
                ModuleKind::OProj,
                ParamCounts {
                    s2: q_rows * d,
                    ..ParamCounts::default()
                },
            ),
        ];
        rows.extend(attention_rows.map(|(module, per_layer)| PlanRow {
            module,
            per_layer,
            layers: unit.layers,
        }));
    }

    let ffn_units = config.intermediate_size;
    let ffn_k = unit_k(ffn_units, settings.u_ratio, m).min(ffn_units / 2);
    let ffn = UnitPlan {
        layers,
        units: ffn_units,
        k: ffn_k,
        tuned: tuned_count(ffn_units, ffn_k, settings.tuned_ffn_ratio),
        monarch: monarch(ffn_k, 1, largest),
    };
    let ffn_s2 = ffn.tuned as u64 * d;
    let scale = ffn_k as u64;
    let ffn_rows = [
        (
            ModuleKind::GateProj,
            ParamCounts {
                s2: ffn_s2,
                mixer: scale,
                ..ParamCounts::default()
            },
        ),
        (
            ModuleKind::UpProj,
            ParamCounts {
                s2: ffn_s2,
                blkdiag: monarch_params(ffn.monarch),
                mixer: 2 * scale,
                dense: 0,
            },
        ),
        (
            ModuleKind::DownProj,
            ParamCounts {
                s2: ffn_s2,
                ..ParamCounts::default()
            },
        ),
    ];
    rows.extend(ffn_rows.map(|(module, per_layer)| PlanRow {
        module,
        per_layer,
        layers,
    }));

    let dense = |module, count: u64| PlanRow {
        module,
        per_layer: ParamCounts {
            dense: count,
            ..ParamCounts::default()
        },
        layers: 1,
    };
    if settings.train_embeddings_and_lm_head {
        let embedding = config.vocab_size as u64 * d;
        rows.push(dense(ModuleKind::EmbedTokens, embedding));
        if !config.tie_word_embeddings {
            rows.push(dense(ModuleKind::LmHead, embedding));
        }
    }
    if settings.train_norms {
        rows.push(dense(ModuleKind::Norms, (2 * layers as u64 + 1) * d));
    }
    rows.retain(|row| row.total() > 0);

    Ok(ParameterPlan {
        config: config.clone(),
        settings: settings.clone(),
        ffn,
        attention,
        trainable: rows.iter().map(PlanRow::total).sum(),
        rows,
        model_parameters: config.parameter_count(),
    })
}

/// `1234567` → `"1,234,567"`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn percent(part: u64, whole: u64) -> String {
    format!("{:.2}%", 100.0 * part as f64 / whole.max(1) as f64)
}

impl fmt::Display for UnitPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} layer(s): k = {} (D) + {} (A), t = {} of {} ({})",
            self.layers,
            self.k,
            self.k,
            self.tuned,
            self.units,
            percent(self.tuned as u64, self.units as u64)
        )?;
        match self.monarch {
            Some((dims, b, p)) => write!(f, ", Monarch over {dims} dims: b = {b}, p = {p}"),
            None => write!(f, ", no mixing"),
        }
    }
}

impl fmt::Display for ParameterPlan {
    /// The planner table: one row per module kind (and per layer class), the
    /// per-role columns, and the totals with the trained fraction.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "model: d = {}, N = {}, H = {}, H_kv = {} (r = {}, d_h = {}), L = {}, V = {}{}",
            c.hidden_size,
            c.intermediate_size,
            c.num_attention_heads,
            c.kv_heads(),
            c.group_size(),
            c.head_dim(),
            c.num_hidden_layers,
            c.vocab_size,
            if c.tie_word_embeddings {
                ", tied embeddings"
            } else {
                ""
            }
        )?;
        let s = &self.settings;
        let ratio = |r: Option<f64>| r.map_or("none".to_string(), |r| r.to_string());
        writeln!(
            f,
            "settings: u_ratio = {}, v_ratio = {}, tuned_ffn_ratio = {}, tuned_attn_ratio = {}\n          \
             finetune_qk = {}, train_embeddings_and_lm_head = {}, train_norms = {}, \
             find_largest_divisor = {}",
            s.u_ratio,
            s.v_ratio,
            ratio(s.tuned_ffn_ratio),
            ratio(s.tuned_attn_ratio),
            s.finetune_qk,
            s.train_embeddings_and_lm_head,
            s.train_norms,
            s.find_largest_divisor
        )?;
        writeln!(f, "FFN channels:         {}", self.ffn)?;
        for unit in &self.attention {
            writeln!(f, "attention KV groups:  {unit}")?;
        }
        writeln!(f)?;
        let header = [
            "module",
            "s2",
            "blkdiag",
            "mixer",
            "dense",
            "per layer",
            "layers",
            "total",
            "share",
        ];
        let mut table: Vec<[String; 9]> = vec![header.map(String::from)];
        for row in &self.rows {
            let p = &row.per_layer;
            let name = if row.module == ModuleKind::EmbedTokens && c.tie_word_embeddings {
                "embed_tokens = lm_head".to_string()
            } else {
                row.module.name().to_string()
            };
            table.push([
                name,
                thousands(p.s2),
                thousands(p.blkdiag),
                thousands(p.mixer),
                thousands(p.dense),
                thousands(p.total()),
                row.layers.to_string(),
                thousands(row.total()),
                percent(row.total(), self.trainable),
            ]);
        }
        let mut widths = [0; 9];
        for line in &table {
            for (w, cell) in widths.iter_mut().zip(line) {
                *w = (*w).max(cell.len());
            }
        }
        for line in &table {
            let mut text = format!("{:<w$}", line[0], w = widths[0]);
            for (cell, w) in line[1..].iter().zip(&widths[1..]) {
                text.push_str(&format!("  {cell:>w$}"));
            }
            writeln!(f, "{}", text.trim_end())?;
        }
        writeln!(f)?;
        writeln!(f, "trainable parameters: {:>15}", thousands(self.trainable))?;
        writeln!(
            f,
            "model parameters:     {:>15}",
            thousands(self.model_parameters)
        )?;
        write!(
            f,
            "trained fraction:     {:>15}",
            percent(self.trainable, self.model_parameters)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(3_490_809_344), "3,490,809,344");
    }

    fn llama2_7b() -> ModelConfig {
        ModelConfig::from_json_str(
            r#"{"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32,
                "num_key_value_heads": 32, "num_hidden_layers": 32, "vocab_size": 32008}"#,
            "llama2-7b",
        )
        .unwrap()
    }

    #[test]
    fn reference_preset_reproduces_the_papers_52_percent() {
        let plan = plan(&llama2_7b(), &ApexSettings::reference()).unwrap();
        assert_eq!(plan.trainable, 3_490_809_344);
        assert_eq!(plan.model_parameters, 6_738_481_152);
        assert_eq!(format!("{:.4}", plan.fraction()), "0.5180");
        let row = |module| plan.rows.iter().find(|r| r.module == module).unwrap();
        // Spec §6.5: S of q, k, v, o is 2304·4096 each; attention Monarch and
        // vectors 49,152 + 768 + 768; FFN Monarch and vectors 198,144 + 2064 + 2·2064.
        assert_eq!(row(ModuleKind::QProj).per_layer.s2, 2304 * 4096);
        assert_eq!(row(ModuleKind::OProj).per_layer.s2, 2304 * 4096);
        assert_eq!(row(ModuleKind::VProj).per_layer.blkdiag, 49_152);
        assert_eq!(row(ModuleKind::VProj).per_layer.mixer, 1536);
        assert_eq!(row(ModuleKind::UpProj).per_layer.blkdiag, 198_144);
        assert_eq!(
            row(ModuleKind::UpProj).per_layer.mixer + row(ModuleKind::GateProj).per_layer.mixer,
            3 * 2064
        );
        assert_eq!(row(ModuleKind::DownProj).per_layer.s2, 5118 * 4096);
        assert_eq!(row(ModuleKind::LmHead).total(), 32008 * 4096);
    }

    #[test]
    fn default_preset_trains_only_the_expansion_parameters() {
        // Spec §6.5 without q/k and embeddings: 2·2304·4096 + 3·5118·4096 +
        // 50,688 + 204,336 per layer.
        let plan = plan(&llama2_7b(), &ApexSettings::default()).unwrap();
        let per_layer: u64 = 2 * 2304 * 4096 + 3 * 5118 * 4096 + 50_688 + 204_336;
        assert_eq!(plan.trainable, 32 * per_layer);
        assert!(plan.rows.iter().all(|r| r.module != ModuleKind::QProj));
    }
}
