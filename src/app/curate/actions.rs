//! The Curation tab's actions: its commands ([`CurateCmd`], run at the end of the frame),
//! re-running exactly what an edit made stale, and recording the window's summaries and
//! rankings into the open project ([`observe_events`], [`adopt_shown_summary`]).

use super::session::RerunJob;
use super::state::{entries, selected_key, targets, CuratePanel};
use crate::app::notices::Notice;
use crate::app::{Settings, Workbench};
use crate::curate::{Edit, Key, Target};
use crate::metrics::ScoredCandidate;
use crate::worker::jobs::{JobOutput, ScoreJob, SummarizeJob};
use crate::worker::{Event, JobId, JobSpec};

/// Curation requests (wrapped in [`crate::app::Command::Curate`]).
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
        wb.notify(Notice::error(format!(
            "could not add the summary to the project: {e}"
        )));
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
                            wb.notify(Notice::error(format!(
                                "could not add the summary to the project: {e}"
                            )));
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
                    Notice::info(format!("re-ran {case} / {method} from step {from}"))
                }
                Err(e) => Notice::error(format!(
                    "could not record the re-run of {case} / {method}: {e}"
                )),
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
                Notice::info(format!("re-scored {case} / {method}"))
            }
            Err(e) => Notice::error(format!(
                "could not record the scores of {case} / {method}: {e}"
            )),
        },
        (Event::JobFailed { error, .. }, w) => {
            Notice::error(format!("re-run failed ({w:?}): {error}"))
        }
        (Event::JobCancelled { .. }, w) => Notice::warning(format!("re-run cancelled ({w:?})")),
        (_, w) => Notice::error(format!("re-run ended without its result ({w:?})")),
    };
    p.log.push(msg.text.clone());
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
        wb.notify(Notice::warning(format!(
            "case {case_id} is not in the open dataset"
        )));
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
        wb.notify(Notice::info("nothing is stale"));
        return;
    }
    if !matches!(wb.model, crate::app::ModelStatus::Loaded(_)) {
        wb.notify(Notice::warning("load a model first (Model & settings)"));
        return;
    }
    let Some(data) = wb.data.as_ref() else {
        wb.notify(Notice::warning("open the project's dataset first"));
        return;
    };
    let mut submit: Vec<(JobSpec, RerunJob)> = Vec::new();
    let mut rescore_only: Vec<(String, String)> = Vec::new();
    let mut notes = Vec::new();
    for item in plan {
        let Some(&from) = item.steps.first() else {
            if item.rescore {
                notes.push(Notice::info(format!(
                    "re-scoring {} / {}",
                    item.case, item.method
                )));
                rescore_only.push((item.case, item.method));
            }
            continue;
        };
        let Some(prior) = p.results.get(&(item.case.clone(), item.method.clone())) else {
            notes.push(Notice::warning(format!(
                "{} / {}: no full trace in this session; run its summary (Summaries tab) first",
                item.case, item.method
            )));
            continue;
        };
        let Some(case) = data.cases.iter().find(|c| c.case == item.case).cloned() else {
            notes.push(Notice::warning(format!(
                "case {} is not in the open dataset",
                item.case
            )));
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
        notes.push(Notice::info(format!(
            "re-running {} / {} steps {:?}",
            item.case, item.method, item.steps
        )));
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
        wb.notify(Notice::warning(
            "open a project first (File > Open or new project)",
        ));
        return;
    };
    let cur = &mut p.project.curation;
    let mut select_case: Option<String> = None;
    match c {
        CurateCmd::Apply(key, edit) => match cur.apply(&key, edit) {
            Ok(true) => p.changed(),
            Ok(false) => {}
            Err(e) => wb.notify(Notice::error(format!("{e}"))),
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
