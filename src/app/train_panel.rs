//! The Train tab: fine-tune the LLM recommender with LoRA (as LLM-TRSR does) on the
//! loaded dataset's `train` cases, validating on its `val` cases after each epoch.
//!
//! Left: where the cases and summaries come from, the model, the settings (persisted
//! with the app settings), the output folder, Start / Cancel. Right: the run's
//! progress with an ETA, the loss curve (per example and per optimiser step), the
//! validation metrics per epoch (best marked), and "Use this adapter", which reloads
//! the model with the adapter so the Ranking tab scores with the fine-tuned recommender.
//!
//! The work is the worker's Train job (`worker::train`); this tab builds the job from
//! owned data, follows its events ([`observe_events`]) and draws.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use eframe::egui;
use egui_plot::{Legend, Line, Plot, Points, VLine};

use super::{Command, ModelStatus, Settings, Workbench};
use crate::curate::{Key, Status};
use crate::data::Case;
use crate::metrics::{metric_names, Summary};
use crate::train::{BuildReport, EpochRecord, LossOn, TrainEvent, TrainReport, TrainSettings};
use crate::worker::{Event, JobId, JobSpec, TrainJob};

/// The split the training cases come from.
pub const TRAIN_SPLIT: &str = "train";
/// The split the validation cases come from.
pub const VAL_SPLIT: &str = "val";

/// The projections LoRA can target: (Hugging Face name, label).
pub const TARGETS: [(&str, &str); 7] = [
    ("q_proj", "q"),
    ("k_proj", "k"),
    ("v_proj", "v"),
    ("o_proj", "o"),
    ("gate_proj", "gate"),
    ("up_proj", "up"),
    ("down_proj", "down"),
];

/// The file a PEFT adapter folder holds (what "already holds an adapter" checks).
const ADAPTER_CONFIG: &str = "adapter_config.json";

