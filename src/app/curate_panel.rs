//! The Curation tab: review the summaries of a project's cases (each step and the
//! final one), accept / reject / flag / edit them with a word diff against the
//! model's text, add notes, undo and redo; re-run only what an edit made stale and
//! see the ranking before and after. Also the open project's session: the file,
//! its autosaver (saves run on a background thread), and the re-run jobs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eframe::egui;
use egui::{Key as EKey, Modifiers};

use super::{Command, Settings, Workbench};
use crate::curate::{self, Curation, DiffOp, Edit, Key, Scope, Status, Target};
use crate::metrics::ScoredCandidate;
use crate::project::{Autosaver, DatasetRef, Project, ProjectError};
use crate::worker::jobs::{JobOutput, ScoreJob, SummarizeJob, SummaryResult};
use crate::worker::{Event, JobId, JobSpec};

/// Curation requests (wrapped in [`Command::Curate`]).
#[derive(Clone, Debug, PartialEq)]
pub enum CurateCmd {
    /// One undoable edit of one summary.
    Apply(Key, Edit),
    Undo,
    Redo,
    /// Show this (case, method).
    Select(String, String),
    /// Next (+1) / previous (-1) case in the filtered list.
    Move(i32),
    /// Next (+1) / previous (-1) summary (step or final) within the case.
    MoveTarget(i32),
    SelectTarget(Target),
    /// Open the text editor on the selected summary.
    StartEdit,
    /// Re-run exactly what `Curation::rerun_plan` lists, then re-score.
    RerunStale,
}

/// The curation keys, shown in the help overlay. Plain letters act only while the
/// Curation tab is shown and no text field has the focus.
pub const CURATE_SHORTCUTS: &[(&str, &str)] = &[
    ("A", "Accept the selected summary"),
    ("R", "Reject the selected summary"),
    ("F", "Flag the selected summary"),
    ("E", "Edit the selected summary"),
    ("J / K", "Next / previous case"),
    ("N / P", "Next / previous summary of the case"),
    ("Ctrl+Z", "Undo (curation)"),
    ("Ctrl+Shift+Z, Ctrl+Y", "Redo (curation)"),
];

/// Which cases the list shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaseFilter {
    #[default]
    All,
    /// The final summary has this status.
    Status(Status),
    /// Something in the trace is stale.
    Stale,
}

impl CaseFilter {
    pub const ALL: [CaseFilter; 6] = [
        CaseFilter::All,
        CaseFilter::Status(Status::Unreviewed),
        CaseFilter::Status(Status::Accepted),
        CaseFilter::Status(Status::Rejected),
        CaseFilter::Status(Status::Flagged),
        CaseFilter::Stale,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CaseFilter::All => "all",
            CaseFilter::Status(s) => s.name(),
            CaseFilter::Stale => "stale",
        }
    }
}

/// The Curation tab's own state.
#[derive(Default)]
pub struct CuratePanel {
    /// The (case, method) shown.
    pub current: Option<(String, String)>,
    pub target: Option<Target>,
    pub filter: CaseFilter,
    /// The text editor: the key being edited and the text so far.
    pub editor: Option<(Key, String)>,
    /// The notes being typed for a key (committed when the field loses focus).
    pub notes: Option<(Key, String)>,
    /// The workbench's selected case last frame (to follow the dataset list).
    last_selected: Option<String>,
}

/// The (case, method) pairs the list shows, in order.
pub fn entries(curation: &Curation, filter: CaseFilter) -> Vec<(String, String)> {
    curation
        .traces()
        .filter(|(case, method, _)| match filter {
            CaseFilter::All => true,
            CaseFilter::Status(s) => curation.status(&Key::final_of(*case, *method)) == s,
            CaseFilter::Stale => curation
                .staleness(case, method)
                .is_ok_and(|s| !s.is_fresh()),
        })
        .map(|(c, m, _)| (c.to_string(), m.to_string()))
        .collect()
}

/// The targets of a trace, in display order: each step, then the final summary.
fn targets(curation: &Curation, case: &str, method: &str) -> Vec<Target> {
    let n = curation.trace(case, method).map_or(0, |t| t.steps.len());
    (0..n).map(Target::Step).chain([Target::Final]).collect()
}

/// What a re-run job of the curation is for.
#[derive(Clone, Debug, PartialEq)]
enum RerunJob {
    Steps {
        case: String,
        method: String,
        from: usize,
        rescore: bool,
    },
    Score {
        case: String,
        method: String,
    },
}

