//! The Train tab's state, without egui: a training run as the window follows it
//! ([`TrainRun`], fed the job's events), the tab's form state ([`TrainPanel`]), and the
//! small calculations both the actions and the view read (splits, ETA, output folder,
//! number formats). Kept apart from the drawing so it is tested as plain data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::data::Case;
use crate::metrics::Summary;
use crate::train::{BuildReport, EpochRecord, TrainEvent, TrainReport, TrainSettings};
use crate::worker::{Event, JobId};

/// The split the training cases come from.
pub const TRAIN_SPLIT: &str = "train";
/// The split the validation cases come from.
pub const VAL_SPLIT: &str = "val";

/// The Train tab's own state.
pub struct TrainPanel {
    /// The output folder as typed (empty: a new folder under the dataset's `adapters/`).
    pub out_dir: String,
    /// The split to assign when the cases have none, e.g. `train=0.8,val=0.1,test=0.1`.
    pub split_spec: String,
    pub split_seed: u64,
    /// The last problem of a command of this tab.
    pub error: Option<String>,
    /// The cut-offs as typed (applied to the settings when they parse).
    pub ks_text: Option<String>,
}

impl Default for TrainPanel {
    fn default() -> Self {
        Self {
            out_dir: String::new(),
            split_spec: "train=0.8,val=0.1,test=0.1".into(),
            split_seed: 42,
            error: None,
            ks_text: None,
        }
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Queued, or building the training examples.
    Preparing,
    /// Validating after epoch N (0: before training).
    Validating(usize),
    /// Training epoch N.
    Training(usize),
    Finished,
    Cancelled,
    Failed,
}

/// A training run as the window follows it.
#[derive(Clone, Debug)]
pub struct TrainRun {
    pub job: Option<JobId>,
    pub out: PathBuf,
    pub settings: TrainSettings,
    /// Cases handed to the job (after the max-cases limits).
    pub train_cases: usize,
    pub val_cases: usize,
    /// Of those, how many had a summary.
    pub train_with_summary: usize,
    pub val_with_summary: usize,
    pub phase: Phase,
    pub started: Instant,
    pub finished_at: Option<Instant>,
    pub build: Option<BuildReport>,
    pub steps_total: usize,
    pub trainable: usize,
    pub examples_per_epoch: usize,
    /// Examples done over all epochs.
    pub examples_done: usize,
    /// (example number over all epochs, loss).
    pub example_losses: Vec<[f64; 2]>,
    /// (example number at the step, mean loss of the step).
    pub step_losses: Vec<[f64; 2]>,
    /// The last optimiser step: (step, loss, learning rate).
    pub last_step: Option<(usize, f32, f64)>,
    /// Validation metrics by epoch (0: before training).
    pub validations: Vec<(usize, Summary)>,
    pub epochs: Vec<EpochRecord>,
    pub best_epoch: Option<usize>,
    pub report: Option<TrainReport>,
    pub error: Option<String>,
    /// Timing for the ETA: the last event that ended some work.
    mark: Instant,
    example_secs: f64,
    examples_timed: usize,
    val_started: Option<Instant>,
    val_secs: f64,
    val_cases_timed: usize,
}

impl TrainRun {
    pub(super) fn new(job: JobId, out: PathBuf, settings: TrainSettings) -> Self {
        let now = Instant::now();
        Self {
            job: Some(job),
            out,
            settings,
            train_cases: 0,
            val_cases: 0,
            train_with_summary: 0,
            val_with_summary: 0,
            phase: Phase::Preparing,
            started: now,
            finished_at: None,
            build: None,
            steps_total: 0,
            trainable: 0,
            examples_per_epoch: 0,
            examples_done: 0,
            example_losses: Vec::new(),
            step_losses: Vec::new(),
            last_step: None,
            validations: Vec::new(),
            epochs: Vec::new(),
            best_epoch: None,
            report: None,
            error: None,
            mark: now,
            example_secs: 0.0,
            examples_timed: 0,
            val_started: None,
            val_secs: 0.0,
            val_cases_timed: 0,
        }
    }

    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// The adapter at the top of the output folder: written once an epoch was best.
    pub fn adapter_ready(&self) -> bool {
        self.best_epoch.is_some()
    }