/// Train-tab requests (wrapped in [`Command::Train`]).
#[derive(Clone, Debug, PartialEq)]
pub enum TrainCmd {
    /// Start a training run with the form's settings.
    Start,
    /// Cancel the running training (at the next example).
    Cancel,
    /// Pick the output folder with a dialog.
    PickOutDir,
    /// Label the loaded cases with the form's split (in memory).
    AssignSplit,
    /// Reload the model with this adapter folder.
    UseAdapter(PathBuf),
    /// Pick an adapter folder for the model (Model & settings).
    PickAdapterFolder,
    /// Take the adapter off the model settings (reload to apply).
    ClearAdapter,
    /// Reload the model without its adapter.
    ReloadBase,
}

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
    fn new(job: JobId, out: PathBuf, settings: TrainSettings) -> Self {
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
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `921,600`.
fn fmt_count(n: usize) -> String {
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

/// The summaries training uses: the final summaries that stand in the open
/// project's curation (edits applied), rejected ones left out; with several methods
/// for a case, `prefer`'s. `None` when no project is open.
pub struct ProjectSummaries {
    pub map: HashMap<String, String>,
    /// Final summaries left out because they were rejected.
    pub rejected: usize,
}

pub fn project_summaries(wb: &Workbench, prefer: &str) -> Option<ProjectSummaries> {
    let c = &wb.project.as_ref()?.project.curation;
    let mut map: HashMap<String, String> = HashMap::new();
    let mut preferred: std::collections::HashSet<String> = Default::default();
    let mut rejected = 0;
    for (case, method, _) in c.traces() {
        if c.status(&Key::final_of(case, method)) == Status::Rejected {
            rejected += 1;
            continue;
        }
        let Ok(text) = c.final_text(case, method) else {
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        if method == prefer {
            preferred.insert(case.to_string());
            map.insert(case.to_string(), text.to_string());
        } else if !preferred.contains(case) {
            map.entry(case.to_string())
                .or_insert_with(|| text.to_string());
        }
    }
    Some(ProjectSummaries { map, rejected })
}

/// A new output folder: `<dataset>/adapters/lora-YYYYMMDD-HHMMSS` (UTC).
pub fn default_out_dir(data_dir: &Path) -> PathBuf {
    data_dir
        .join("adapters")
        .join(format!("lora-{}", utc_stamp()))
}

/// `YYYYMMDD-HHMMSS` of now, in UTC.
fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    stamp_of(secs)
}

/// `YYYYMMDD-HHMMSS` of seconds since 1970-01-01 00:00 UTC.
fn stamp_of(secs: u64) -> String {
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

/// Why Start cannot run now, if it cannot.
pub fn blocker(wb: &Workbench, settings: &Settings) -> Option<String> {
    if wb.train.as_ref().is_some_and(|t| t.is_running()) {
        return Some("a training run is in progress".into());
    }
    let Some(data) = &wb.data else {
        return Some("open a dataset first (File > Open dataset folder)".into());
    };
    if split_cases(&data.cases).train.is_empty() {
        return Some(format!(
            "the dataset has no `{TRAIN_SPLIT}` cases: split them under Cases"
        ));
    }
    match &wb.model {
        ModelStatus::Loaded(_) => {}
        ModelStatus::Loading(_) => return Some("the model is loading".into()),
        _ => return Some("load a model first (Model & settings)".into()),
    }
    if wb.loaded_spec.as_ref().is_some_and(|s| s.adapter.is_some()) {
        return Some("the loaded model carries an adapter: reload the base model to train".into());
    }
    if let Err(e) = settings.train.validate() {
        return Some(format!("{e:#}"));
    }
    None
}

/// Builds and submits the Train job; problems go to the panel.
fn start(wb: &mut Workbench, settings: &Settings, panel: &mut TrainPanel) {
    panel.error = None;
    if let Some(why) = blocker(wb, settings) {
        panel.error = Some(format!("cannot start: {why}"));
        return;
    }
    let Some(data) = wb.data.as_ref() else { return };
    let t = &settings.train;
    let out = if panel.out_dir.trim().is_empty() {
        default_out_dir(&data.dir)
    } else {
        PathBuf::from(panel.out_dir.trim())
    };
    if out.is_file() {
        panel.error = Some(format!("{} is a file, not a folder", out.display()));
        return;
    }
    if out.join(ADAPTER_CONFIG).exists() {
        panel.error = Some(format!(
            "{} already holds an adapter; pick another folder (or empty the field for a new one)",
            out.display()
        ));
        return;
    }
    let split = split_cases(&data.cases);
    let train: Vec<Case> = split
        .train
        .iter()
        .take(t.max_train_cases.unwrap_or(usize::MAX))
        .map(|c| (*c).clone())
        .collect();
    let val: Vec<Case> = split
        .val
        .iter()
        .take(t.max_val_cases.unwrap_or(usize::MAX))
        .map(|c| (*c).clone())
        .collect();
    let summaries = project_summaries(wb, settings.method.name())
        .map(|s| s.map)
        .unwrap_or_default();
    // Only the cases the run reads.
    let summaries: HashMap<String, String> = train
        .iter()
        .chain(&val)
        .filter_map(|c| Some((c.case.clone(), summaries.get(&c.case)?.clone())))
        .collect();
    let count = |cases: &[Case]| {
        cases
            .iter()
            .filter(|c| summaries.contains_key(&c.case))
            .count()
    };
    let (train_with, val_with) = (count(&train), count(&val));
    let (n_train, n_val) = (train.len(), val.len());
    let job = TrainJob {
        train,
        val,
        catalogue: data.catalogue.clone(),
        text_template: settings.text_template.clone(),
        templates: settings.templates.clone(),
        summaries,
        options: settings.recommend.clone(),
        settings: t.clone(),
        out: out.clone(),
    };
    let id = wb.worker.submit(JobSpec::Train(Box::new(job)));
    let mut run = TrainRun::new(id, out.clone(), t.clone());
    run.train_cases = n_train;
    run.val_cases = n_val;
    run.train_with_summary = train_with;
    run.val_with_summary = val_with;
    wb.train = Some(run);
    wb.notify(format!(
        "training on {n_train} cases, validating on {n_val}; output {}",
        out.display()
    ));
}

/// Executes one Train-tab request.
pub fn execute(c: TrainCmd, wb: &mut Workbench, settings: &mut Settings, panel: &mut TrainPanel) {
    match c {
        TrainCmd::Start => start(wb, settings, panel),
        TrainCmd::Cancel => {
            if let Some(j) = wb.train.as_ref().and_then(|t| t.job) {
                wb.worker.cancel(j);
            }
        }
        TrainCmd::PickOutDir => {
            let mut d = rfd::FileDialog::new().set_title("Output folder for the adapter");
            if let Some(dir) = wb.data.as_ref().map(|d| d.dir.join("adapters")) {
                if dir.is_dir() {
                    d = d.set_directory(dir);
                }
            }
            if let Some(p) = d.pick_folder() {
                panel.out_dir = p.display().to_string();
            }
        }
        TrainCmd::AssignSplit => assign_split(wb, panel),
        TrainCmd::UseAdapter(dir) => {
            settings.model.adapter = Some(dir.clone());
            wb.notify(format!(
                "loading the model with the adapter {}",
                dir.display()
            ));
            wb.load_model(settings);
        }
        TrainCmd::PickAdapterFolder => {
            if let Some(p) = rfd::FileDialog::new()
                .set_title("Pick a LoRA adapter folder (PEFT: adapter_config.json)")
                .pick_folder()
            {
                settings.model.adapter = Some(p);
            }
        }
        TrainCmd::ClearAdapter => settings.model.adapter = None,
        TrainCmd::ReloadBase => {
            settings.model.adapter = None;
            wb.load_model(settings);
        }
    }
}

/// Labels the loaded cases with the panel's split (seeded, as `trsr prepare --split`).
fn assign_split(wb: &mut Workbench, panel: &mut TrainPanel) {
    panel.error = None;
    if wb.train.as_ref().is_some_and(|t| t.is_running()) {
        panel.error = Some("a training run is in progress".into());
        return;
    }
    let spec = match crate::data::prepare::parse_split(&panel.split_spec) {
        Ok(s) => s,
        Err(e) => {
            panel.error = Some(format!("split `{}`: {e}", panel.split_spec));
            return;
        }
    };
    if !spec.iter().any(|(n, _)| n == TRAIN_SPLIT) {
        panel.error = Some(format!(
            "split `{}` names no `{TRAIN_SPLIT}` part",
            panel.split_spec
        ));
        return;
    }
    let Some(data) = wb.data.as_mut() else {
        panel.error = Some("open a dataset first".into());
        return;
    };
    let mut cases: Vec<Case> = data.cases.as_ref().clone();
    crate::data::prepare::assign_splits(&mut cases, &spec, panel.split_seed);
    let counts = split_cases(&cases)
        .labels
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    data.cases = std::sync::Arc::new(cases);
    wb.revision += 1;
    wb.notify(format!("cases split: {counts}"));
}

/// Takes the events of the Train tab's job before the other views see them.
pub fn observe_events(wb: &mut Workbench, events: Vec<Event>) -> Vec<Event> {
    let Some(job) = wb.train.as_ref().and_then(|t| t.job) else {
        return events;
    };
    let mut rest = Vec::with_capacity(events.len());
    for ev in events {
        if ev.job() != Some(job) {
            rest.push(ev);
            continue;
        }
        let Some(run) = wb.train.as_mut() else {
            continue;
        };
        let msg = match &ev {
            Event::JobFinished { .. } => Some(match run.best_epoch {
                Some(e) => format!(
                    "training finished: adapter (epoch {e}) in {}",
                    run.out.display()
                ),
                None => format!("training finished; output in {}", run.out.display()),
            }),
            Event::JobCancelled { .. } => Some("training cancelled".to_string()),
            Event::JobFailed { error, .. } => Some(format!("training failed: {error}")),
            _ => None,
        };
        run.apply(ev);
        if let Some(m) = msg {
            wb.notify(m);
        }
    }
    rest
}

/// The Train tab.
pub fn train_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    panel: &mut TrainPanel,
    cmds: &mut Vec<Command>,
) {
    egui::Panel::left("train_form_panel")
        .resizable(true)
        .default_size(450.0)
        .min_size(320.0)
        .frame(egui::Frame::NONE.inner_margin(egui::Margin {
            right: 8,
            ..Default::default()
        }))
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("train_form")
                .auto_shrink([false, false])
                .show(ui, |ui| form_ui(ui, wb, settings, panel, cmds));
        });
    egui::CentralPanel::default()
        .frame(egui::Frame::NONE.inner_margin(egui::Margin {
            left: 8,
            ..Default::default()
        }))
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("train_run")
                .auto_shrink([false, false])
                .show(ui, |ui| run_ui(ui, wb, settings, panel, cmds));
        });
}

