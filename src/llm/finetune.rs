//! The training loop of the LLM recommender on the candle engine: LoRA (as LLM-TRSR
//! does) or full fine-tuning (`settings.full`), one loop for both; the settings, events
//! and report it uses are the core's [`crate::train`].
//!
//! Each epoch ends with validation (Recall/MRR/NDCG on the `val` cases, scored by the
//! engine with the epoch's weights) and a checkpoint; the best epoch by the settings'
//! rule goes to the output folder itself. LoRA checkpoints are PEFT adapters, every
//! epoch's kept under `checkpoints/epoch-N`. A full fine-tuning's checkpoint is a whole
//! model (`llm::full`), validated by loading it as `--model` would; as each is the size
//! of the model in f32, only the best epoch's is kept. Progress goes to a callback so
//! the CLI and the window's worker show it live; cancel keeps the finished epochs'
//! checkpoints and writes the current weights to `checkpoints/interrupted`.

use std::path::Path;
use std::time::Instant;

use crate::data::Case;
use crate::llm::lora::{LoraConfig, Target};
use crate::llm::train::{OptimSettings, TrainExample, Trainer};
use crate::llm::Engine;
use crate::lm::{CancelToken, LanguageModel};
use crate::metrics::{evaluate, ScoreRecord, Summary, TiePolicy};
use crate::rank::{recommend_chat_prompt, score_llm};
use crate::train::{
    better, BuildReport, EpochRecord, LossOn, NegativePick, TrainEvent, TrainInput, TrainReport,
    TrainSettings,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The LoRA configuration of checked `settings`.
pub fn lora_config(settings: &TrainSettings) -> anyhow::Result<LoraConfig> {
    settings.validate()?;
    let mut targets = Vec::new();
    for t in &settings.targets {
        let target = Target::from_hf_name(t.trim()).ok_or_else(|| {
            anyhow::anyhow!("training setting `targets`: `{t}` is not a projection")
        })?;
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    targets.sort();
    Ok(LoraConfig {
        r: settings.lora_r,
        alpha: settings.lora_alpha,
        dropout: settings.lora_dropout,
        targets,
        use_rslora: false,
        base_model: None,
    })
}

/// One SFT pair member: a case's candidate with its answer.
#[derive(Clone, Debug)]
pub struct SftItem {
    pub case: String,
    pub candidate: String,
    pub positive: bool,
    pub example: TrainExample,
}

/// Builds the SFT set: per training case, the target (yes) and one negative (no),
/// in the scorer's prompt. The negative is drawn from the case's negatives with `seed`.
pub fn build_examples(
    engine: &Engine,
    input: &TrainInput,
    settings: &TrainSettings,
) -> anyhow::Result<(Vec<SftItem>, BuildReport)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed);
    let (yes, no) = engine.answer_ids();
    let mut out = Vec::new();
    let mut report = BuildReport::default();
    let cases = input
        .train
        .iter()
        .take(settings.max_train_cases.unwrap_or(usize::MAX));
    for case in cases {
        if case.negatives.is_empty() {
            report.no_negative += 1;
            continue;
        }
        let summary = input.summaries.get(&case.case).map(String::as_str);
        let uses_summary = summary.is_some() && input.opts.use_summary && !input.opts.full_history;
        let ((prefix, suffixes), _) = recommend_chat_prompt(
            engine,
            input.templates,
            case,
            input.catalogue,
            input.text,
            summary,
            &input.opts,
        )
        .map_err(|e| anyhow::anyhow!("case {}: {e:#}", case.case))?;
        let neg = match settings.negative {
            NegativePick::Random => rng.random_range(0..case.negatives.len()),
            NegativePick::First => 0,
        };
        let prefix_ids = engine.encode_prompt(&prefix)?;
        for (which, positive) in [(0usize, true), (neg + 1, false)] {
            let mut ids = prefix_ids.clone();
            ids.extend(engine.tokenizer().encode(&suffixes[which], false)?);
            let prompt_len = ids.len();
            ids.push(if positive { yes } else { no });
            if let Some(max) = settings.truncate_tokens {
                if ids.len() > max {
                    ids.truncate(max);
                    report.truncated += 1;
                }
            }
            if ids.len() > engine.context_len() {
                anyhow::bail!(
                    "case {}: the training prompt has {} tokens but the model's context is {}",
                    case.case,
                    ids.len(),
                    engine.context_len()
                );
            }
            report.longest_tokens = report.longest_tokens.max(ids.len());
            let loss_from = match settings.loss_on {
                LossOn::Answer => prompt_len.min(ids.len() - 1),
                LossOn::Text => 1,
            };
            let candidate = if positive {
                case.target.clone()
            } else {
                case.negatives[neg].clone()
            };
            out.push(SftItem {
                case: case.case.clone(),
                candidate,
                positive,
                example: TrainExample { ids, loss_from },
            });
            report.examples += 1;
            if uses_summary {
                report.with_summary += 1;
            } else {
                report.without_summary += 1;
            }
        }
        report.cases += 1;
    }
    if out.is_empty() {
        anyhow::bail!(
            "no training examples: {} training case(s), {} without negatives; prepare the data \
             with a train split (trsr prepare --split train=0.8,val=0.1,test=0.1)",
            input.train.len(),
            report.no_negative
        );
    }
    Ok((out, report))
}