/// An open project: the file, its autosaver, and the curation's jobs.
pub struct ProjectSession {
    pub path: PathBuf,
    pub project: Project,
    pub autosaver: Autosaver,
    saving: Option<JoinHandle<Result<(), ProjectError>>>,
    /// The last save's outcome, for the tab's header.
    pub save_state: String,
    /// Full traces of summaries run in this session, by (case, method): what a
    /// re-run resumes from.
    pub results: HashMap<(String, String), SummaryResult>,
    jobs: HashMap<JobId, RerunJob>,
    /// What the re-runs did, newest last.
    pub log: Vec<String>,
}

impl ProjectSession {
    /// Opens `path`, or creates it (naming `data` as its dataset) when it does not exist.
    pub fn open_or_create(path: &Path, data: Option<&Path>) -> Result<Self, ProjectError> {
        let (project, state) = if path.exists() {
            (Project::load(path)?, format!("opened {}", path.display()))
        } else {
            let project = Project {
                dataset: data.map(|d| DatasetRef {
                    path: d.to_path_buf(),
                    format: None,
                }),
                ..Project::default()
            };
            project.save(path)?;
            (project, format!("created {}", path.display()))
        };
        Ok(Self {
            path: path.to_path_buf(),
            project,
            autosaver: Autosaver::default(),
            saving: None,
            save_state: state,
            results: HashMap::new(),
            jobs: HashMap::new(),
            log: Vec::new(),
        })
    }

    /// The dataset folder the project names, resolved against the project's folder.
    pub fn dataset_dir(&self) -> Option<PathBuf> {
        self.project
            .dataset
            .as_ref()
            .map(|d| Project::resolve(&self.path, &d.path))
    }

    pub fn changed(&mut self) {
        self.autosaver.changed();
    }

    pub fn is_saving(&self) -> bool {
        self.saving.is_some()
    }

    /// Finishes a background save that ended, and starts one when the autosaver
    /// says a save is due. Returns an error message to show, if a save failed.
    pub fn poll_save(&mut self, now: Instant) -> Option<String> {
        let mut failed = None;
        if self.saving.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(h) = self.saving.take() {
                failed = self.finish(h, now);
            }
        }
        if self.saving.is_none() && self.autosaver.tick(now) {
            let project = self.project.clone();
            let path = self.path.clone();
            let spawned = std::thread::Builder::new()
                .name("project-save".into())
                .spawn(move || project.save(&path));
            match spawned {
                Ok(h) => self.saving = Some(h),
                Err(e) => {
                    self.autosaver.save_failed(now);
                    failed = Some(format!("could not start saving the project: {e}"));
                }
            }
        }
        failed
    }

    fn finish(&mut self, h: JoinHandle<Result<(), ProjectError>>, now: Instant) -> Option<String> {
        match h.join() {
            Ok(Ok(())) => {
                self.save_state = format!("saved {}", self.path.display());
                None
            }
            Ok(Err(e)) => {
                self.autosaver.save_failed(now);
                self.save_state = "not saved".into();
                Some(format!("could not save the project: {e}"))
            }
            Err(_) => {
                self.autosaver.save_failed(now);
                self.save_state = "not saved".into();
                Some("the project save thread failed".into())
            }
        }
    }

    /// Waits for a running save, then saves now if anything is unsaved (on exit,
    /// and from tests).
    pub fn flush(&mut self) -> Result<(), String> {
        let now = Instant::now();
        if let Some(h) = self.saving.take() {
            if let Some(e) = self.finish(h, now) {
                return Err(e);
            }
        }
        // Far enough ahead that any pending change is due.
        if self
            .autosaver
            .tick(now + self.autosaver.max_wait + Duration::from_secs(1))
        {
            if let Err(e) = self.project.save(&self.path) {
                self.autosaver.save_failed(now);
                return Err(format!("could not save the project: {e}"));
            }
            self.save_state = format!("saved {}", self.path.display());
        }
        Ok(())
    }

    /// Records a summary the window produced into the curation (its trace replaces
    /// the previous one; annotations stay). The same outputs as the trace already
    /// in the project (e.g. a cached summary of a reopened project) change nothing
    /// there, so its scores are kept; the full trace is kept for re-runs.
    fn register(&mut self, r: &SummaryResult) -> Result<(), curate::CurateError> {
        let method = r.method.name();
        self.results
            .insert((r.case.clone(), method.to_string()), r.clone());
        let same = self
            .project
            .curation
            .trace(&r.case, method)
            .is_some_and(|t| {
                t.steps.len() == r.steps.len()
                    && t.steps
                        .iter()
                        .zip(&r.steps)
                        .all(|(a, b)| a.output == b.output)
            });
        if same {
            return Ok(());
        }
        let steps = r
            .steps
            .iter()
            .map(|s| {
                let ids: Vec<String> = s
                    .blocks
                    .iter()
                    .filter(|_| s.kind != crate::summarize::StepKind::Merge)
                    .flat_map(|&b| r.blocks.get(b).cloned().unwrap_or_default())
                    .collect();
                (curate_kind(s.kind), ids, s.output.clone())
            })
            .collect();
        self.project
            .curation
            .register_trace(&r.case, method, steps, Some(r.model.name.clone()))?;
        self.changed();
        Ok(())
    }
}