fn warn(ui: &mut egui::Ui, text: impl Into<String>) {
    ui.colored_label(ui.visuals().warn_fg_color, text.into());
}

fn error(ui: &mut egui::Ui, text: impl Into<String>) {
    ui.colored_label(ui.visuals().error_fg_color, text.into());
}

/// Where the cases come from (and the split offer when there is none).
fn data_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &Settings,
    panel: &mut TrainPanel,
    cmds: &mut Vec<Command>,
) {
    ui.heading("Cases");
    let Some(data) = &wb.data else {
        ui.label("No dataset is open. Open one (File > Open dataset folder); training uses its prepared `train` and `val` splits.");
        return;
    };
    let split = split_cases(&data.cases);
    let t = &settings.train;
    let take = |n: usize, max: Option<usize>| max.map_or(n, |m| m.min(n));
    ui.label(format!(
        "From {}: the `{TRAIN_SPLIT}` split trains, the `{VAL_SPLIT}` split validates each epoch.",
        data.dir.display()
    ));
    if !split.labels.is_empty() {
        let labels: Vec<String> = split
            .labels
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let mut s = format!("Splits: {}", labels.join(", "));
        if split.unlabelled > 0 {
            s.push_str(&format!(", no split {}", split.unlabelled));
        }
        ui.label(s);
    }
    if split.train.is_empty() {
        if split.labels.is_empty() {
            warn(
                ui,
                format!(
                    "These {} cases have no split (a raw folder is prepared on opening without one).",
                    data.cases.len()
                ),
            );
        } else {
            warn(ui, format!("No case has the split `{TRAIN_SPLIT}`."));
        }
        ui.label("Split them here (kept in this window until the folder is opened again):");
        ui.horizontal(|ui| {
            let l = ui.label("Split");
            ui.add(egui::TextEdit::singleline(&mut panel.split_spec).desired_width(200.0))
                .labelled_by(l.id);
            let l = ui.label("seed");
            ui.add(egui::DragValue::new(&mut panel.split_seed))
                .labelled_by(l.id);
            if ui.button("Split the cases").clicked() {
                cmds.push(Command::Train(TrainCmd::AssignSplit));
            }
        });
        ui.weak("Or prepare a folder with a split and open it: trsr prepare --input DIR --out PREP --split train=0.8,val=0.1,test=0.1");
        return;
    }
    ui.label(format!(
        "Training on {} of {} `{TRAIN_SPLIT}` cases, validating on {} of {} `{VAL_SPLIT}` cases.",
        take(split.train.len(), t.max_train_cases),
        split.train.len(),
        take(split.val.len(), t.max_val_cases),
        split.val.len(),
    ));
    if split.val.is_empty() {
        warn(
            ui,
            format!("No `{VAL_SPLIT}` cases: no validation; the last epoch is kept."),
        );
    }
}

