//! The Train tab's actions: its commands ([`TrainCmd`], run at the end of the frame),
//! building and submitting the worker's Train job from owned data, splitting the loaded
//! cases, and following the job's events ([`observe_events`]).

use std::collections::HashMap;
use std::path::PathBuf;

use super::state::{default_out_dir, split_cases, TrainPanel, TrainRun, TRAIN_SPLIT};
use crate::app::notices::Notice;
use crate::app::{ModelStatus, Settings, Workbench};
use crate::curate::{Key, Status};
use crate::data::Case;
use crate::worker::{Event, JobSpec, TrainJob};

/// The file a PEFT adapter folder holds (what "already holds an adapter" checks).
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// Train-tab requests (wrapped in [`crate::app::Command::Train`]).
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
    /// Load this folder (a full fine-tuning's output) as the model, without an adapter.
    UseModel(PathBuf),
    /// Pick an adapter folder for the model (Model & settings).
    PickAdapterFolder,
    /// Take the adapter off the model settings (reload to apply).
    ClearAdapter,
    /// Reload the model without its adapter.
    ReloadBase,
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
        default_out_dir(&data.dir, t.full)
    } else {
        PathBuf::from(panel.out_dir.trim())
    };
    if out.is_file() {
        panel.error = Some(format!("{} is a file, not a folder", out.display()));
        return;
    }
    for (file, what) in [
        (ADAPTER_CONFIG, "an adapter"),
        (crate::train::FULL_GGUF_FILE, "a model"),
        (crate::train::FULL_SAFETENSORS_FILE, "a model"),
    ] {
        if out.join(file).exists() {
            panel.error = Some(format!(
                "{} already holds {what}; pick another folder (or empty the field for a new one)",
                out.display()
            ));
            return;
        }
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
    wb.notify(Notice::info(format!(
        "training on {n_train} cases, validating on {n_val}; output {}",
        out.display()
    )));
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
            wb.notify(Notice::info(format!(
                "loading the model with the adapter {}",
                dir.display()
            )));
            wb.load_model(settings);
        }
        TrainCmd::UseModel(dir) => {
            settings.model.model = dir.display().to_string();
            settings.model.adapter = None;
            wb.notify(Notice::info(format!(
                "loading the fine-tuned model {}",
                dir.display()
            )));
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
    wb.notify(Notice::info(format!("cases split: {counts}")));
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
            Event::JobFinished { .. } => Some(Notice::info(match run.best_epoch {
                Some(e) => format!(
                    "training finished: {} (epoch {e}) in {}",
                    if run.settings.full {
                        "model"
                    } else {
                        "adapter"
                    },
                    run.out.display()
                ),
                None => format!("training finished; output in {}", run.out.display()),
            })),
            Event::JobCancelled { .. } => Some(Notice::warning("training cancelled")),
            Event::JobFailed { error, .. } => {
                Some(Notice::error(format!("training failed: {error}")))
            }
            _ => None,
        };
        run.apply(ev);
        if let Some(m) = msg {
            wb.notify(m);
        }
    }
    rest
}
