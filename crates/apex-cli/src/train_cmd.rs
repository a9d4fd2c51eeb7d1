//! `apex train`: trains one or more methods (apex, full, s2, lora) on the same
//! data, steps and seeds, and reports trainable parameters, validation
//! perplexity and time per method.
//!
//! With `--model DIR --data FILE…` it continues training a HF checkpoint on
//! text files. With neither, it runs the embedded default: a small LLaMA-style
//! model (GQA) is pre-trained on a generated corpus, then each method continues
//! on a shifted corpus. Writes to `--out` (default `runs/<unix time>`):
//! `metrics.jsonl`, `loss.png`, `summary.json`, and each method's fused model
//! under `<method>/` (config.json + model.safetensors, atomically); the
//! embedded default also writes its two generated corpora and `base/`.

use crate::apex_args::ApexArgs;
use apex_core::settings::{KSchedule, RecordMethod};
use apex_core::transformer_ops::TransformerOps;
use apex_core::Backend;
use apex_core::{ApexSettings, MonarchInit};
use apex_cpu::CpuBackend;
use apex_cuda::CudaBackend;
use apex_model::LlamaModel;
use apex_train::plot::{palette, plot_losses, tint, Series};
use apex_train::{
    embedded_corpora, train, AdamWConfig, EmbeddedSizes, Event, JsonlWriter, Method, Result,
    RunSummary, TextTokenizer, TokenSplit, TrainError, TrainOptions,
};
use apex_wgpu::WgpuBackend;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Compute backends `apex train` can run on.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BackendArg {
    /// The reference CPU backend (f32).
    Cpu,
    /// NVIDIA GPU 0 through apex-cuda (needs the driver and the NVRTC library).
    Cuda,
    /// The wgpu backend (f32) on the default adapter: Vulkan, Metal or DX12
    /// (`WGPU_ADAPTER_NAME` picks another; lavapipe runs it on a CPU).
    Wgpu,
}

/// `init_method` of the Monarch factors.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InitArg {
    /// U(−0.01/√p, 0.01/√p) for both factors (the reference's argparse default).
    Noise,
    /// W1 ~ U(−1/p, 1/p), W2 = 0: M = 0 at the start (the shipped script).
    Random,
    /// Both zero (degenerate ablation).
    Zeros,
}

/// `k` schedule across stages.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScheduleArg {
    Constant,
    Halving,
}

/// Score accumulation (`act_record_method`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RecordArg {
    Rank,
    Avg,
    Ma,
    MaRank,
}

/// The training-time APEX options `apex plan` does not need.
#[derive(Args, Debug, Clone)]
pub struct ExpansionArgs {
    /// Mix A into D (true) or A with itself (false).
    #[arg(long, value_name = "BOOL")]
    mix_channels: Option<bool>,
    /// Monarch initialisation.
    #[arg(long, value_enum)]
    init_method: Option<InitArg>,
    /// Constant k, or halving with exclusion of earlier D sets.
    #[arg(long, value_enum)]
    k_schedule: Option<ScheduleArg>,
    /// Score accumulation method.
    #[arg(long, value_enum)]
    record_method: Option<RecordArg>,
}

impl ExpansionArgs {
    fn apply(&self, s: &mut ApexSettings) {
        if let Some(v) = self.mix_channels {
            s.mix_channels = v;
        }
        if let Some(v) = self.init_method {
            s.init_method = match v {
                InitArg::Noise => MonarchInit::Noise,
                InitArg::Random => MonarchInit::Random,
                InitArg::Zeros => MonarchInit::Zeros,
            };
        }
        if let Some(v) = self.k_schedule {
            s.k_schedule = match v {
                ScheduleArg::Constant => KSchedule::Constant,
                ScheduleArg::Halving => KSchedule::Halving,
            };
        }
        if let Some(v) = self.record_method {
            s.record_method = match v {
                RecordArg::Rank => RecordMethod::Rank,
                RecordArg::Avg => RecordMethod::Avg,
                RecordArg::Ma => RecordMethod::Ma,
                RecordArg::MaRank => RecordMethod::MaRank,
            };
        }
    }
}