/// Which summaries the prompts hold.
fn summaries_ui(ui: &mut egui::Ui, wb: &Workbench, settings: &Settings) {
    ui.heading("Summaries");
    let r = &settings.recommend;
    if r.full_history {
        ui.label("The prompts hold the full history in place of a summary (Ranking options).");
        return;
    }
    if !r.use_summary {
        ui.label("The summary section is off (Ranking tab, \"summary\"): prompts hold recent items only.");
        return;
    }
    let Some(s) = project_summaries(wb, settings.method.name()) else {
        ui.label("No project is open: no summaries; the prompts hold recent items only (no summary section).");
        ui.weak("Open a project with curated summaries (File > Open or new project) to train with them.");
        return;
    };
    let Some(data) = &wb.data else { return };
    let split = split_cases(&data.cases);
    let t = &settings.train;
    let count = |cases: &[&Case], max: Option<usize>| {
        let cases = &cases[..max.map_or(cases.len(), |m| m.min(cases.len()))];
        (
            cases.iter().filter(|c| s.map.contains_key(&c.case)).count(),
            cases.len(),
        )
    };
    let (tw, tn) = count(&split.train, t.max_train_cases);
    let (vw, vn) = count(&split.val, t.max_val_cases);
    ui.label(format!(
        "The project's final summaries (curated text where edited; {} preferred): {tw} of {tn} training and {vw} of {vn} validation cases have one.",
        settings.method.name()
    ));
    if s.rejected > 0 {
        ui.label(if s.rejected == 1 {
            "1 rejected summary is left out.".to_string()
        } else {
            format!("{} rejected summaries are left out.", s.rejected)
        });
    }
    if tw < tn || vw < vn {
        ui.weak("Cases without one are trained and validated without the summary section.");
    }
}

