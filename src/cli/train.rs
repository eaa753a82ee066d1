//! `trsr train`: fine-tune the LLM recommender with LoRA (or fully, `--full`) on a
//! prepared folder's `train` cases, validating on its `val` cases each epoch; the adapter
//! is written in PEFT's format (`--adapter DIR` on score / sweep / summarize / gui uses
//! it), a full fine-tuning as a whole model (`--model DIR`).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;

use super::batch::{interrupt_token, progress, CommonArgs};
use crate::data::Case;
use crate::export::{Table, TableFormat};
use crate::llm::source::ModelRef;
use crate::llm::{Engine, LoadOptions};
use crate::metrics::{evaluate, metric_names, TiePolicy};
use crate::rank::{score_baseline, Baseline, BaselineStats, RecommendOptions};
use crate::train::{
    read_summaries, report_rows, BestEpoch, LossOn, NegativePick, TrainEvent, TrainInput,
    TrainSettings,
};

#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Base model: `default`, a GGUF path, a safetensors folder, or a Hugging Face reference.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Prepared folder (items.jsonl + cases.jsonl with `train` and `val` splits).
    #[arg(long)]
    pub data: PathBuf,
    /// Preference summaries for the prompts: summaries.jsonl from `trsr summarize`, or a
    /// curated export (`trsr export --summaries`); cases without one are trained without
    /// the summary section.
    #[arg(long)]
    pub summaries: Option<PathBuf>,
    /// With several summaries per case: the method to use (hierarchical, recurrent).
    #[arg(long)]
    pub method: Option<String>,
    /// Output folder for the adapter (PEFT format), checkpoints and train_log.json; with
    /// --full, for the model.
    #[arg(long)]
    pub out: PathBuf,
    /// Full fine-tuning instead of LoRA: every weight (projections, norms, embedding,
    /// output matrix) is trained in f32, and the best epoch is saved as a whole model in
    /// the base's format (model.gguf, or model.safetensors with its config and tokenizer)
    /// that --model OUT loads; the --lora-* and --targets flags are unused. Memory: about
    /// 16 bytes per parameter (weights, gradients and AdamW's two moments), e.g. 2.2 GB
    /// for the default 135M model, plus activations; disk: 4 bytes per parameter.
    #[arg(long)]
    pub full: bool,
    /// LoRA: the format the frozen base weights are held and multiplied in: f32, or bf16
    /// (half the memory of the trainer's dequantized copy of a GGUF model's weights) on a GPU with bf16 support (compute capability 8.0+, e.g.
    /// A100, RTX 30xx/40xx, H100; refused on an older GPU; correct but slow on the CPU).
    /// The LoRA A/B matrices, AdamW's state and the loss stay f32. Recorded in
    /// train_log.json's settings.
    #[arg(long, value_enum, default_value_t = crate::train::TrainDtype::F32)]
    pub dtype: crate::train::TrainDtype,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Examples per micro-batch [default: 4; reference: 8].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimiser step [default: 4; reference: 8].
    #[arg(long)]
    pub grad_accum: Option<usize>,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Fraction of steps with a linear learning-rate warmup (then linear decay)
    /// [default: 0.1; reference: 0, decay only].
    #[arg(long)]
    pub warmup: Option<f64>,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 8)]
    pub lora_r: usize,
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    #[arg(long, default_value_t = 0.05)]
    pub lora_dropout: f64,
    /// Projections that get LoRA weights.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj"
    )]
    pub targets: Vec<String>,
    /// Loss on the answer token, or on the whole text [default: answer; reference: text].
    #[arg(long, value_enum)]
    pub loss: Option<LossOn>,
    /// How the best epoch is picked: recall at the first --k, or Recall@3+@5+@10
    /// [default: first-recall; reference: recall-sum].
    #[arg(long, value_enum)]
    pub best_by: Option<BestEpoch>,
    /// Which of a case's negatives is paired with its target: one drawn with the seed,
    /// or the first [default: random; reference: first].
    #[arg(long, value_enum)]
    pub negative: Option<NegativePick>,
    /// Cut training texts longer than this many tokens (counted and reported) instead of
    /// refusing them [default: none; reference: 2048].
    #[arg(long)]
    pub truncate_tokens: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Train on at most N cases of the train split.
    #[arg(long)]
    pub max_train_cases: Option<usize>,
    /// Validate on at most N cases of the val split.
    #[arg(long)]
    pub max_val_cases: Option<usize>,
    /// Skip the validation before training.
    #[arg(long)]
    pub no_validate_before: bool,
    /// Cut-offs of the validation metrics (the best epoch has the highest recall at the first).
    #[arg(long, value_delimiter = ',', default_value = "3,5,10")]
    pub k: Vec<usize>,
    /// The split names to train and validate on.
    #[arg(long, default_value = "train")]
    pub train_split: String,
    #[arg(long, default_value = "val")]
    pub val_split: String,
    /// How many most recent history items the prompt shows.
    #[arg(long, default_value_t = 5)]
    pub recent: usize,
    /// Ablation: prompts without the preference-summary section (even where a summary exists).
    #[arg(long)]
    pub no_summary: bool,
    /// Device: auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Use the plain `### User:` / `### Assistant:` prompt form.
    #[arg(long)]
    pub raw_prompt: bool,
    /// Also print the metrics table as markdown.
    #[arg(long)]
    pub markdown: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl TrainArgs {
    /// The settings: the preset's ([`TrainSettings::for_preset`]), with the flags given
    /// put over them.
    pub fn settings(&self) -> TrainSettings {
        let p = TrainSettings::for_preset(self.common.preset);
        TrainSettings {
            epochs: self.epochs,
            batch_size: self.batch_size.unwrap_or(p.batch_size),
            grad_accum: self.grad_accum.unwrap_or(p.grad_accum),
            lr: self.lr,
            warmup: self.warmup.unwrap_or(p.warmup),
            weight_decay: self.weight_decay,
            lora_r: self.lora_r,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            targets: self.targets.clone(),
            loss_on: self.loss.unwrap_or(p.loss_on),
            best_by: self.best_by.unwrap_or(p.best_by),
            negative: self.negative.unwrap_or(p.negative),
            truncate_tokens: self.truncate_tokens.or(p.truncate_tokens),
            seed: self.seed,
            max_train_cases: self.max_train_cases,
            max_val_cases: self.max_val_cases,
            validate_before: !self.no_validate_before,
            ks: self.k.clone(),
            full: self.full,
            dtype: self.dtype,
            ..p
        }
    }
}

