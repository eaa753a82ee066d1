//! Fine-tuning the LLM recommender, the part without a model: the settings (the paper's
//! by default), the data a run reads, its progress events and report, and reading
//! summaries for the prompts. The loop itself, which needs the candle engine, is
//! `llm::finetune` (the SFT set, LoRA steps, validation, checkpoints).
//!
//! The method: the SFT set pairs each training case's target (answer `yes`) with one of
//! its negatives (answer `no`), in the recommender prompt the scorer uses; LoRA r 8,
//! alpha 16, dropout 0.05 on q/k/v/o; AdamW (0.9, 0.95), weight decay 5e-4, learning
//! rate 1e-4 with linear warmup and decay; the loss on the answer token (or on the
//! whole text, as the reference code does). `full` trains every weight instead of a
//! LoRA adapter (same loop, loss, schedule and best-epoch rule) and saves a whole model.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{Case, Catalogue, ItemTextTemplate};
use crate::metrics::Summary;
use crate::preset::Preset;
use crate::prompt::Templates;
use crate::rank::RecommendOptions;

/// The projections LoRA can target, by their Hugging Face names.
pub const PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The model file a full fine-tuning of a GGUF model writes (`llm::full`).
pub const FULL_GGUF_FILE: &str = "model.gguf";
/// The weights file a full fine-tuning of Hugging Face weights writes (`llm::full`).
pub const FULL_SAFETENSORS_FILE: &str = "model.safetensors";

/// Which tokens the loss covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LossOn {
    /// The answer token only (`yes` / `no`).
    #[default]
    Answer,
    /// Every token of prompt and answer (the reference code's choice).
    Text,
}

/// The number format a LoRA training holds and multiplies the frozen base weights in.
/// The trained A/B matrices, AdamW's state and the loss are f32 either way (mixed
/// precision: activations are cast at each frozen product).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TrainDtype {
    /// f32 (the default, and the CPU's format).
    #[default]
    F32,
    /// bf16: half the frozen weights' memory, for GPUs with bf16 support (compute
    /// capability 8.0 or newer: A100, RTX 30xx/40xx, H100); correct but slow on the CPU.
    Bf16,
}

impl TrainDtype {
    pub fn name(self) -> &'static str {
        match self {
            TrainDtype::F32 => "f32",
            TrainDtype::Bf16 => "bf16",
        }
    }
}

/// Everything that shapes a training run. Defaults: the paper's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    pub epochs: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step (effective batch = batch_size x grad_accum).
    pub grad_accum: usize,
    pub lr: f64,
    /// Fraction of the optimiser steps with a linear warmup (then linear decay to 0).
    pub warmup: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub lora_r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    /// Target projections by Hugging Face name (`q_proj`, ...).
    pub targets: Vec<String>,
    pub loss_on: LossOn,
    pub seed: u64,
    /// Use at most this many training cases (all: `None`).
    pub max_train_cases: Option<usize>,
    /// Validate on at most this many `val` cases (all: `None`).
    pub max_val_cases: Option<usize>,
    /// Validate once before training too (the "before" row).
    pub validate_before: bool,
    /// Cut-offs of the validation metrics; the best epoch has the highest recall at the
    /// first one (ties: MRR at the same cut-off), or see `best_by`.
    pub ks: Vec<usize>,
    /// The rule that picks the best epoch.
    pub best_by: BestEpoch,
    /// Which of a case's negatives is paired with its target.
    pub negative: NegativePick,
    /// Training texts longer than this many tokens are cut to it (from the end, as the
    /// reference's `SFTTrainer(max_seq_length=2048)` does) and counted, instead of refused.
    pub truncate_tokens: Option<usize>,
    /// Full fine-tuning: every weight (projections, norms, embedding, output matrix)
    /// is trained in f32 and a whole model is saved, instead of a LoRA adapter (the
    /// LoRA settings are then unused). Memory: about 16 bytes per parameter.
    pub full: bool,
    /// LoRA: the format of the frozen base weights (`f32`, or `bf16` on a GPU with bf16
    /// support); a full fine-tuning trains in f32.
    pub dtype: TrainDtype,
}

/// How the best epoch is chosen from the validation metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BestEpoch {
    /// Highest recall at the first cut-off (ties: MRR there).
    #[default]
    FirstRecall,
    /// Highest Recall@3 + Recall@5 + Recall@10, the earlier epoch on a tie (the
    /// reference's `test.py`).
    RecallSum,
}

/// Which negative the SFT set pairs with each case's target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NegativePick {
    /// One drawn with the run's seed.
    #[default]
    Random,
    /// The case's first negative (the reference's `dataset_gen.py`: `neg_items[0]`).
    First,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 4,
            grad_accum: 4,
            lr: 1e-4,
            warmup: 0.1,
            weight_decay: 5e-4,
            beta1: 0.9,
            beta2: 0.95,
            lora_r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.05,
            targets: ["q_proj", "k_proj", "v_proj", "o_proj"]
                .map(String::from)
                .to_vec(),
            loss_on: LossOn::Answer,
            seed: 42,
            max_train_cases: None,
            max_val_cases: None,
            validate_before: true,
            ks: vec![3, 5, 10],
            best_by: BestEpoch::FirstRecall,
            negative: NegativePick::Random,
            truncate_tokens: None,
            full: false,
            dtype: TrainDtype::F32,
        }
    }
}