fn curate_kind(k: crate::summarize::StepKind) -> curate::StepKind {
    match k {
        crate::summarize::StepKind::Block => curate::StepKind::Block,
        crate::summarize::StepKind::Update => curate::StepKind::Update,
        crate::summarize::StepKind::Merge => curate::StepKind::Merge,
    }
}

/// A finished summary on screen that the project lacks (e.g. one the window
/// reused from its memory of earlier runs) is added to it.
pub fn adopt_shown_summary(wb: &mut Workbench) {
    let Some(r) = wb
        .summary
        .as_ref()
        .filter(|s| !s.is_running())
        .and_then(|s| s.result.as_ref())
    else {
        return;
    };
    let Some(p) = wb.project.as_mut() else { return };
    let key = (r.case.clone(), r.method.name().to_string());
    if p.results.contains_key(&key) {
        return;
    }
    let r = r.clone();
    if let Err(e) = p.register(&r) {
        wb.notify(format!("could not add the summary to the project: {e}"));
    }
}

/// Takes the worker events that concern the project before the views see them:
/// re-run jobs are the curation's own (consumed); finished summaries and rankings
/// of the window are recorded into the project. Returns the events left for the views.
pub fn observe_events(wb: &mut Workbench, settings: &Settings, events: Vec<Event>) -> Vec<Event> {
    if wb.project.is_none() {
        return events;
    }
    let mut rest = Vec::with_capacity(events.len());
    for ev in events {
        let mine = ev
            .job()
            .is_some_and(|j| wb.project.as_ref().is_some_and(|p| p.jobs.contains_key(&j)));
        if mine {
            on_rerun_event(wb, settings, ev);
            continue;
        }
        if let Event::JobFinished { job, output, .. } = &ev {
            match output {
                JobOutput::Summary(r)
                    if wb.summary.as_ref().is_some_and(|s| s.job == Some(*job)) =>
                {
                    if let Some(p) = wb.project.as_mut() {
                        if let Err(e) = p.register(r) {
                            wb.notify(format!("could not add the summary to the project: {e}"));
                        }
                    }
                }
                JobOutput::Scores(record) => record_window_scores(wb, *job, &record.candidates),
                _ => {}
            }
        }
        rest.push(ev);
    }
    rest
}

/// A ranking from the Ranking tab that used the summary standing in the project is
/// recorded as the case's scores (so later edits make them stale).
fn record_window_scores(wb: &mut Workbench, job: JobId, candidates: &[ScoredCandidate]) {
    let Some(rank) = wb
        .rank
        .as_ref()
        .filter(|r| r.job == Some(job) && r.used_summary)
    else {
        return;
    };
    let Some(result) = wb
        .summary
        .as_ref()
        .filter(|s| s.case == rank.case)
        .and_then(|s| s.result.as_ref())
    else {
        return;
    };
    let (case, method, used) = (
        result.case.clone(),
        result.method.name().to_string(),
        result.final_summary.clone(),
    );
    let Some(p) = wb.project.as_mut() else { return };
    let c = &mut p.project.curation;
    if c.final_text(&case, &method).is_ok_and(|t| t == used)
        && c.record_scores(&case, &method, candidates.to_vec()).is_ok()
    {
        p.changed();
    }
}