fn split_of<'a>(cases: &'a [Case], name: &str) -> Vec<&'a Case> {
    cases
        .iter()
        .filter(|c| c.split.as_deref() == Some(name))
        .collect()
}

pub fn run(mut args: TrainArgs) -> anyhow::Result<()> {
    if crate::remote::is_remote_ref(&args.model) {
        anyhow::bail!("{}", crate::remote::TRAIN_IN_PROCESS);
    }
    let settings = args.settings();
    settings.validate()?;
    let data = crate::data::jsonl::load_prepared(&args.data)?;
    args.common.resolve_preset(&args.data)?;
    let train = split_of(&data.cases, &args.train_split);
    let val = split_of(&data.cases, &args.val_split);
    if train.is_empty() {
        anyhow::bail!(
            "{}: no cases with split `{}`; prepare the folder with a split, e.g. \
             trsr prepare --input RAW --out {} --split train=0.8,val=0.1,test=0.1",
            args.data.display(),
            args.train_split,
            args.data.display()
        );
    }
    if val.is_empty() {
        eprintln!(
            "warning: no `{}` cases: no validation, the last epoch is kept",
            args.val_split
        );
    }
    let templates = args.common.templates(&data.catalogue)?;
    let text = args.common.text_template(&data.catalogue);
    let summaries: HashMap<String, String> = match &args.summaries {
        Some(p) => {
            let (m, rejected) = read_summaries(p, args.method.as_deref())?;
            eprintln!(
                "summaries: {} case(s) from {}{}",
                m.len(),
                p.display(),
                if rejected > 0 {
                    format!(" ({rejected} rejected summaries left out)")
                } else {
                    String::new()
                }
            );
            m
        }
        None => HashMap::new(),
    };
    let model: ModelRef = args
        .model
        .parse()
        .map_err(|e| anyhow::anyhow!("--model {}: {e}", args.model))?;
    let opts = LoadOptions {
        device: args.device.parse().context("--device")?,
        raw_prompt: args.raw_prompt,
        yes_word: templates.yes.clone(),
        no_word: templates.no.clone(),
        answer_by_vocab: templates.answer_by_vocab(),
        ..LoadOptions::default()
    };
    let mut engine =
        Engine::load(&model, &opts).with_context(|| format!("loading the model {}", args.model))?;
    let info = engine.info().clone();
    eprintln!(
        "model {} ({:.0}M parameters, {}) on {}",
        info.identity.name,
        info.n_params as f64 / 1e6,
        info.weight_form,
        info.device
    );
    let input = TrainInput {
        train,
        val: val.clone(),
        catalogue: &data.catalogue,
        text: &text,
        templates: &templates,
        summaries: &summaries,
        opts: RecommendOptions {
            recent: args.recent,
            use_summary: !args.no_summary,
            ..RecommendOptions::default()
        },
    };
    let cancel = interrupt_token();
    let show = !args.common.quiet;
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut last_loss = f32::NAN;
    let mut on_event = |ev: &TrainEvent| match ev {
        TrainEvent::Prepared {
            report,
            val_cases,
            steps_total,
            trainable,
        } => {
            eprintln!(
                "SFT set: {} examples from {} cases ({} with a summary, {} without; longest {} \
                 tokens); {} validation cases; {} optimiser steps; {} trainable parameters",
                report.examples,
                report.cases,
                report.with_summary,
                report.without_summary,
                report.longest_tokens,
                val_cases,
                steps_total,
                trainable
            );
            if report.truncated > 0 {
                eprintln!(
                    "note: {} training text(s) were longer than {} tokens and were cut to it",
                    report.truncated,
                    settings.truncate_tokens.unwrap_or(0)
                );
            }
        }
        TrainEvent::Validating { epoch } => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            if show {
                eprintln!("validating ({})", epoch_label(*epoch));
            }
        }
        TrainEvent::Validated { epoch, metrics } => {
            eprintln!("{}: {}", epoch_label(*epoch), brief(metrics, &settings.ks));
        }
        TrainEvent::Example {
            epoch,
            done,
            total,
            loss,
        } => {
            let b = bar.get_or_insert_with(|| {
                let b = progress(*total, &format!("examples, epoch {epoch}"), show);
                b.set_position(0);
                b
            });
            b.set_position(*done as u64);
            last_loss = *loss;
            b.set_message(format!("loss {last_loss:.4}"));
        }
        TrainEvent::Step {
            step,
            steps_total,
            loss,
            lr,
            ..
        } => {
            if let Some(b) = &bar {
                b.set_message(format!(
                    "step {step}/{steps_total}, loss {loss:.4}, lr {lr:.2e}"
                ));
            }
        }
        TrainEvent::EpochDone(rec) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            let checkpoint = if rec.checkpoint.as_os_str().is_empty() {
                "not kept (a full model keeps only the best epoch)".to_string()
            } else {
                format!("checkpoint {}", rec.checkpoint.display())
            };
            eprintln!(
                "epoch {}: train loss {:.4} in {:.0} s{}; {checkpoint}",
                rec.epoch,
                rec.train_loss,
                rec.seconds,
                if rec.best { " (best so far)" } else { "" },
            );
        }
    };
    let report = crate::llm::finetune::train(
        &mut engine,
        &input,
        &settings,
        &args.out,
        &cancel,
        &mut on_event,
    )?;
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }

    // The table: before / epochs, then the baselines on the same validation cases.
    let ks = &settings.ks;
    let mut rows = report_rows(&report);
    if !val.is_empty() {
        let val_cases: Vec<Case> = val
            .iter()
            .take(settings.max_val_cases.unwrap_or(usize::MAX))
            .map(|c| (*c).clone())
            .collect();
        let stats = BaselineStats::build(&data.cases, &data.catalogue, &text);
        for b in [Baseline::Popularity, Baseline::Bm25] {
            let recs: Vec<_> = val_cases
                .iter()
                .map(|c| score_baseline(b, &stats, c, &data.catalogue, settings.seed))
                .collect();
            if let Some(s) = evaluate(&recs, ks, TiePolicy::Pessimistic).remove(b.name()) {
                rows.push((b.name().to_string(), s.metrics));
            }
        }
    }
    if !rows.is_empty() {
        let mut header = vec!["validation".to_string()];
        let names = metric_names(ks);
        header.extend(names.iter().cloned());
        let mut table = Table::new(header);
        for (label, m) in &rows {
            let mut row = vec![label.clone()];
            for n in &names {
                row.push(m.get(n).map(|v| format!("{v:.4}")).unwrap_or_default());
            }
            table.push(row);
        }
        println!("{}", table.render(TableFormat::Table));
        if args.markdown {
            println!("{}", table.render(TableFormat::Markdown));
        }
    }
    if let (Some(before), Some(best)) = (
        &report.before,
        report
            .epochs
            .iter()
            .find(|e| e.best)
            .and_then(|e| e.val.as_ref()),
    ) {
        let key = format!("recall@{}", settings.ks[0]);
        let (b, a) = (
            before.metrics.get(&key).copied().unwrap_or(0.0),
            best.metrics.get(&key).copied().unwrap_or(0.0),
        );
        if a < b {
            eprintln!(
                "note: no epoch beat the model before training on validation {key} ({a:.4} < {b:.4}); \
                 more training cases, epochs or a higher learning rate may help"
            );
        }
    }
    if report.cancelled {
        eprintln!(
            "interrupted: {} {}, the current weights in {}",
            if settings.full {
                "the best finished epoch's model is in"
            } else {
                "finished epochs' checkpoints are in"
            },
            if settings.full {
                args.out.clone()
            } else {
                args.out.join("checkpoints")
            }
            .display(),
            args.out.join("checkpoints/interrupted").display()
        );
    }
    match report.best_epoch {
        Some(e) if settings.full => eprintln!(
            "model (epoch {e}) written to {} (f32); score with it: trsr score --model {} ...",
            args.out.display(),
            args.out.display()
        ),
        Some(e) => eprintln!(
            "adapter (epoch {e}) written to {} (PEFT format); score with it: trsr score --adapter {} ...",
            args.out.display(),
            args.out.display()
        ),
        None => eprintln!("no epoch finished; nothing written at the top of {}", args.out.display()),
    }
    Ok(())
}

fn epoch_label(epoch: usize) -> String {
    if epoch == 0 {
        "before training".into()
    } else {
        format!("epoch {epoch}")
    }
}

fn brief(s: &crate::metrics::Summary, ks: &[usize]) -> String {
    let parts: Vec<String> = metric_names(ks)
        .into_iter()
        .filter(|n| n != "auc")
        .filter_map(|n| s.metrics.get(&n).map(|v| format!("{n} {v:.3}")))
        .collect();
    format!("{} ({} cases)", parts.join(", "), s.cases)
}