/// The model training starts from.
fn model_ui(ui: &mut egui::Ui, wb: &Workbench, cmds: &mut Vec<Command>) {
    ui.heading("Model");
    match &wb.model {
        ModelStatus::Loaded(m) => match wb.loaded_spec.as_ref().and_then(|s| s.adapter.as_ref()) {
            None => {
                ui.label(format!(
                    "Base: {} on {} (LoRA weights are trained on it; the base stays as it is).",
                    m.identity.name, m.device
                ));
            }
            Some(a) => {
                warn(
                        ui,
                        format!(
                            "The loaded model ({}) carries the adapter {}: training starts from the base model.",
                            m.identity.name,
                            a.display()
                        ),
                    );
                if ui.button("Reload the base model").clicked() {
                    cmds.push(Command::Train(TrainCmd::ReloadBase));
                }
            }
        },
        ModelStatus::Loading(s) => {
            ui.label(format!("Loading {}...", s.model));
        }
        ModelStatus::None | ModelStatus::Failed(_) => {
            ui.label("No model is loaded: load one under Model & settings.");
        }
    }
}

/// An optional case limit: a checkbox "all" and a number.
fn limit_ui(ui: &mut egui::Ui, label: &str, v: &mut Option<usize>) {
    ui.horizontal(|ui| {
        let mut all = v.is_none();
        if ui.checkbox(&mut all, "all").changed() {
            *v = if all { None } else { Some(100) };
        }
        if let Some(n) = v {
            let l = ui.label("at most");
            ui.add(egui::DragValue::new(n).range(1..=1_000_000))
                .labelled_by(l.id)
                .on_hover_text(label.to_string());
        }
    });
}

/// The training settings.
fn settings_ui(ui: &mut egui::Ui, settings: &mut Settings, panel: &mut TrainPanel) {
    ui.heading("Settings");
    let t = &mut settings.train;
    egui::Grid::new("train_grid")
        .num_columns(2)
        .spacing([12.0, 6.0])
        .show(ui, |ui| {
            let l = ui.label("Epochs");
            ui.add(egui::DragValue::new(&mut t.epochs).range(1..=1000))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Batch size");
            ui.add(egui::DragValue::new(&mut t.batch_size).range(1..=1024))
                .labelled_by(l.id)
                .on_hover_text("examples per micro-batch");
            ui.end_row();
            let l = ui.label("Gradient accumulation");
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut t.grad_accum).range(1..=1024))
                    .labelled_by(l.id)
                    .on_hover_text("micro-batches per optimiser step");
                ui.weak(format!(
                    "= {} per step",
                    plural(t.batch_size * t.grad_accum, "example")
                ));
            });
            ui.end_row();
            let l = ui.label("Learning rate");
            ui.add(
                egui::Slider::new(&mut t.lr, 1e-6..=1e-2)
                    .logarithmic(true)
                    .custom_formatter(|v, _| format!("{v:.1e}"))
                    .custom_parser(|s| s.trim().parse().ok()),
            )
            .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Warmup (fraction of steps)");
            ui.add(egui::Slider::new(&mut t.warmup, 0.0..=0.9).fixed_decimals(2))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Weight decay");
            ui.add(
                egui::DragValue::new(&mut t.weight_decay)
                    .range(0.0..=1.0)
                    .speed(1e-4)
                    .custom_formatter(|v, _| format!("{v:.1e}"))
                    .custom_parser(|s| s.trim().parse().ok()),
            )
            .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("LoRA r");
            ui.add(egui::DragValue::new(&mut t.lora_r).range(1..=512))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("LoRA alpha");
            ui.add(
                egui::DragValue::new(&mut t.lora_alpha)
                    .range(0.5..=1024.0)
                    .speed(0.5),
            )
            .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("LoRA dropout");
            ui.add(egui::Slider::new(&mut t.lora_dropout, 0.0..=0.5).fixed_decimals(2))
                .labelled_by(l.id);
            ui.end_row();
            ui.label("Target projections");
            ui.horizontal(|ui| {
                for (name, label) in TARGETS {
                    let mut on = t.targets.iter().any(|x| x == name);
                    if ui.checkbox(&mut on, label).on_hover_text(name).changed() {
                        t.targets.retain(|x| x != name);
                        if on {
                            t.targets.push(name.to_string());
                            let order = |n: &String| TARGETS.iter().position(|(t, _)| t == n);
                            t.targets.sort_by_key(order);
                        }
                    }
                }
            });
            ui.end_row();
            ui.label("Loss on");
            ui.horizontal(|ui| {
                ui.radio_value(&mut t.loss_on, LossOn::Answer, "answer token")
                    .on_hover_text("the loss covers the yes/no answer only");
                ui.radio_value(&mut t.loss_on, LossOn::Text, "whole text")
                    .on_hover_text("the loss covers prompt and answer (the reference code)");
            });
            ui.end_row();
            ui.label("Training cases");
            limit_ui(ui, "training cases", &mut t.max_train_cases);
            ui.end_row();
            ui.label("Validation cases");
            limit_ui(ui, "validation cases", &mut t.max_val_cases);
            ui.end_row();
            let l = ui.label("Seed");
            ui.add(egui::DragValue::new(&mut t.seed)).labelled_by(l.id);
            ui.end_row();
            ui.label("Validation");
            ui.checkbox(&mut t.validate_before, "also before training");
            ui.end_row();
            let l = ui.label("Metrics at K");
            let text = panel.ks_text.get_or_insert_with(|| {
                t.ks.iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let r = ui
                .add(egui::TextEdit::singleline(text).desired_width(100.0))
                .labelled_by(l.id)
                .on_hover_text("cut-offs; the best epoch has the highest recall at the first");
            if r.changed() {
                let parsed: Result<Vec<usize>, _> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::parse)
                    .collect();
                if let Ok(ks) = parsed {
                    t.ks = ks;
                } else {
                    // Shown below as a settings problem.
                    t.ks = Vec::new();
                }
            }
            ui.end_row();
        });
    ui.horizontal(|ui| {
        if ui
            .button("Paper's settings")
            .on_hover_text("5 epochs, batch 4 x 4, lr 1e-4, warmup 0.1, LoRA r 8 / alpha 16 / dropout 0.05 on q, k, v, o")
            .clicked()
        {
            settings.train = TrainSettings::default();
            panel.ks_text = None;
        }
    });
    if let Err(e) = settings.train.validate() {
        error(ui, format!("{e:#}"));
    }
}