fn on_rerun_event(wb: &mut Workbench, settings: &Settings, ev: Event) {
    let Some(job) = ev.job() else { return };
    let terminal = matches!(
        ev,
        Event::JobFinished { .. } | Event::JobCancelled { .. } | Event::JobFailed { .. }
    );
    if !terminal {
        return;
    }
    let Some(p) = wb.project.as_mut() else { return };
    let Some(what) = p.jobs.remove(&job) else {
        return;
    };
    let mut follow: Option<(String, String)> = None;
    let msg = match (ev, what) {
        (
            Event::JobFinished {
                output: JobOutput::Summary(r),
                ..
            },
            RerunJob::Steps {
                case,
                method,
                from,
                rescore,
            },
        ) => {
            let c = &mut p.project.curation;
            let same_shape = c
                .trace(&case, &method)
                .is_some_and(|t| t.steps.len() == r.steps.len());
            let recorded = if same_shape {
                (from..r.steps.len()).try_for_each(|i| {
                    c.record_step_output(&case, &method, i, r.steps[i].output.clone())
                })
            } else {
                p.register(&r)
            };
            p.results
                .insert((case.clone(), method.clone()), (*r).clone());
            p.changed();
            match recorded {
                Ok(()) => {
                    let scored = p
                        .project
                        .curation
                        .trace(&case, &method)
                        .is_some_and(|t| t.scored_sig.is_some());
                    if rescore || scored {
                        follow = Some((case.clone(), method.clone()));
                    }
                    format!("re-ran {case} / {method} from step {from}")
                }
                Err(e) => format!("could not record the re-run of {case} / {method}: {e}"),
            }
        }
        (
            Event::JobFinished {
                output: JobOutput::Scores(record),
                ..
            },
            RerunJob::Score { case, method },
        ) => match p
            .project
            .curation
            .record_scores(&case, &method, record.candidates)
        {
            Ok(()) => {
                p.changed();
                format!("re-scored {case} / {method}")
            }
            Err(e) => format!("could not record the scores of {case} / {method}: {e}"),
        },
        (Event::JobFailed { error, .. }, w) => format!("re-run failed ({w:?}): {error}"),
        (Event::JobCancelled { .. }, w) => format!("re-run cancelled ({w:?})"),
        (_, w) => format!("re-run ended without its result ({w:?})"),
    };
    p.log.push(msg.clone());
    wb.notify(msg);
    if let Some((case, method)) = follow {
        submit_score(wb, settings, &case, &method);
    }
}

fn submit_score(wb: &mut Workbench, settings: &Settings, case_id: &str, method: &str) {
    let (Some(data), Some(p)) = (wb.data.as_ref(), wb.project.as_ref()) else {
        return;
    };
    let Some(case) = data.cases.iter().find(|c| c.case == case_id).cloned() else {
        wb.notify(format!("case {case_id} is not in the open dataset"));
        return;
    };
    let summary = p
        .project
        .curation
        .final_text(case_id, method)
        .ok()
        .map(str::to_string);
    let job = ScoreJob {
        case,
        catalogue: data.catalogue.clone(),
        text_template: settings.text_template.clone(),
        templates: settings.templates.clone(),
        summary,
        options: crate::worker::jobs::RecommendOptions {
            use_summary: true,
            ..settings.recommend.clone()
        },
    };
    let id = wb.worker.submit(JobSpec::Score(Box::new(job)));
    if let Some(p) = wb.project.as_mut() {
        p.jobs.insert(
            id,
            RerunJob::Score {
                case: case_id.to_string(),
                method: method.to_string(),
            },
        );
    }
}

/// Sends the worker exactly what the re-run plan lists: for each stale trace a
/// `resume` from its first stale step (earlier steps kept with their standing,
/// possibly edited, texts), then a re-score; a trace whose only stale part is its
/// scores is just re-scored.
pub fn rerun_stale(wb: &mut Workbench, settings: &Settings) {
    let Some(p) = wb.project.as_ref() else { return };
    let plan = p.project.curation.rerun_plan();
    if plan.is_empty() {
        wb.notify("nothing is stale".into());
        return;
    }
    if !matches!(wb.model, super::ModelStatus::Loaded(_)) {
        wb.notify("load a model first (Model & settings)".into());
        return;
    }
    let Some(data) = wb.data.as_ref() else {
        wb.notify("open the project's dataset first".into());
        return;
    };
    let mut submit: Vec<(JobSpec, RerunJob)> = Vec::new();
    let mut rescore_only: Vec<(String, String)> = Vec::new();
    let mut notes = Vec::new();
    for item in plan {
        let Some(&from) = item.steps.first() else {
            if item.rescore {
                notes.push(format!("re-scoring {} / {}", item.case, item.method));
                rescore_only.push((item.case, item.method));
            }
            continue;
        };
        let Some(prior) = p.results.get(&(item.case.clone(), item.method.clone())) else {
            notes.push(format!(
                "{} / {}: no full trace in this session; run its summary (Summaries tab) first",
                item.case, item.method
            ));
            continue;
        };
        let Some(case) = data.cases.iter().find(|c| c.case == item.case).cloned() else {
            notes.push(format!("case {} is not in the open dataset", item.case));
            continue;
        };
        let mut prior = prior.clone();
        for i in 0..from.min(prior.steps.len()) {
            if let Ok(t) =
                p.project
                    .curation
                    .effective_text(&Key::step(&item.case, &item.method, i))
            {
                prior.steps[i].output = t.to_string();
            }
        }
        let job = SummarizeJob {
            case,
            catalogue: data.catalogue.clone(),
            text_template: settings.text_template.clone(),
            block_params: prior.block_params.clone(),
            method: prior.method,
            sampling: prior.sampling.clone(),
            templates: settings.templates.clone(),
            resume: Some((prior, from)),
            cache: None,
        };
        notes.push(format!(
            "re-running {} / {} steps {:?}",
            item.case, item.method, item.steps
        ));
        submit.push((
            JobSpec::Summarize(Box::new(job)),
            RerunJob::Steps {
                case: item.case,
                method: item.method,
                from,
                rescore: item.rescore,
            },
        ));
    }
    for n in notes {
        wb.notify(n);
    }
    for (case, method) in rescore_only {
        submit_score(wb, settings, &case, &method);
    }
    for (spec, what) in submit {
        let id = wb.worker.submit(spec);
        if let Some(p) = wb.project.as_mut() {
            p.jobs.insert(id, what);
        }
    }
}