    /// Applies one event of the run's job.
    pub fn apply(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Train { event, .. } => self.apply_train(event, now),
            Event::TrainReport { report, .. } => {
                self.best_epoch = report.best_epoch.or(self.best_epoch);
                self.report = Some(*report);
            }
            Event::JobFinished { .. } => self.end(Phase::Finished, now),
            Event::JobCancelled { .. } => self.end(Phase::Cancelled, now),
            Event::JobFailed { error, .. } => {
                self.error = Some(error);
                self.end(Phase::Failed, now);
            }
            _ => {}
        }
    }

    fn end(&mut self, phase: Phase, now: Instant) {
        self.job = None;
        self.phase = phase;
        self.finished_at = Some(now);
    }

    fn apply_train(&mut self, ev: TrainEvent, now: Instant) {
        match ev {
            TrainEvent::Prepared {
                report,
                val_cases,
                steps_total,
                trainable,
            } => {
                self.examples_per_epoch = report.examples;
                self.build = Some(report);
                self.val_cases = val_cases;
                self.steps_total = steps_total;
                self.trainable = trainable;
                self.phase = Phase::Training(1);
                self.mark = now;
            }
            TrainEvent::Validating { epoch } => {
                self.phase = Phase::Validating(epoch);
                self.val_started = Some(now);
            }
            TrainEvent::Validated { epoch, metrics } => {
                if let Some(t0) = self.val_started.take() {
                    self.val_secs += now.duration_since(t0).as_secs_f64();
                    self.val_cases_timed += metrics.cases.max(1);
                }
                self.validations.push((epoch, metrics));
                self.mark = now;
                if epoch < self.settings.epochs {
                    self.phase = Phase::Training(epoch + 1);
                }
            }
            TrainEvent::Example {
                epoch,
                done,
                total,
                loss,
            } => {
                self.phase = Phase::Training(epoch);
                self.examples_per_epoch = total;
                self.example_secs += now.duration_since(self.mark).as_secs_f64();
                self.examples_timed += 1;
                self.mark = now;
                self.examples_done = (epoch - 1) * total + done;
                self.example_losses
                    .push([self.examples_done as f64, f64::from(loss)]);
            }
            TrainEvent::Step {
                step,
                steps_total,
                loss,
                lr,
                ..
            } => {
                self.steps_total = steps_total;
                self.last_step = Some((step, loss, lr));
                self.step_losses
                    .push([self.examples_done as f64, f64::from(loss)]);
            }
            TrainEvent::EpochDone(rec) => {
                if rec.best {
                    self.best_epoch = Some(rec.epoch);
                }
                self.epochs.push(rec);
                self.mark = now;
            }
        }
    }

    /// Validation passes the run makes in all.
    fn passes_total(&self) -> usize {
        if self.val_cases == 0 {
            0
        } else {
            self.settings.epochs + usize::from(self.settings.validate_before)
        }
    }

    /// Seconds left, once something was timed.
    pub fn eta_secs(&self) -> Option<f64> {
        if !self.is_running() || self.build.is_none() {
            return None;
        }
        let per_example =
            (self.examples_timed > 0).then(|| self.example_secs / self.examples_timed as f64);
        let per_val_case =
            (self.val_cases_timed > 0).then(|| self.val_secs / self.val_cases_timed as f64);
        // Until both were timed, one stands in for the other (similar work: an
        // example is a forward and backward pass, a case a forward over its candidates).
        let per_example = per_example.or(per_val_case)?;
        let per_val_case = per_val_case.unwrap_or(per_example);
        let total_examples = self.examples_per_epoch * self.settings.epochs;
        let examples_left = total_examples.saturating_sub(self.examples_done);
        let passes_left = self.passes_total().saturating_sub(self.validations.len());
        let mut secs = examples_left as f64 * per_example
            + passes_left as f64 * self.val_cases as f64 * per_val_case;
        // The running unit is partly done; an overrun leaves a tenth of its estimate.
        let left_of =
            |est: f64, since: Instant| (est - since.elapsed().as_secs_f64()).max(0.1 * est);
        match self.val_started {
            Some(t0) => {
                let est = self.val_cases as f64 * per_val_case;
                secs += left_of(est, t0) - est;
            }
            None if examples_left > 0 => secs += left_of(per_example, self.mark) - per_example,
            None => {}
        }
        Some(secs.max(0.0))
    }

