//! `apex`, the APEX command line. Each subcommand lives in its own module
//! (`plan_cmd`, …) with its clap arguments and a `run` function.

mod plan_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// APEX: Advantageous Parameter EXpansion training for LLMs.
#[derive(Parser)]
#[command(name = "apex", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Count the parameters APEX trains for a model config.json, per module
    /// kind and in total.
    Plan(plan_cmd::PlanArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Plan(args) => plan_cmd::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