/// Runs one curation command.
pub fn execute(c: CurateCmd, wb: &mut Workbench, settings: &Settings, state: &mut CuratePanel) {
    if c == CurateCmd::RerunStale {
        rerun_stale(wb, settings);
        return;
    }
    let Some(p) = wb.project.as_mut() else {
        wb.notify("open a project first (File ▸ Open or new project)".into());
        return;
    };
    let cur = &mut p.project.curation;
    let mut select_case: Option<String> = None;
    match c {
        CurateCmd::Apply(key, edit) => match cur.apply(&key, edit) {
            Ok(true) => p.changed(),
            Ok(false) => {}
            Err(e) => wb.notify(format!("{e}")),
        },
        CurateCmd::Undo => {
            if !cur.undo().is_empty() {
                state.editor = None;
                state.notes = None;
                p.changed();
            }
        }
        CurateCmd::Redo => {
            if !cur.redo().is_empty() {
                state.editor = None;
                state.notes = None;
                p.changed();
            }
        }
        CurateCmd::Select(case, method) => {
            select_case = Some(case.clone());
            state.current = Some((case, method));
            state.target = Some(Target::Final);
            state.editor = None;
        }
        CurateCmd::Move(d) => {
            let list = entries(cur, state.filter);
            if !list.is_empty() {
                let at = state
                    .current
                    .as_ref()
                    .and_then(|c| list.iter().position(|e| e == c));
                let i = match at {
                    Some(i) => (i as i64 + d as i64).clamp(0, list.len() as i64 - 1) as usize,
                    None => 0,
                };
                select_case = Some(list[i].0.clone());
                state.current = Some(list[i].clone());
                state.target = Some(Target::Final);
                state.editor = None;
            }
        }
        CurateCmd::MoveTarget(d) => {
            if let Some((case, method)) = &state.current {
                let ts = targets(cur, case, method);
                let at = state
                    .target
                    .and_then(|t| ts.iter().position(|x| *x == t))
                    .unwrap_or(ts.len() - 1);
                let i = (at as i64 + d as i64).clamp(0, ts.len() as i64 - 1) as usize;
                state.target = Some(ts[i]);
                state.editor = None;
            }
        }
        CurateCmd::SelectTarget(t) => {
            state.target = Some(t);
            state.editor = None;
        }
        CurateCmd::StartEdit => {
            if let Some(key) = selected_key(state) {
                if let Ok(t) = cur.effective_text(&key) {
                    state.editor = Some((key, t.to_string()));
                }
            }
        }
        CurateCmd::RerunStale => {}
    }
    // Follow the curation's case in the dataset list.
    if let Some(case) = select_case {
        let i = wb
            .data
            .as_ref()
            .and_then(|d| d.cases.iter().position(|c| c.case == case));
        if let Some(i) = i {
            wb.select_case(i);
        }
        state.last_selected = Some(case);
    }
}

/// The key of the selected summary.
pub fn selected_key(state: &CuratePanel) -> Option<Key> {
    let (case, method) = state.current.as_ref()?;
    Some(Key::new(
        case.clone(),
        method.clone(),
        state.target.unwrap_or(Target::Final),
    ))
}