/// Scores the validation cases with the engine as it stands and averages the metrics.
pub fn validate(
    engine: &mut Engine,
    input: &TrainInput,
    settings: &TrainSettings,
    cancel: &CancelToken,
) -> anyhow::Result<Option<Summary>> {
    let cases: Vec<&Case> = input
        .val
        .iter()
        .copied()
        .take(settings.max_val_cases.unwrap_or(usize::MAX))
        .collect();
    if cases.is_empty() {
        return Ok(None);
    }
    let mut records: Vec<ScoreRecord> = Vec::with_capacity(cases.len());
    for case in cases {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let summary = input.summaries.get(&case.case).map(String::as_str);
        let mut r = score_llm(
            engine,
            input.templates,
            case,
            input.catalogue,
            input.text,
            summary,
            &input.opts,
        )
        .map_err(|e| anyhow::anyhow!("validation case {}: {e:#}", case.case))?;
        r.scorer = "val".into();
        records.push(r);
    }
    Ok(evaluate(&records, &settings.ks, TiePolicy::Pessimistic).remove("val"))
}

fn copy_adapter(from: &Path, to: &Path) -> anyhow::Result<()> {
    use crate::llm::lora::Adapter;
    for f in [Adapter::WEIGHTS_FILE, Adapter::CONFIG_FILE] {
        let tmp = to.join(format!("{f}.tmp"));
        std::fs::copy(from.join(f), &tmp)
            .and_then(|_| std::fs::rename(&tmp, to.join(f)))
            .map_err(|e| {
                anyhow::anyhow!(
                    "copying {} to {}: {e}",
                    from.join(f).display(),
                    to.display()
                )
            })?;
    }
    Ok(())
}

/// How a run's weights are trained, saved and scored: the only places LoRA and full
/// fine-tuning differ.
enum Kind {
    Lora,
    /// The engine's source (a saved model copies its format) and load options (to load
    /// a checkpoint as `--model` would, without the engine's own adapter).
    Full {
        base: std::path::PathBuf,
        opts: crate::llm::LoadOptions,
    },
}

impl Kind {
    fn save(&self, trainer: &Trainer, dir: &Path) -> anyhow::Result<()> {
        match self {
            Kind::Lora => Ok(trainer.adapter()?.save(dir)?),
            Kind::Full { base, .. } => {
                crate::llm::full::save(&trainer.full_weights()?, base, dir).map(|_| ())
            }
        }
    }