fn form_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &mut Settings,
    panel: &mut TrainPanel,
    cmds: &mut Vec<Command>,
) {
    let running = wb.train.as_ref().is_some_and(|t| t.is_running());
    ui.add_enabled_ui(!running, |ui| {
        data_ui(ui, wb, settings, panel, cmds);
        ui.separator();
        summaries_ui(ui, wb, settings);
        ui.separator();
        model_ui(ui, wb, cmds);
        ui.separator();
        settings_ui(ui, settings, panel);
    });
}

/// The output folder and Start / Cancel.
fn start_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &Settings,
    panel: &mut TrainPanel,
    cmds: &mut Vec<Command>,
) {
    let running = wb.train.as_ref().is_some_and(|t| t.is_running());
    ui.add_enabled_ui(!running, |ui| {
        ui.horizontal(|ui| {
            let l = ui.label("Output folder");
            let hint = wb
                .data
                .as_ref()
                .map(|d| {
                    d.dir
                        .join("adapters")
                        .join("lora-<date-time>")
                        .display()
                        .to_string()
                })
                .unwrap_or_else(|| "<dataset>/adapters/lora-<date-time>".into());
            ui.add(
                egui::TextEdit::singleline(&mut panel.out_dir)
                    .hint_text(hint)
                    .desired_width((ui.available_width() - 90.0).max(120.0)),
            )
            .labelled_by(l.id)
            .on_hover_text("the adapter (PEFT format), checkpoints/ per epoch and train_log.json; empty: a new folder under the dataset's adapters/");
            if ui.button("Browse...").clicked() {
                cmds.push(Command::Train(TrainCmd::PickOutDir));
            }
        });
    });
    ui.horizontal_wrapped(|ui| {
        let why = blocker(wb, settings);
        if ui
            .add_enabled(why.is_none(), egui::Button::new("Start training"))
            .clicked()
        {
            cmds.push(Command::Train(TrainCmd::Start));
        }
        if ui
            .add_enabled(running, egui::Button::new("Cancel training"))
            .on_hover_text(format!(
                "Stops at the next example; finished epochs are kept ({} cancels every job)",
                super::command::shortcut_text(ui.ctx(), Command::Cancel)
            ))
            .clicked()
        {
            cmds.push(Command::Train(TrainCmd::Cancel));
        }
        if let Some(w) = why.filter(|_| !running) {
            if settings.train.validate().is_err() {
                // The problem is shown in red under the settings.
                ui.weak("fix the settings on the left");
            } else {
                ui.weak(w);
            }
        }
    });
    if let Some(e) = &panel.error {
        error(ui, e.clone());
    }
}