/// The curation keys. Undo/redo act on any tab (not while a text field has the
/// focus: it has its own undo); the letters only on the Curation tab.
pub fn curate_shortcuts(
    ctx: &egui::Context,
    wb: &Workbench,
    state: &CuratePanel,
    on_tab: bool,
    cmds: &mut Vec<Command>,
) {
    if wb.project.is_none() || ctx.text_edit_focused() {
        return;
    }
    let key = selected_key(state);
    ctx.input_mut(|i| {
        if i.consume_key(Modifiers::COMMAND | Modifiers::SHIFT, EKey::Z)
            || i.consume_key(Modifiers::COMMAND, EKey::Y)
        {
            cmds.push(Command::Curate(CurateCmd::Redo));
        }
        if i.consume_key(Modifiers::COMMAND, EKey::Z) {
            cmds.push(Command::Curate(CurateCmd::Undo));
        }
        if !on_tab {
            return;
        }
        for (k, cmd) in [
            (EKey::J, CurateCmd::Move(1)),
            (EKey::K, CurateCmd::Move(-1)),
            (EKey::N, CurateCmd::MoveTarget(1)),
            (EKey::P, CurateCmd::MoveTarget(-1)),
            (EKey::E, CurateCmd::StartEdit),
        ] {
            if i.consume_key(Modifiers::NONE, k) {
                cmds.push(Command::Curate(cmd));
            }
        }
        if let Some(key) = &key {
            for (k, s) in [
                (EKey::A, Status::Accepted),
                (EKey::R, Status::Rejected),
                (EKey::F, Status::Flagged),
            ] {
                if i.consume_key(Modifiers::NONE, k) {
                    cmds.push(Command::Curate(CurateCmd::Apply(
                        key.clone(),
                        Edit::SetStatus(s),
                    )));
                }
            }
        }
    });
}

fn status_color(ui: &egui::Ui, s: Status) -> egui::Color32 {
    match s {
        Status::Unreviewed => ui.visuals().weak_text_color(),
        Status::Accepted => egui::Color32::from_rgb(60, 160, 80),
        Status::Rejected => ui.visuals().error_fg_color,
        Status::Flagged => ui.visuals().warn_fg_color,
    }
}

/// 1-based rank of the positive among scored candidates (a tied negative ranks above it).
fn target_rank(c: &[ScoredCandidate]) -> Option<usize> {
    let t = c.iter().find(|c| c.label > 0)?;
    Some(
        1 + c
            .iter()
            .filter(|x| x.label == 0 && x.score >= t.score)
            .count(),
    )
}

/// Draws the word diff: deletions struck through in red, insertions in green.
fn diff_ui(ui: &mut egui::Ui, ops: &[DiffOp]) {
    let mut job = egui::text::LayoutJob::default();
    let base = egui::TextFormat {
        color: ui.visuals().text_color(),
        ..Default::default()
    };
    for op in ops {
        let fmt = match op {
            DiffOp::Equal(_) => base.clone(),
            DiffOp::Insert(_) => egui::TextFormat {
                color: egui::Color32::from_rgb(40, 150, 60),
                background: egui::Color32::from_rgba_unmultiplied(40, 150, 60, 40),
                ..base.clone()
            },
            DiffOp::Delete(_) => egui::TextFormat {
                color: ui.visuals().error_fg_color,
                strikethrough: egui::Stroke::new(1.0, ui.visuals().error_fg_color),
                ..base.clone()
            },
        };
        job.append(op.text(), 0.0, fmt);
    }
    job.wrap.max_width = ui.available_width();
    ui.label(job);
}

