//! `apex eval`: tokenizes a text file with the checkpoint's `tokenizer.json`
//! (no BOS; bytes when the checkpoint has none, as the embedded default's
//! models), scores non-overlapping windows of `--seq-len` tokens independently
//! (the last partial window is dropped) and prints the mean next-token
//! cross-entropy and the perplexity — the numbers HF's `LlamaForCausalLM`
//! gives with `labels = window`.

use apex_cpu::CpuBackend;
use apex_model::LlamaModel;
use apex_train::{evaluate, Result, TextTokenizer, TrainError};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `apex eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint directory: config.json, model.safetensors and tokenizer.json
    /// (without one, the tokens are the text's bytes).
    #[arg(long)]
    model: PathBuf,
    /// Text file to score.
    #[arg(long)]
    data: PathBuf,
    /// Tokens per window.
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `apex eval`.
pub fn run(args: &EvalArgs) -> Result<()> {
    let tokenizer_path = args.model.join("tokenizer.json");
    let tokenizer = if tokenizer_path.exists() {
        TextTokenizer::from_file(&tokenizer_path)?
    } else {
        TextTokenizer::Bytes
    };
    let text = std::fs::read_to_string(&args.data).map_err(TrainError::io(&args.data))?;
    let tokens = tokenizer.encode(&text)?;
    let cpu = CpuBackend::<f32>::new();
    let model = LlamaModel::load(&cpu, &args.model)?;
    let result = evaluate(&cpu, &model, &tokens, args.seq_len, args.batch_size, None)?;
    if args.json {
        let line = serde_json::to_string(&result)
            .map_err(|e| TrainError::Data(format!("result does not serialise: {e}")))?;
        println!("{line}");
    } else {
        println!(
            "windows: {} of {} tokens ({} predictions)",
            result.windows, args.seq_len, result.predictions
        );
        println!("mean cross-entropy: {:.6}", result.mean_cross_entropy);
        println!("perplexity: {:.4}", result.perplexity);
    }
    Ok(())
}
