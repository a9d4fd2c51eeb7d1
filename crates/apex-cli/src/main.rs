//! `apex`, the APEX command line. Each subcommand lives in its own module
//! (`plan_cmd`, `train_cmd`, `eval_cmd`) with its clap arguments and a `run`
//! function; `apex_args` holds the APEX settings flags they share.

mod apex_args;
mod eval_cmd;
mod plan_cmd;
mod train_cmd;

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
    /// Train with APEX and the baselines; without --model/--data, run the
    /// embedded default (a small generated-corpus experiment).
    Train(Box<train_cmd::TrainArgs>),
    /// Mean next-token cross-entropy and perplexity of a checkpoint on a text file.
    Eval(eval_cmd::EvalArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Plan(args) => plan_cmd::run(&args).map_err(|e| e.to_string()),
        Command::Train(args) => train_cmd::run(&args).map_err(|e| e.to_string()),
        Command::Eval(args) => eval_cmd::run(&args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