impl TrainSettings {
    /// A preset's training settings: `workbench` is [`TrainSettings::default`];
    /// `reference` is `LLM-TRSR/train.py`'s: 8 per device x 8 accumulation, no warmup
    /// (linear decay), loss on the whole text, the first negative, the best epoch by
    /// Recall@3+@5+@10, texts cut at 2,048 tokens.
    pub fn for_preset(preset: Preset) -> TrainSettings {
        let mut s = TrainSettings::default();
        s.apply_preset(preset);
        s
    }

    /// Puts `preset`'s values of the settings the presets differ in (batch,
    /// accumulation, warmup, loss, best-epoch rule, negative, truncation) over these,
    /// keeping the rest (epochs, learning rate, LoRA or full, limits).
    pub fn apply_preset(&mut self, preset: Preset) {
        fn pick<T>(preset: Preset, workbench: T, reference: T) -> T {
            match preset {
                Preset::Workbench => workbench,
                Preset::Reference => reference,
            }
        }
        self.batch_size = pick(preset, 4, 8);
        self.grad_accum = pick(preset, 4, 8);
        self.warmup = pick(preset, 0.1, 0.0);
        self.loss_on = pick(preset, LossOn::Answer, LossOn::Text);
        self.best_by = pick(preset, BestEpoch::FirstRecall, BestEpoch::RecallSum);
        self.negative = pick(preset, NegativePick::Random, NegativePick::First);
        self.truncate_tokens = pick(preset, None, Some(crate::preset::REFERENCE_MAX_TOKENS));
    }

    /// Checks the settings; the message names the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        let bad = |what: &str| Err(anyhow::anyhow!("training setting {what}"));
        if self.epochs == 0 {
            return bad("`epochs` must be at least 1");
        }
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad("`batch_size` and `grad_accum` must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("`lr` must be a positive number");
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad("`warmup` must be a fraction in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad("`lora_dropout` must be in [0, 1)");
        }
        if self.lora_r == 0 {
            return bad("`lora_r` must be at least 1");
        }
        if self.ks.is_empty() || self.ks.contains(&0) {
            return bad("`ks` must list cut-offs of at least 1");
        }
        if self.best_by == BestEpoch::RecallSum && ![3, 5, 10].iter().all(|k| self.ks.contains(k)) {
            return bad("`best_by` recall-sum needs the cut-offs 3, 5 and 10 in `ks`");
        }
        if self.truncate_tokens == Some(0) {
            return bad("`truncate_tokens` must be at least 1");
        }
        if self.full && self.dtype != TrainDtype::F32 {
            return bad("`dtype` bf16 is for LoRA (the frozen base weights); a full fine-tuning trains in f32");
        }
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| !PROJECTIONS.contains(&t.trim()))
        {
            return Err(anyhow::anyhow!(
                "training setting `targets`: `{t}` is not a projection (use {})",
                PROJECTIONS.join(", ")
            ));
        }
        if self.targets.is_empty() {
            return bad("`targets` must name at least one projection");
        }
        Ok(())
    }

    /// Learning rate at optimiser step `step` (0-based) of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        if self.warmup <= 0.0 {
            // No warmup: Hugging Face's linear schedule, lr x (total - step) / total.
            return self.lr * (1.0 - step as f64 / total.max(1) as f64).max(0.0);
        }
        let warm = ((self.warmup * total as f64).ceil() as usize).max(1);
        if step < warm {
            return self.lr * (step + 1) as f64 / warm as f64;
        }
        let rest = total.saturating_sub(warm).max(1);
        self.lr * (1.0 - (step - warm) as f64 / rest as f64).max(0.0)
    }

    /// The metric that picks the best epoch, and its tie-breaker.
    pub fn best_key(&self) -> (String, String) {
        let k = self.ks[0];
        (format!("recall@{k}"), format!("mrr@{k}"))
    }
}

/// The data a run reads.
pub struct TrainInput<'a> {
    pub train: Vec<&'a Case>,
    pub val: Vec<&'a Case>,
    pub catalogue: &'a Catalogue,
    pub text: &'a ItemTextTemplate,
    pub templates: &'a Templates,
    /// Case id -> the preference summary to put in its prompts (curated where curated).
    pub summaries: &'a HashMap<String, String>,
    pub opts: RecommendOptions,
}

/// What building the SFT set found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildReport {
    pub cases: usize,
    pub examples: usize,
    pub with_summary: usize,
    pub without_summary: usize,
    /// Cases without a negative to pair with (left out).
    pub no_negative: usize,
    pub longest_tokens: usize,
    /// Texts cut to `truncate_tokens`.
    #[serde(default)]
    pub truncated: usize,
}

