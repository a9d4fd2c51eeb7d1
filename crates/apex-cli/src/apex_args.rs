//! The APEX settings flags shared by the subcommands that plan, select and
//! expand (`apex plan`, `apex train`): a preset plus individual overrides,
//! named after the reference's command-line flags (spec §6.4).

use apex_core::ApexSettings;
use clap::{Args, ValueEnum};

/// Which settings to start from before applying overrides.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Preset {
    /// The authors' script `train_apex_llama2_7b.sh` (q/k and embeddings trained).
    Reference,
    /// The project defaults: only APEX's own expansion parameters are trained.
    Default,
}

/// A tuned-only ratio τ, or `none` for no tuned-only units.
#[derive(Clone, Copy, Debug)]
pub struct TunedRatio(pub Option<f64>);

fn tuned_ratio(text: &str) -> std::result::Result<TunedRatio, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(TunedRatio(None));
    }
    text.parse()
        .map(|ratio| TunedRatio(Some(ratio)))
        .map_err(|e| format!("expected a ratio or `none`: {e}"))
}

/// APEX settings: a preset and the overrides given on the command line.
#[derive(Args, Debug, Clone)]
pub struct ApexArgs {
    /// Settings to start from.
    #[arg(long, value_enum, default_value_t = Preset::Default)]
    pub preset: Preset,
    /// ρ_ffn: fraction of FFN channels in A (and as many in D), times 2/2^m.
    #[arg(long)]
    pub u_ratio: Option<f64>,
    /// ρ_attn: fraction of KV groups in A (and as many in D), times 2/2^m.
    #[arg(long)]
    pub v_ratio: Option<f64>,
    /// τ_ffn: fraction of FFN channels tuned directly, or `none`.
    #[arg(long, value_name = "RATIO|none", value_parser = tuned_ratio)]
    pub tuned_ffn_ratio: Option<TunedRatio>,
    /// τ_attn: fraction of KV groups tuned directly, or `none`.
    #[arg(long, value_name = "RATIO|none", value_parser = tuned_ratio)]
    pub tuned_attn_ratio: Option<TunedRatio>,
    /// Also tune the q and k rows of the selected groups.
    #[arg(long, value_name = "BOOL")]
    pub finetune_qk: Option<bool>,
    /// Train the token embedding and the LM head.
    #[arg(long, value_name = "BOOL")]
    pub train_embeddings: Option<bool>,
    /// Train the RMSNorm weights.
    #[arg(long, value_name = "BOOL")]
    pub train_norms: Option<bool>,
    /// Use the largest proper divisor as the Monarch block count.
    #[arg(long, value_name = "BOOL")]
    pub find_largest_divisor: Option<bool>,
}

impl ApexArgs {
    /// The preset's settings, before overrides.
    pub fn preset(&self) -> ApexSettings {
        match self.preset {
            Preset::Reference => ApexSettings::reference(),
            Preset::Default => ApexSettings::default(),
        }
    }

    /// The preset with every given override applied.
    pub fn settings(&self) -> ApexSettings {
        let mut settings = self.preset();
        if let Some(v) = self.u_ratio {
            settings.u_ratio = v;
        }
        if let Some(v) = self.v_ratio {
            settings.v_ratio = v;
        }
        if let Some(TunedRatio(v)) = self.tuned_ffn_ratio {
            settings.tuned_ffn_ratio = v;
        }
        if let Some(TunedRatio(v)) = self.tuned_attn_ratio {
            settings.tuned_attn_ratio = v;
        }
        if let Some(v) = self.finetune_qk {
            settings.finetune_qk = v;
        }
        if let Some(v) = self.train_embeddings {
            settings.train_embeddings_and_lm_head = v;
        }
        if let Some(v) = self.train_norms {
            settings.train_norms = v;
        }
        if let Some(v) = self.find_largest_divisor {
            settings.find_largest_divisor = v;
        }
        settings
    }
}