/// Arguments of `apex train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// HF checkpoint directory (config.json, model.safetensors, optional
    /// tokenizer.json; bytes are the tokens without one). Needs --data.
    #[arg(long, requires = "data")]
    model: Option<PathBuf>,
    /// Plain-text training files (a validation tail is held out of each).
    #[arg(long, num_args = 1.., requires = "model")]
    data: Vec<PathBuf>,
    /// Methods to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "apex,full,s2,lora")]
    methods: Vec<String>,
    /// Output directory (default runs/<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,

    /// Optimizer steps per method.
    #[arg(long, default_value_t = 120)]
    steps: usize,
    /// Windows per step.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Warmup fraction of the steps.
    #[arg(long, default_value_t = 0.03)]
    warmup_ratio: f64,
    /// Decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Global-norm clipping threshold (0 disables).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Learning-rate factor of the Monarch factors.
    #[arg(long, default_value_t = 1.0)]
    mixer_lr_scale: f64,
    /// APEX/S2 stages (select → train → fuse).
    #[arg(long, default_value_t = 2)]
    stages: usize,
    /// Keep one cosine over all stages instead of restarting it per stage.
    #[arg(long)]
    no_restart: bool,
    /// Training batches of the assessment pass before stage 1.
    #[arg(long, default_value_t = 8)]
    assess_batches: usize,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    lora_rank: usize,
    /// LoRA alpha (scale = alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// Validate every N steps.
    #[arg(long, default_value_t = 20)]
    eval_every: usize,
    /// At most this many validation windows per pass.
    #[arg(long, default_value_t = 48)]
    eval_windows: usize,
    /// Fraction of each text held out for validation.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Skip the effective-rank diagnostics (spec §7) of every projection
    /// before/after each stage (they cost a few seconds per stage).
    #[arg(long)]
    no_erank: bool,
    /// λ of the CV regulariser on the FFN channel norms (0 = off).
    #[arg(long, default_value_t = 0.0)]
    lambda_reg: f64,
    /// Seed of data order and initialisations.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    #[command(flatten)]
    apex: ApexArgs,
    #[command(flatten)]
    expansion: ExpansionArgs,

    /// Embedded default: hidden size.
    #[arg(long, default_value_t = 128)]
    hidden_size: usize,
    /// Embedded default: FFN width.
    #[arg(long, default_value_t = 352)]
    intermediate_size: usize,
    /// Embedded default: query heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Embedded default: KV heads.
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    /// Embedded default: layers.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Embedded default: generated text per corpus, in KB.
    #[arg(long, default_value_t = 600)]
    corpus_kb: usize,
    /// Embedded default: pre-training steps on the base corpus.
    #[arg(long, default_value_t = 250)]
    pretrain_steps: usize,
    /// Embedded default: pre-training learning rate.
    #[arg(long, default_value_t = 3e-3)]
    pretrain_lr: f64,
}

impl TrainArgs {
    fn settings(&self) -> ApexSettings {
        let mut settings = self.apex.settings();
        settings.seed = self.seed;
        self.expansion.apply(&mut settings);
        settings
    }

    fn options(&self) -> TrainOptions {
        TrainOptions {
            steps: self.steps,
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            lr: self.lr,
            warmup_ratio: self.warmup_ratio,
            optimizer: AdamWConfig {
                weight_decay: self.weight_decay,
                max_grad_norm: (self.max_grad_norm > 0.0).then_some(self.max_grad_norm),
                monarch_lr_scale: self.mixer_lr_scale,
                ..AdamWConfig::default()
            },
            seed: self.seed,
            eval_every: self.eval_every,
            eval_windows: Some(self.eval_windows),
            stages: self.stages,
            restart_schedule: !self.no_restart,
            restart_warmup_ratio: 0.005,
            assess_batches: self.assess_batches,
            effective_rank: !self.no_erank,
            apex: self.settings(),
            lambda_reg: (self.lambda_reg != 0.0).then_some(self.lambda_reg),
        }
    }