/// The Curation tab.
pub fn curate_ui(
    ui: &mut egui::Ui,
    wb: &Workbench,
    state: &mut CuratePanel,
    cmds: &mut Vec<Command>,
) {
    let Some(p) = wb.project.as_ref() else {
        ui.label("No project is open. Curation is kept in a project file.");
        if ui.button("Open or create a project...").clicked() {
            cmds.push(Command::OpenProjectDialog);
        }
        ui.weak("or start the window with `trsr gui --project FILE`");
        return;
    };
    let cur = &p.project.curation;
    // Follow the user selected in the dataset list.
    let selected = wb.selected_case().map(|c| c.case.clone());
    // (Also while nothing is shown: the selected user's summary may arrive later.)
    if selected != state.last_selected || state.current.is_none() {
        if let Some(case) = &selected {
            if let Some((c, m, _)) = cur.traces().find(|(c, _, _)| c == case) {
                state.current = Some((c.to_string(), m.to_string()));
                state.target = Some(Target::Final);
                state.editor = None;
            }
        }
        state.last_selected = selected;
    }
    let all = cur.counts(Scope::All);
    let finals = cur.counts(Scope::Finals);
    let plan = cur.rerun_plan();
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("{} done · {} left", all.done(), all.left()))
            .on_hover_text(format!(
                "all summaries (steps and finals): {} accepted, {} rejected, {} flagged, {} \
                 unreviewed; final summaries: {} done, {} left",
                all.accepted,
                all.rejected,
                all.flagged,
                all.unreviewed,
                finals.done(),
                finals.left()
            ));
        ui.separator();
        ui.label(format!(
            "{} accepted · {} rejected · {} flagged",
            all.accepted, all.rejected, all.flagged
        ));
        ui.separator();
        egui::ComboBox::from_label("show")
            .selected_text(state.filter.label())
            .show_ui(ui, |ui| {
                for f in CaseFilter::ALL {
                    ui.selectable_value(&mut state.filter, f, f.label());
                }
            });
        ui.separator();
        if ui
            .add_enabled(cur.can_undo(), egui::Button::new("Undo"))
            .on_hover_text("Ctrl+Z")
            .clicked()
        {
            cmds.push(Command::Curate(CurateCmd::Undo));
        }
        if ui
            .add_enabled(cur.can_redo(), egui::Button::new("Redo"))
            .on_hover_text("Ctrl+Shift+Z")
            .clicked()
        {
            cmds.push(Command::Curate(CurateCmd::Redo));
        }
        ui.separator();
        let running = !p.jobs.is_empty();
        let label = if running {
            format!("Re-running ({} jobs)", p.jobs.len())
        } else {
            format!("Re-run stale ({})", plan.len())
        };
        if ui
            .add_enabled(!plan.is_empty() && !running, egui::Button::new(label))
            .on_hover_text(
                "re-run exactly the stale steps (from the first stale one), then re-score",
            )
            .clicked()
        {
            cmds.push(Command::Curate(CurateCmd::RerunStale));
        }
        ui.separator();
        ui.weak(&p.save_state);
        if p.autosaver.is_dirty() || p.is_saving() {
            ui.weak("(unsaved changes)");
        }
    });
    ui.separator();
    let list = entries(cur, state.filter);
    egui::Panel::left("curate cases")
        .resizable(true)
        .default_size(220.0)
        .show(ui, |ui| {
            ui.label(format!("{} cases", list.len()));
            egui::ScrollArea::vertical().show(ui, |ui| {
                for (case, method) in &list {
                    let s = cur.status(&Key::final_of(case, method));
                    let stale = cur.staleness(case, method).is_ok_and(|s| !s.is_fresh());
                    let on = state.current.as_ref() == Some(&(case.clone(), method.clone()));
                    let text = egui::RichText::new(format!(
                        "{case} · {method} · {}{}",
                        s.name(),
                        if stale { " · stale" } else { "" }
                    ))
                    .color(status_color(ui, s));
                    if ui.selectable_label(on, text).clicked() {
                        cmds.push(Command::Curate(CurateCmd::Select(
                            case.clone(),
                            method.clone(),
                        )));
                    }
                }
            });
        });
    let Some((case, method)) = state.current.clone() else {
        if list.is_empty() {
            ui.label(
                "No summaries in the project yet: run a summary (Summaries tab) and it is added \
                 here.",
            );
        } else {
            ui.label("Pick a case (J / K).");
        }
        return;
    };
    let Some(trace) = cur.trace(&case, &method) else {
        ui.label(format!("{case} / {method} is not in the project"));
        return;
    };
    let stale = cur.staleness(&case, &method).unwrap_or_default();
    let target = state.target.unwrap_or(Target::Final);
    egui::ScrollArea::vertical()
        .id_salt("curate summaries")
        .show(ui, |ui| {
            ui.heading(format!("{case} · {method}"));
            for t in targets(cur, &case, &method) {
                let key = Key::new(case.clone(), method.clone(), t);
                let s = cur.status(&key);
                let kind = match t {
                    Target::Step(i) => trace.steps[i].kind.name(),
                    Target::Final => "final",
                };
                let is_stale = match t {
                    Target::Step(i) => stale.steps.contains(&i),
                    Target::Final => stale.final_stale,
                };
                let edited = cur.annotation(&key).is_some_and(|a| a.is_edited());
                let head = format!(
                    "{t} · {kind} · {}{}{}",
                    s.name(),
                    if edited { " · edited" } else { "" },
                    if is_stale { " · STALE" } else { "" }
                );
                let on = t == target;
                ui.separator();
                if ui
                    .selectable_label(on, egui::RichText::new(head).color(status_color(ui, s)))
                    .clicked()
                {
                    cmds.push(Command::Curate(CurateCmd::SelectTarget(t)));
                }
                if on {
                    selected_ui(ui, cur, &key, state, cmds);
                } else {
                    let text = cur.effective_text(&key).unwrap_or_default();
                    ui.add(egui::Label::new(egui::RichText::new(text).weak()).truncate());
                }
            }
            ui.separator();
            ranking_change_ui(ui, trace, stale.scores_stale);
            if !p.log.is_empty() {
                ui.collapsing("Re-run log", |ui| {
                    for l in p.log.iter().rev().take(20) {
                        ui.weak(l);
                    }
                });
            }
        });
}