    /// Validation with the weights saved in `dir` (epoch `epoch`).
    fn validate(
        &self,
        engine: &mut Engine,
        dir: &Path,
        epoch: usize,
        input: &TrainInput,
        settings: &TrainSettings,
        cancel: &CancelToken,
    ) -> anyhow::Result<Option<Summary>> {
        match self {
            Kind::Lora => {
                let adapter = crate::llm::lora::Adapter::load(dir)?;
                engine.set_adapter(Some(&adapter), Some(&format!("epoch-{epoch}")))?;
                let v = validate(engine, input, settings, cancel);
                engine.set_adapter(None, None)?;
                v
            }
            Kind::Full { opts, .. } => {
                let mut tuned = Engine::load_path(dir, opts)
                    .map_err(|e| anyhow::anyhow!("loading {}: {e:#}", dir.display()))?;
                validate(&mut tuned, input, settings, cancel)
            }
        }
    }

    /// Makes `dir` (epoch's checkpoint) the output's model; returns where it now is.
    fn keep_best(&self, dir: &Path, out: &Path) -> anyhow::Result<std::path::PathBuf> {
        match self {
            Kind::Lora => {
                copy_adapter(dir, out)?;
                Ok(dir.to_path_buf())
            }
            Kind::Full { .. } => {
                crate::llm::full::move_model(dir, out)?;
                Ok(out.to_path_buf())
            }
        }
    }

    /// An epoch that is not the best: a full model is not kept.
    fn drop_other(&self, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
        match self {
            Kind::Lora => Ok(dir.to_path_buf()),
            Kind::Full { .. } => {
                std::fs::remove_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("removing {}: {e}", dir.display()))?;
                Ok(std::path::PathBuf::new())
            }
        }
    }
}