    fn methods(&self) -> Result<Vec<Method>> {
        self.methods
            .iter()
            .map(|name| match name.parse::<Method>()? {
                Method::Lora { .. } => Ok(Method::Lora {
                    rank: self.lora_rank,
                    alpha: self.lora_alpha,
                }),
                other => Ok(other),
            })
            .collect()
    }

    fn sizes(&self) -> EmbeddedSizes {
        EmbeddedSizes {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            heads: self.heads,
            kv_heads: self.kv_heads,
            layers: self.layers,
            corpus_bytes: self.corpus_kb * 1000,
        }
    }
}

/// Per-run curves collected for the plot.
#[derive(Default)]
struct Curves {
    train: Vec<(f64, f64)>,
    validation: Vec<(f64, f64)>,
}

/// Progress bar + JSONL + curves for one run.
struct Reporter<'a> {
    jsonl: &'a mut JsonlWriter,
    bar: ProgressBar,
    curves: Curves,
    last_validation: f64,
    error: Option<TrainError>,
}

impl<'a> Reporter<'a> {
    fn new(jsonl: &'a mut JsonlWriter, label: &str, steps: usize) -> Self {
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Reporter {
            jsonl,
            bar,
            curves: Curves::default(),
            last_validation: f64::NAN,
            error: None,
        }
    }

    fn observe(&mut self, event: &Event) {
        if let Err(e) = self.jsonl.write(event) {
            self.error.get_or_insert(e);
        }
        match event {
            Event::Train {
                stage,
                step,
                loss,
                tokens_per_second,
                ..
            } => {
                self.curves.train.push((*step as f64, *loss));
                self.bar.set_position(*step as u64);
                self.bar.set_message(format!(
                    "loss {loss:.3}  val {:.3}  stage {}  {:.0} tok/s",
                    self.last_validation,
                    stage + 1,
                    tokens_per_second
                ));
            }
            Event::Validation { step, loss, .. } => {
                self.curves.validation.push((*step as f64, *loss));
                self.last_validation = *loss;
            }
            Event::RunEnd { .. } => self.bar.finish(),
            _ => {}
        }
    }

    fn finish(self) -> Result<Curves> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.curves),
        }
    }
}

/// Exponential moving average, so noisy per-step losses read as a curve.
fn smooth(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut acc = None;
    points
        .iter()
        .map(|&(x, y)| {
            let v = acc.map_or(y, |a: f64| 0.9 * a + 0.1 * y);
            acc = Some(v);
            (x, v)
        })
        .collect()
}

fn print_table(summaries: &[RunSummary]) {
    println!();
    println!(
        "{:<8} {:>12} {:>11} {:>10} {:>10} {:>9} {:>10}",
        "method", "trainable", "trainable%", "val loss", "val ppl", "time s", "tok/s"
    );
    for s in summaries {
        println!(
            "{:<8} {:>12} {:>10.2}% {:>10.4} {:>10.3} {:>9.1} {:>10.0}",
            s.method,
            s.trainable,
            100.0 * s.trainable_fraction,
            s.final_validation_loss,
            s.final_validation_perplexity,
            s.seconds,
            s.train_tokens_per_second
        );
    }
}

fn default_out_dir() -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(secs.to_string())
}

fn write_json(path: &Path, value: &[RunSummary]) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| TrainError::Data(format!("summary does not serialise: {e}")))?;
    apex_model::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Runs `apex train` on the chosen backend.
pub fn run(args: &TrainArgs) -> Result<()> {
    match args.backend {
        BackendArg::Cpu => run_on(&CpuBackend::<f32>::new(), args),
        BackendArg::Cuda => {
            let gpu = CudaBackend::new()?;
            let info = gpu.info();
            println!(
                "backend cuda: {} (compute capability {}.{}, {})",
                info.name, info.compute_capability.0, info.compute_capability.1, info.versions
            );
            run_on(&gpu, args)
        }
        BackendArg::Wgpu => {
            let gpu = WgpuBackend::new()?;
            println!("backend {}", gpu.name());
            run_on(&gpu, args)
        }
    }
}