    /// Fraction done: by time when an ETA is known, else by examples.
    pub fn fraction(&self) -> f32 {
        match self.phase {
            Phase::Finished => return 1.0,
            Phase::Cancelled | Phase::Failed | Phase::Preparing => {
                let total = self.examples_per_epoch * self.settings.epochs;
                return if total == 0 {
                    0.0
                } else {
                    self.examples_done as f32 / total as f32
                };
            }
            _ => {}
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        match self.eta_secs() {
            Some(eta) if elapsed + eta > 0.0 => ((elapsed / (elapsed + eta)) as f32).min(0.99),
            _ => {
                let total = (self.examples_per_epoch * self.settings.epochs).max(1);
                self.examples_done as f32 / total as f32
            }
        }
    }

    /// What the run is doing, in words.
    pub fn phase_text(&self) -> String {
        let epochs = self.settings.epochs;
        match self.phase {
            Phase::Preparing => "building the training examples".into(),
            Phase::Validating(0) => {
                format!("validating before training ({} cases)", self.val_cases)
            }
            Phase::Validating(e) => {
                format!("validating epoch {e}/{epochs} ({} cases)", self.val_cases)
            }
            Phase::Training(e) => {
                let done = self
                    .examples_done
                    .saturating_sub((e - 1) * self.examples_per_epoch);
                let mut s = format!(
                    "training epoch {e}/{epochs} · example {done}/{}",
                    self.examples_per_epoch
                );
                if let Some((step, _, _)) = self.last_step {
                    s.push_str(&format!(" · step {step}/{}", self.steps_total));
                }
                s
            }
            Phase::Finished => "finished".into(),
            Phase::Cancelled => "cancelled".into(),
            Phase::Failed => "failed".into(),
        }
    }

    /// One line for the status bar.
    pub fn state_text(&self) -> String {
        match self.eta_secs() {
            Some(eta) => format!("{} · ETA {}", self.phase_text(), fmt_secs(eta)),
            None => self.phase_text(),
        }
    }

    /// The validation rows: label, metrics, best.
    pub fn rows(&self) -> Vec<(String, &Summary, bool)> {
        self.validations
            .iter()
            .map(|(e, m)| {
                let best = *e > 0 && self.best_epoch == Some(*e);
                let label = if *e == 0 {
                    "before training".to_string()
                } else {
                    format!("epoch {e}")
                };
                (label, m, best)
            })
            .collect()
    }
}

/// `1h 02m`, `3m 20s`, `12s`.
pub fn fmt_secs(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `1 case`, `2 cases`.
pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `921,600`.
pub fn fmt_count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The loaded cases by split.
pub struct SplitCases<'a> {
    pub train: Vec<&'a Case>,
    pub val: Vec<&'a Case>,
    /// Cases per split label.
    pub labels: BTreeMap<String, usize>,
    /// Cases without a split label.
    pub unlabelled: usize,
}

pub fn split_cases(cases: &[Case]) -> SplitCases<'_> {
    let mut out = SplitCases {
        train: Vec::new(),
        val: Vec::new(),
        labels: BTreeMap::new(),
        unlabelled: 0,
    };
    for c in cases {
        match c.split.as_deref() {
            Some(s) => {
                *out.labels.entry(s.to_string()).or_default() += 1;
                if s == TRAIN_SPLIT {
                    out.train.push(c);
                } else if s == VAL_SPLIT {
                    out.val.push(c);
                }
            }
            None => out.unlabelled += 1,
        }
    }
    out
}

/// A new output folder: `<dataset>/adapters/lora-YYYYMMDD-HHMMSS` (UTC), or for a full
/// fine-tuning `<dataset>/models/full-YYYYMMDD-HHMMSS`.
pub fn default_out_dir(data_dir: &Path, full: bool) -> PathBuf {
    data_dir
        .join(out_parent(full))
        .join(format!("{}-{}", out_prefix(full), utc_stamp()))
}

/// The folder under the dataset that new outputs go to.
pub fn out_parent(full: bool) -> &'static str {
    if full {
        "models"
    } else {
        "adapters"
    }
}

/// The start of a new output folder's name.
pub fn out_prefix(full: bool) -> &'static str {
    if full {
        "full"
    } else {
        "lora"
    }
}