/// The run: progress, loss curve, validation.
fn run_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    settings: &Settings,
    panel: &mut TrainPanel,
    cmds: &mut Vec<Command>,
) {
    ui.heading("Run");
    start_ui(ui, wb, settings, panel, cmds);
    ui.separator();
    let Some(run) = &wb.train else {
        ui.weak("No training run yet: set it up and press Start training.");
        ui.weak("On a CPU, one training example of the default 135M model takes a few seconds, one validation case about as long.");
        return;
    };
    ui.label(format!("Output: {}", run.out.display()));
    if run.is_running() {
        let eta = run
            .eta_secs()
            .map(|s| format!(" · ETA {}", fmt_secs(s)))
            .unwrap_or_else(|| " · ETA: estimating".into());
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(run.phase_text());
        });
        ui.add(
            egui::ProgressBar::new(run.fraction())
                .show_percentage()
                .text(format!(
                    "{:.0}% · {} elapsed{eta}",
                    run.fraction() * 100.0,
                    fmt_secs(run.started.elapsed().as_secs_f64())
                )),
        );
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(500));
    } else {
        let took = run
            .finished_at
            .map(|t| fmt_secs(t.duration_since(run.started).as_secs_f64()))
            .unwrap_or_default();
        match run.phase {
            Phase::Finished => {
                ui.label(format!("Finished in {took}."));
            }
            Phase::Cancelled => {
                warn(ui, format!("Cancelled after {took}."));
                let interrupted = run.out.join("checkpoints").join("interrupted");
                let mut s = format!(
                    "Finished epochs' checkpoints are in {}",
                    run.out.join("checkpoints").display()
                );
                if run.report.as_ref().is_some_and(|r| r.cancelled) {
                    s.push_str(&format!(
                        "; the weights at the cancel in {}",
                        interrupted.display()
                    ));
                }
                ui.label(s + ".");
            }
            Phase::Failed => {
                error(
                    ui,
                    format!(
                        "Training failed: {}",
                        run.error.as_deref().unwrap_or("unknown error")
                    ),
                );
            }
            _ => {}
        }
        ui.add(egui::ProgressBar::new(run.fraction()).show_percentage());
    }
    if let Some(b) = &run.build {
        ui.label(format!(
            "{} from {} ({} with a summary, {} without; longest {} tokens) · {} · {} trainable parameters",
            plural(b.examples, "example"),
            plural(b.cases, "case"),
            b.with_summary,
            b.without_summary,
            b.longest_tokens,
            plural(run.steps_total, "optimiser step"),
            fmt_count(run.trainable)
        ));
        if b.no_negative > 0 {
            warn(
                ui,
                format!("{} cases without negatives were left out.", b.no_negative),
            );
        }
    }
    if let Some((step, loss, lr)) = run.last_step {
        ui.label(format!(
            "Step {step}/{}: loss {loss:.4}, learning rate {lr:.2e}",
            run.steps_total
        ));
    }
    if run.adapter_ready() {
        ui.horizontal_wrapped(|ui| {
            let e = run.best_epoch.unwrap_or_default();
            ui.label(format!("Adapter (epoch {e}, best): {}", run.out.display()));
        });
        let in_use = wb
            .loaded_spec
            .as_ref()
            .and_then(|s| s.adapter.as_ref())
            .is_some_and(|a| a == &run.out);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(
                    !run.is_running() && !in_use,
                    egui::Button::new("Use this adapter"),
                )
                .on_hover_text("Reload the model with this adapter: the Ranking tab (and summaries) then use the fine-tuned model")
                .clicked()
            {
                cmds.push(Command::Train(TrainCmd::UseAdapter(run.out.clone())));
            }
            if in_use {
                ui.weak("the loaded model uses this adapter");
            } else if run.is_running() {
                ui.weak("(when the run has ended)");
            }
        });
    }
    ui.separator();
    ui.strong("Training loss");
    let per_example = run.example_losses.clone();
    let per_step = run.step_losses.clone();
    let epoch_ends: Vec<f64> = (1..run.settings.epochs)
        .map(|e| (e * run.examples_per_epoch) as f64 + 0.5)
        .filter(|x| *x < run.examples_done as f64)
        .collect();
    Plot::new("train_loss_plot")
        .height(220.0)
        .legend(Legend::default().position(egui_plot::Corner::LeftBottom))
        .x_axis_label("example")
        .y_axis_label("loss")
        .include_x(0.0)
        .include_x((run.examples_per_epoch * run.settings.epochs) as f64 + 0.5)
        .include_y(0.0)
        .include_y(1.0)
        .show(ui, |p| {
            let step_color = egui::Color32::from_rgb(90, 160, 240);
            p.line(
                Line::new("per step (mean)", per_step.clone())
                    .width(2.0)
                    .color(step_color),
            );
            p.points(
                Points::new("per step (mean)", per_step)
                    .radius(3.5)
                    .color(step_color),
            );
            // On top: with one example per step both mark the same place.
            p.points(
                Points::new("per example", per_example)
                    .radius(2.0)
                    .color(egui::Color32::from_rgb(240, 150, 80)),
            );
            for x in epoch_ends {
                p.vline(VLine::new("epoch end", x).color(egui::Color32::GRAY));
            }
        });
    ui.separator();
    match run.validations.first() {
        Some((_, m)) => ui.strong(format!("Validation ({})", plural(m.cases, "case"))),
        None => ui.strong("Validation"),
    };
    if run.val_cases == 0 && run.build.is_some() {
        ui.weak("No validation cases: the last epoch is kept.");
    } else if run.validations.is_empty() {
        ui.weak("Metrics appear after each epoch (and before training when chosen).");
    }
    let rows = run.rows();
    if !rows.is_empty() {
        let names: Vec<String> = metric_names(&run.settings.ks)
            .into_iter()
            .filter(|n| n != "auc")
            .collect();
        egui::ScrollArea::horizontal()
            .id_salt("train_val_table")
            .show(ui, |ui| {
                egui::Grid::new("train_val_grid")
                    .striped(true)
                    .num_columns(names.len() + 1)
                    .show(ui, |ui| {
                        ui.strong("");
                        for n in &names {
                            ui.strong(n);
                        }
                        ui.end_row();
                        for (label, m, best) in &rows {
                            if *best {
                                ui.strong(format!("{label} (best)"));
                            } else {
                                ui.label(label);
                            }
                            for n in &names {
                                let v = m
                                    .metrics
                                    .get(n)
                                    .map(|v| format!("{v:.3}"))
                                    .unwrap_or_default();
                                if *best {
                                    ui.strong(v);
                                } else {
                                    ui.label(v);
                                }
                            }
                            ui.end_row();
                        }
                    });
            });
        let k = run.settings.ks.first().copied().unwrap_or(5);
        let series: Vec<(String, egui::Color32, Vec<[f64; 2]>)> = [
            ("recall", egui::Color32::from_rgb(90, 160, 240)),
            ("mrr", egui::Color32::from_rgb(230, 110, 110)),
            ("ndcg", egui::Color32::from_rgb(110, 200, 130)),
        ]
        .iter()
        .map(|(m, color)| {
            let name = format!("{m}@{k}");
            let pts = run
                .validations
                .iter()
                .filter_map(|(e, s)| Some([*e as f64, *s.metrics.get(&name)?]))
                .collect();
            (name, *color, pts)
        })
        .collect();
        let best = run.best_epoch;
        Plot::new("train_val_plot")
            .height(180.0)
            .legend(Legend::default().position(egui_plot::Corner::RightBottom))
            .x_axis_label("epoch (0: before training)")
            .include_x(-0.25)
            .include_x(run.settings.epochs as f64 + 0.25)
            .include_y(0.0)
            .include_y(1.0)
            .show(ui, |p| {
                for (name, color, pts) in series {
                    // Line and points share name and colour: one legend entry.
                    p.line(Line::new(name.clone(), pts.clone()).color(color));
                    p.points(Points::new(name, pts).radius(3.0).color(color));
                }
                if let Some(e) = best.filter(|_| rows.len() > 1) {
                    p.vline(
                        VLine::new("best epoch", e as f64)
                            .color(egui::Color32::from_rgb(230, 180, 40)),
                    );
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::EpochRecord;

    #[test]
    fn stamps_counts_and_durations_read_well() {
        assert_eq!(stamp_of(0), "19700101-000000");
        assert_eq!(stamp_of(951_782_400), "20000229-000000");
        assert_eq!(stamp_of(1_700_000_000), "20231114-221320");
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