fn run_on<B: TransformerOps>(backend: &B, args: &TrainArgs) -> Result<()> {
    let methods = args.methods()?;
    let options = args.options();
    let out = args.out.clone().unwrap_or_else(default_out_dir);
    std::fs::create_dir_all(&out).map_err(TrainError::io(&out))?;
    let mut jsonl = JsonlWriter::create(&out.join("metrics.jsonl"))?;

    let (base, data, tokenizer_file) = match &args.model {
        Some(dir) => {
            let model = LlamaModel::load(backend, dir)?;
            let tok_path = dir.join("tokenizer.json");
            let (tokenizer, file) = if tok_path.exists() {
                (TextTokenizer::from_file(&tok_path)?, Some(tok_path))
            } else {
                (TextTokenizer::Bytes, None)
            };
            let data = TokenSplit::from_files(&args.data, &tokenizer, args.val_fraction)?;
            println!(
                "model {} ({} parameters), {} training / {} validation tokens",
                dir.display(),
                model.config.parameter_count(),
                data.train.len(),
                data.validation.len()
            );
            (model, data, file)
        }
        None => {
            let sizes = args.sizes();
            let config = sizes.config()?;
            let corpora = embedded_corpora(&sizes, args.seed, args.val_fraction)?;
            for (name, text) in [
                ("base_corpus.txt", &corpora.base_text),
                ("shifted_corpus.txt", &corpora.shifted_text),
            ] {
                apex_model::write_atomic(&out.join(name), text.as_bytes())?;
            }
            println!(
                "embedded default: d={} N={} H={} H_kv={} L={} ({} parameters); {} KB generated per corpus",
                sizes.hidden_size,
                sizes.intermediate_size,
                sizes.heads,
                sizes.kv_heads,
                sizes.layers,
                config.parameter_count(),
                args.corpus_kb
            );
            let init = LlamaModel::init_random(backend, &config, 0.02, args.seed)?;
            let pretrain = TrainOptions {
                steps: args.pretrain_steps,
                lr: args.pretrain_lr,
                eval_every: args.pretrain_steps.max(1),
                effective_rank: false,
                ..options.clone()
            };
            let mut reporter = Reporter::new(&mut jsonl, "pretrain", pretrain.steps);
            let run = train(
                backend,
                &init,
                &corpora.base,
                &Method::Full,
                &pretrain,
                &mut |e| reporter.observe(e),
            )?;
            reporter.finish()?;
            run.model.save(backend, &out.join("base"))?;
            println!(
                "pre-trained on the base corpus: validation perplexity {:.3}; continuing on the shifted corpus",
                run.summary.final_validation_perplexity
            );
            (run.model, corpora.shifted, None)
        }
    };

    let mut summaries = Vec::new();
    let mut series = Vec::new();
    for (index, method) in methods.iter().enumerate() {
        let mut reporter = Reporter::new(&mut jsonl, method.name(), options.steps);
        let outcome = train(backend, &base, &data, method, &options, &mut |e| {
            reporter.observe(e)
        })?;
        let curves = reporter.finish()?;
        let dir = out.join(method.name());
        outcome.model.save(backend, &dir)?;
        if let Some(file) = &tokenizer_file {
            let dst = dir.join("tokenizer.json");
            std::fs::copy(file, &dst).map_err(TrainError::io(&dst))?;
        }
        series.push(Series {
            label: format!("{} train", method.name()),
            color: tint(palette(index)),
            points: smooth(&curves.train),
            thick: false,
        });
        series.push(Series {
            label: format!("{} val", method.name()),
            color: palette(index),
            points: curves.validation,
            thick: true,
        });
        summaries.push(outcome.summary);
    }
    jsonl.flush()?;
    plot_losses(
        &out.join("loss.png"),
        "LOSS PER METHOD (THICK: VALIDATION)",
        &series,
    )?;
    write_json(&out.join("summary.json"), &summaries)?;
    print_table(&summaries);
    println!(
        "\nwrote {}/{{metrics.jsonl, loss.png, summary.json, <method>/model.safetensors}}",
        out.display()
    );
    Ok(())
}