/// Trains `engine`'s model and writes the result to `out`: a LoRA adapter (PEFT format;
/// the best epoch at the top, every epoch under `checkpoints/epoch-N`), or with
/// `settings.full` a whole model (`model.gguf`, or `model.safetensors` with the base's
/// config and tokenizer files; the best epoch only); the log in `train_log.json`. The
/// engine is left as it was (without an adapter).
pub fn train(
    engine: &mut Engine,
    input: &TrainInput,
    settings: &TrainSettings,
    out: &Path,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(&TrainEvent),
) -> anyhow::Result<TrainReport> {
    let mut lora = lora_config(settings)?;
    let base_model = engine.identity().name;
    lora.base_model = Some(base_model.clone());
    let kind = if settings.full {
        Kind::Full {
            base: engine.source_path().to_path_buf(),
            opts: crate::llm::LoadOptions {
                adapter: None,
                ..engine.opts.clone()
            },
        }
    } else {
        Kind::Lora
    };
    std::fs::create_dir_all(out.join("checkpoints"))
        .map_err(|e| anyhow::anyhow!("could not create {}: {e}", out.display()))?;
    let (mut items, build) = build_examples(engine, input, settings)?;
    let per_step = settings.batch_size * settings.grad_accum;
    let steps_per_epoch = items.len().div_ceil(per_step);
    let steps_total = steps_per_epoch * settings.epochs;
    let optim = OptimSettings {
        lr: settings.lr,
        beta1: settings.beta1,
        beta2: settings.beta2,
        eps: 1e-8,
        weight_decay: settings.weight_decay,
    };
    let mut trainer = if settings.full {
        Trainer::new_full(engine.model(), &optim)?
    } else {
        Trainer::new_in(
            engine.model(),
            lora,
            &optim,
            None,
            settings.seed,
            settings.dtype,
        )?
    };
    let val_cases = input
        .val
        .len()
        .min(settings.max_val_cases.unwrap_or(usize::MAX));
    on_event(&TrainEvent::Prepared {
        report: build.clone(),
        val_cases,
        steps_total,
        trainable: trainer.n_trainable(),
    });
    let mut report = TrainReport {
        build,
        before: None,
        epochs: Vec::new(),
        best_epoch: None,
        out: out.to_path_buf(),
        cancelled: false,
        settings: settings.clone(),
        base_model,
    };
    let write_log = |report: &TrainReport| -> anyhow::Result<()> {
        let path = out.join("train_log.json");
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(&path, text + "\n")
            .map_err(|e| anyhow::anyhow!("could not write {}: {e}", path.display()))
    };
    let result = (|| -> anyhow::Result<()> {
        if settings.validate_before && val_cases > 0 {
            on_event(&TrainEvent::Validating { epoch: 0 });
            engine.set_adapter(None, None)?;
            if let Some(m) = validate(engine, input, settings, cancel)? {
                on_event(&TrainEvent::Validated {
                    epoch: 0,
                    metrics: m.clone(),
                });
                report.before = Some(m);
            }
        }
        let keys = settings.best_key();
        let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed ^ 0x5eed);
        let mut step = 0usize;
        let mut best: Option<Summary> = None;
        for epoch in 1..=settings.epochs {
            let t0 = Instant::now();
            items.shuffle(&mut rng);
            let mut sum = 0f64;
            let mut step_sum = 0f64;
            let mut in_step = 0usize;
            let total = items.len();
            for (i, item) in items.iter().enumerate() {
                if cancel.is_cancelled() {
                    report.cancelled = true;
                    let dir = out.join("checkpoints").join("interrupted");
                    kind.save(&trainer, &dir)?;
                    return Ok(());
                }
                // The step's examples share its weight; the last step may be short.
                let step_start = (i / per_step) * per_step;
                let n_in_step = per_step.min(total - step_start);
                let loss = trainer.backward(&item.example, 1.0 / n_in_step as f64)?;
                sum += loss as f64;
                step_sum += loss as f64;
                in_step += 1;
                on_event(&TrainEvent::Example {
                    epoch,
                    done: i + 1,
                    total,
                    loss,
                });
                if in_step == n_in_step {
                    let lr = settings.lr_at(step, steps_total);
                    trainer.step(lr)?;
                    step += 1;
                    on_event(&TrainEvent::Step {
                        epoch,
                        step,
                        steps_total,
                        loss: (step_sum / in_step as f64) as f32,
                        lr,
                    });
                    step_sum = 0.0;
                    in_step = 0;
                }
            }
            let dir = out.join("checkpoints").join(format!("epoch-{epoch}"));
            kind.save(&trainer, &dir)?;
            let mut val = None;
            if val_cases > 0 {
                on_event(&TrainEvent::Validating { epoch });
                val = kind.validate(engine, &dir, epoch, input, settings, cancel)?;
                if let Some(m) = &val {
                    on_event(&TrainEvent::Validated {
                        epoch,
                        metrics: m.clone(),
                    });
                }
            }
            // Best: highest validation recall; without validation, the last epoch.
            let is_best = match &val {
                Some(m) => better(m, best.as_ref(), &keys, settings.best_by),
                None => true,
            };
            let checkpoint = if is_best {
                best = val.clone();
                report.best_epoch = Some(epoch);
                for e in &mut report.epochs {
                    e.best = false;
                    // A full model moved to the top is replaced by this epoch's.
                    if e.checkpoint == out {
                        e.checkpoint = std::path::PathBuf::new();
                    }
                }
                kind.keep_best(&dir, out)?
            } else {
                kind.drop_other(&dir)?
            };
            let rec = EpochRecord {
                epoch,
                train_loss: sum / total.max(1) as f64,
                val,
                checkpoint,
                best: is_best,
                seconds: t0.elapsed().as_secs_f64(),
            };
            on_event(&TrainEvent::EpochDone(rec.clone()));
            report.epochs.push(rec);
            write_log(&report)?;
        }
        Ok(())
    })();
    // Leave the engine as it was, whatever happened.
    let _ = engine.set_adapter(None, None);
    result?;
    write_log(&report)?;
    Ok(report)
}