/// Progress of a run.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainEvent {
    /// The SFT set is built.
    Prepared {
        report: BuildReport,
        val_cases: usize,
        steps_total: usize,
        trainable: usize,
    },
    /// Validation is running (epoch 0: before training).
    Validating { epoch: usize },
    /// Validation metrics of an epoch (0: before training).
    Validated { epoch: usize, metrics: Summary },
    /// One example's loss (`done` of `total` in the epoch).
    Example {
        epoch: usize,
        done: usize,
        total: usize,
        loss: f32,
    },
    /// An optimiser step: mean loss of its examples.
    Step {
        epoch: usize,
        step: usize,
        steps_total: usize,
        loss: f32,
        lr: f64,
    },
    /// An epoch ended and its checkpoint was written.
    EpochDone(EpochRecord),
}

/// One finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub val: Option<Summary>,
    pub checkpoint: PathBuf,
    pub best: bool,
    pub seconds: f64,
}

/// The outcome of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub build: BuildReport,
    pub before: Option<Summary>,
    pub epochs: Vec<EpochRecord>,
    pub best_epoch: Option<usize>,
    pub out: PathBuf,
    pub cancelled: bool,
    pub settings: TrainSettings,
    pub base_model: String,
}

/// Whether validation metrics `a` beat `b` (by [`TrainSettings::best_key`]).
pub fn better(a: &Summary, b: Option<&Summary>, keys: &(String, String), rule: BestEpoch) -> bool {
    let Some(b) = b else { return true };
    let get = |s: &Summary, k: &str| s.metrics.get(k).copied().unwrap_or(0.0);
    if rule == BestEpoch::RecallSum {
        let sum = |s: &Summary| get(s, "recall@3") + get(s, "recall@5") + get(s, "recall@10");
        return sum(a) > sum(b);
    }
    let (ra, rb) = (get(a, &keys.0), get(b, &keys.0));
    ra > rb + 1e-12 || ((ra - rb).abs() <= 1e-12 && get(a, &keys.1) > get(b, &keys.1) + 1e-12)
}

/// Reads preference summaries for training from a JSONL file: lines of `trsr summarize`
/// (`case`, `method`, `final_summary`) or of a curated export (`case`, `method`,
/// `summary`, `status`). With several methods per case, `method` picks one (default:
/// the first seen). Rejected curated summaries are left out.
pub fn read_summaries(
    path: &Path,
    method: Option<&str>,
) -> anyhow::Result<(HashMap<String, String>, usize)> {
    use std::io::BufRead;
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("could not read {}: {e}", path.display()))?;
    let mut out: HashMap<String, String> = HashMap::new();
    let mut rejected = 0;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: not valid JSON ({e})", path.display(), i + 1))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str());
        let case = field("case").ok_or_else(|| {
            anyhow::anyhow!("{}:{}: field `case` is missing", path.display(), i + 1)
        })?;
        if let (Some(want), Some(m)) = (method, field("method")) {
            if m != want {
                continue;
            }
        }
        if field("status") == Some("rejected") {
            rejected += 1;
            continue;
        }
        let text = field("summary")
            .or_else(|| field("final_summary"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}:{}: field `final_summary` (or `summary`) is missing",
                    path.display(),
                    i + 1
                )
            })?;
        out.entry(case.to_string())
            .or_insert_with(|| text.to_string());
    }
    Ok((out, rejected))
}

/// The metrics of a [`TrainReport`] as table rows: `before`, `epoch N` (best marked).
pub fn report_rows(report: &TrainReport) -> Vec<(String, BTreeMap<String, f64>)> {
    let mut rows = Vec::new();
    if let Some(b) = &report.before {
        rows.push(("before training".to_string(), b.metrics.clone()));
    }
    for e in &report.epochs {
        if let Some(v) = &e.val {
            let mark = if e.best { " (best)" } else { "" };
            rows.push((format!("epoch {}{mark}", e.epoch), v.metrics.clone()));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(r3: f64, r5: f64, r10: f64) -> Summary {
        let mut s = Summary::default();
        for (k, v) in [("recall@3", r3), ("recall@5", r5), ("recall@10", r10)] {
            s.metrics.insert(k.into(), v);
        }
        s
    }

    #[test]
    fn the_recall_sum_rule_keeps_the_earlier_epoch_on_a_tie() {
        let keys = ("recall@3".to_string(), "mrr@3".to_string());
        let best = summary(0.2, 0.3, 0.5);
        // Lower Recall@3 but a higher sum: better by the sum, worse by the first recall.
        let later = summary(0.1, 0.5, 0.6);
        assert!(better(&later, Some(&best), &keys, BestEpoch::RecallSum));
        assert!(!better(&later, Some(&best), &keys, BestEpoch::FirstRecall));
        // The same sum: the earlier epoch stays (test.py's strict `>`).
        let same = summary(0.3, 0.3, 0.4);
        assert!(!better(&same, Some(&best), &keys, BestEpoch::RecallSum));
    }
}
