//! `apex plan`: the trainable-parameter planner (spec §6.5) for an HF
//! `config.json`, from a preset plus individual overrides.

use crate::apex_args::{ApexArgs, Preset};
use apex_core::plan::plan;
use apex_core::{ApexError, ModelConfig, Result};
use clap::Args;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

/// Arguments of `apex plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The model's HF config.json.
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    apex: ApexArgs,
}

/// Reads the config, plans and prints the table.
pub fn run(args: &PlanArgs) -> Result<()> {
    let config = ModelConfig::from_file(&args.config)?;
    let settings = args.apex.settings();
    let plan = plan(&config, &settings)?;
    let preset = match args.apex.preset {
        Preset::Reference => "reference",
        Preset::Default => "default",
    };
    let overrides = if settings == args.apex.preset() {
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