/// The selected summary: its text or editor, the diff, status buttons and notes.
fn selected_ui(
    ui: &mut egui::Ui,
    cur: &Curation,
    key: &Key,
    state: &mut CuratePanel,
    cmds: &mut Vec<Command>,
) {
    ui.horizontal(|ui| {
        for (label, s) in [
            ("Accept (A)", Status::Accepted),
            ("Reject (R)", Status::Rejected),
            ("Flag (F)", Status::Flagged),
            ("Unreviewed", Status::Unreviewed),
        ] {
            if ui.selectable_label(cur.status(key) == s, label).clicked() {
                cmds.push(Command::Curate(CurateCmd::Apply(
                    key.clone(),
                    Edit::SetStatus(s),
                )));
            }
        }
        if ui.button("Edit (E)").clicked() {
            cmds.push(Command::Curate(CurateCmd::StartEdit));
        }
    });
    let editing = state.editor.as_ref().is_some_and(|(k, _)| k == key);
    if editing {
        let mut save = None;
        let mut cancel = false;
        if let Some((_, text)) = state.editor.as_mut() {
            ui.add(
                egui::TextEdit::multiline(text)
                    .desired_width(f32::INFINITY)
                    .desired_rows(4)
                    .hint_text("the summary as it should read"),
            )
            .labelled_by(ui.label("Edited summary").id);
            ui.horizontal(|ui| {
                if ui.button("Save edit").clicked() {
                    save = Some(text.clone());
                }
                if ui.button("Cancel edit").clicked() {
                    cancel = true;
                }
            });
        }
        if let Some(text) = save {
            cmds.push(Command::Curate(CurateCmd::Apply(
                key.clone(),
                Edit::SetText(Some(text)),
            )));
            state.editor = None;
        } else if cancel {
            state.editor = None;
        }
    } else {
        match cur.annotation(key).filter(|a| a.is_edited()) {
            Some(a) => {
                ui.label("Edited (word diff against the model's text):");
                diff_ui(ui, &a.diff());
                if ui.button("Revert to the model's text").clicked() {
                    cmds.push(Command::Curate(CurateCmd::Apply(
                        key.clone(),
                        Edit::SetText(None),
                    )));
                }
            }
            None => {
                let text = cur.effective_text(key).unwrap_or_default();
                ui.label(text);
            }
        }
        if cur.review_outdated(key) {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "reviewed against an earlier model text: review again",
            );
        }
    }
    // Notes: typed into the panel's buffer, committed as one edit when the field
    // loses the focus.
    let stored = cur
        .annotation(key)
        .map(|a| a.notes.clone())
        .unwrap_or_default();
    if state.notes.as_ref().is_none_or(|(k, _)| k != key) {
        state.notes = Some((key.clone(), stored.clone()));
    }
    if let Some((_, notes)) = state.notes.as_mut() {
        let label = ui.label("Notes");
        let r = ui
            .add(egui::TextEdit::singleline(notes).desired_width(f32::INFINITY))
            .labelled_by(label.id);
        if r.lost_focus() && *notes != stored {
            cmds.push(Command::Curate(CurateCmd::Apply(
                key.clone(),
                Edit::SetNotes(notes.clone()),
            )));
        }
    }
}

/// The ranking with this summary before and after the latest re-score.
fn ranking_change_ui(ui: &mut egui::Ui, trace: &curate::TraceRecord, scores_stale: bool) {
    let Some(after) = trace.scores.as_ref() else {
        ui.weak("Not ranked with this summary yet (Ranking tab).");
        return;
    };
    let rank = |c: &[ScoredCandidate]| {
        target_rank(c).map_or("-".to_string(), |r| format!("#{r} of {}", c.len()))
    };
    let before = trace.scores_before.as_deref();
    ui.label(format!(
        "Ranking of the target: before {} · after {}{}",
        before.map_or("-".to_string(), rank),
        rank(after),
        if scores_stale { " (stale: re-run)" } else { "" }
    ));
    egui::Grid::new("curate ranking")
        .num_columns(3)
        .striped(true)
        .show(ui, |ui| {
            ui.strong("candidate");
            ui.strong("before");
            ui.strong("after");
            ui.end_row();
            for c in after {
                let b = before
                    .and_then(|b| b.iter().find(|x| x.id == c.id))
                    .map_or("-".to_string(), |x| format!("{:.3}", x.score));
                ui.label(format!(
                    "{}{}",
                    c.id,
                    if c.label > 0 { " (target)" } else { "" }
                ));
                ui.label(b);
                ui.label(format!("{:.3}", c.score));
                ui.end_row();
            }
        });
}