/// `YYYYMMDD-HHMMSS` of now, in UTC.
fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::calendar::utc_stamp(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::EpochRecord;

    #[test]
    fn stamps_counts_and_durations_read_well() {
        assert_eq!(fmt_count(12), "12");
        assert_eq!(fmt_count(1_000), "1,000");
        assert_eq!(fmt_count(921_600), "921,600");
        assert_eq!(fmt_secs(12.0), "12s");
        assert_eq!(fmt_secs(200.0), "3m 20s");
        assert_eq!(fmt_secs(3725.0), "1h 02m");
        assert_eq!(plural(1, "case"), "1 case");
        assert_eq!(plural(3, "case"), "3 cases");
    }

    fn summary(recall: f64) -> Summary {
        Summary {
            cases: 2,
            metrics: [("recall@3".to_string(), recall)].into_iter().collect(),
            skipped: 0,
        }
    }

    fn train(job: JobId, event: TrainEvent) -> Event {
        Event::Train { job, event }
    }

    #[test]
    fn a_run_follows_its_events_phase_by_phase() {
        let settings = TrainSettings {
            epochs: 2,
            ..TrainSettings::default()
        };
        let mut run = TrainRun::new(7, PathBuf::from("/out"), settings);
        assert_eq!(run.phase, Phase::Preparing);
        assert_eq!(run.eta_secs(), None);
        run.apply(train(
            7,
            TrainEvent::Prepared {
                report: BuildReport {
                    cases: 2,
                    examples: 4,
                    ..BuildReport::default()
                },
                val_cases: 2,
                steps_total: 2,
                trainable: 10,
            },
        ));
        run.apply(train(7, TrainEvent::Validating { epoch: 0 }));
        assert_eq!(run.phase, Phase::Validating(0));
        run.apply(train(
            7,
            TrainEvent::Validated {
                epoch: 0,
                metrics: summary(0.5),
            },
        ));
        // Validation timed: an ETA stands in for the examples too.
        assert_eq!(run.phase, Phase::Training(1));
        assert!(run.eta_secs().is_some());
        for done in 1..=4 {
            run.apply(train(
                7,
                TrainEvent::Example {
                    epoch: 1,
                    done,
                    total: 4,
                    loss: 1.0 / done as f32,
                },
            ));
        }
        run.apply(train(
            7,
            TrainEvent::Step {
                epoch: 1,
                step: 1,
                steps_total: 2,
                loss: 0.5,
                lr: 1e-4,
            },
        ));
        assert_eq!(run.examples_done, 4);
        assert_eq!(run.example_losses.last(), Some(&[4.0, 0.25]));
        assert_eq!(run.step_losses, [[4.0, 0.5]]);
        assert!(
            run.phase_text().contains("example 4/4 · step 1/2"),
            "{}",
            run.phase_text()
        );
        run.apply(train(
            7,
            TrainEvent::Validated {
                epoch: 1,
                metrics: summary(0.75),
            },
        ));
        run.apply(train(
            7,
            TrainEvent::EpochDone(EpochRecord {
                epoch: 1,
                train_loss: 0.5,
                val: Some(summary(0.75)),
                checkpoint: PathBuf::from("/out/checkpoints/epoch-1"),
                best: true,
                seconds: 1.0,
            }),
        ));
        assert_eq!(run.best_epoch, Some(1));
        assert!(run.adapter_ready());
        assert!(run.fraction() < 1.0);
        // Epoch 2: an example on, then the end.
        run.apply(train(
            7,
            TrainEvent::Example {
                epoch: 2,
                done: 1,
                total: 4,
                loss: 0.1,
            },
        ));
        assert_eq!(run.examples_done, 5);
        assert_eq!(run.phase, Phase::Training(2));
        run.apply(Event::JobCancelled { job: 7 });
        assert_eq!(run.phase, Phase::Cancelled);
        assert!(!run.is_running());
        assert_eq!(run.eta_secs(), None);
        let rows: Vec<(String, bool)> = run.rows().into_iter().map(|(l, _, b)| (l, b)).collect();
        assert_eq!(
            rows,
            [
                ("before training".to_string(), false),
                ("epoch 1".to_string(), true)
            ]
        );
    }
}
