//! `apex plan`: the trainable-parameter planner (spec §6.5) for an HF
//! `config.json`, from a preset plus individual overrides.

use apex_core::plan::plan;
use apex_core::{ApexError, ApexSettings, ModelConfig, Result};
use clap::{Args, ValueEnum};
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

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
pub struct TunedRatio(Option<f64>);

fn tuned_ratio(text: &str) -> std::result::Result<TunedRatio, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(TunedRatio(None));
    }
    text.parse()
        .map(|ratio| TunedRatio(Some(ratio)))
        .map_err(|e| format!("expected a ratio or `none`: {e}"))
}

/// Arguments of `apex plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The model's HF config.json.
    #[arg(long)]
    config: PathBuf,
    /// Settings to start from.
    #[arg(long, value_enum, default_value_t = Preset::Default)]
    preset: Preset,
    /// ρ_ffn: fraction of FFN channels in A (and as many in D), times 2/2^m.
    #[arg(long)]
    u_ratio: Option<f64>,
    /// ρ_attn: fraction of KV groups in A (and as many in D), times 2/2^m.
    #[arg(long)]
    v_ratio: Option<f64>,
    /// τ_ffn: fraction of FFN channels tuned directly, or `none`.
    #[arg(long, value_name = "RATIO|none", value_parser = tuned_ratio)]
    tuned_ffn_ratio: Option<TunedRatio>,
    /// τ_attn: fraction of KV groups tuned directly, or `none`.
    #[arg(long, value_name = "RATIO|none", value_parser = tuned_ratio)]
    tuned_attn_ratio: Option<TunedRatio>,
    /// Also tune the q and k rows of the selected groups.
    #[arg(long, value_name = "BOOL")]
    finetune_qk: Option<bool>,
    /// Train the token embedding and the LM head.
    #[arg(long, value_name = "BOOL")]
    train_embeddings: Option<bool>,
    /// Train the RMSNorm weights.
    #[arg(long, value_name = "BOOL")]
    train_norms: Option<bool>,
    /// Use the largest proper divisor as the Monarch block count.
    #[arg(long, value_name = "BOOL")]
    find_largest_divisor: Option<bool>,
}

impl PlanArgs {
    /// The preset's settings, before overrides.
    fn preset(&self) -> ApexSettings {
        match self.preset {
            Preset::Reference => ApexSettings::reference(),
            Preset::Default => ApexSettings::default(),
        }
    }

    /// The preset with every given override applied.
    fn settings(&self) -> ApexSettings {
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

/// Reads the config, plans and prints the table.
pub fn run(args: &PlanArgs) -> Result<()> {
    let config = ModelConfig::from_file(&args.config)?;
    let settings = args.settings();
    let plan = plan(&config, &settings)?;
    let preset = match args.preset {
        Preset::Reference => "reference",
        Preset::Default => "default",
    };
    let overrides = if settings == args.preset() {
        ""
    } else {
        " with overrides"
    };
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(
        stdout,
        "APEX plan for {} (preset {preset}{overrides}, first stage)",
        args.config.display()
    )
    .and_then(|()| writeln!(stdout, "{plan}"));
    match written {
        // A closed pipe (`apex plan … | head`) is the reader's choice, not an error.
        Err(error) if error.kind() != ErrorKind::BrokenPipe => Err(ApexError::Io {
            path: "<stdout>".into(),
            source: error,
        }),
        _ => Ok(()),
    }
}
