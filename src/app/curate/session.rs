//! The open project's session: the project file, its autosaver (saves run as
//! background tasks, `app::background`), the full traces a re-run resumes from, and the
//! curation's own worker jobs. Kept apart from the Curation tab: the window records
//! summaries and rankings into the project whichever tab is shown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::app::background::{Background, TaskId, TaskOutput};
use crate::app::notices::Notice;
use crate::curate;
use crate::project::{Autosaver, DatasetRef, Project, ProjectError};
use crate::worker::jobs::SummaryResult;
use crate::worker::JobId;

/// How long exit (or opening another project) waits for a running save.
const SAVE_WAIT: Duration = Duration::from_secs(60);

/// What a re-run job of the curation is for.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum RerunJob {
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
    /// The background save under way.
    saving: Option<TaskId>,
    /// The last save's outcome, for the tab's header.
    pub save_state: String,
    /// Full traces of summaries run in this session, by (case, method): what a
    /// re-run resumes from.
    pub results: HashMap<(String, String), SummaryResult>,
    pub(super) jobs: HashMap<JobId, RerunJob>,
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

    /// Starts a background save when the autosaver says one is due. Returns a
    /// notice to show if the save could not start.
    pub fn poll_save(&mut self, now: Instant, tasks: &Background<TaskOutput>) -> Option<Notice> {
        if self.saving.is_some() || !self.autosaver.tick(now) {
            return None;
        }
        let project = self.project.clone();
        let path = self.path.clone();
        let spawned = tasks.spawn("project-save", move || {
            TaskOutput::ProjectSaved(project.save(&path).map_err(|e| e.to_string()))
        });
        match spawned {
            Ok(id) => {
                self.saving = Some(id);
                None
            }
            Err(e) => {
                self.autosaver.save_failed(now);
                Some(Notice::error(format!(
                    "could not start saving the project: {e}"
                )))
            }
        }
    }

    /// The background save `id` ended with `result` (`Err`: why not). Returns a
    /// notice to show if it failed; a save the session no longer waits for is ignored.
    pub fn save_done(
        &mut self,
        id: TaskId,
        result: Result<(), String>,
        now: Instant,
    ) -> Option<Notice> {
        if self.saving != Some(id) {
            return None;
        }
        self.saving = None;
        match result {
            Ok(()) => {
                self.save_state = format!("saved {}", self.path.display());
                None
            }
            Err(e) => {
                self.autosaver.save_failed(now);
                self.save_state = "not saved".into();
                Some(Notice::error(format!("could not save the project: {e}")))
            }
        }
    }

    /// The background save under way, if any.
    pub fn saving_task(&self) -> Option<TaskId> {
        self.saving
    }

    /// Waits for a running save, then saves now if anything is unsaved (on exit,
    /// and from tests).
    pub fn flush(&mut self, tasks: &mut Background<TaskOutput>) -> Result<(), String> {
        let now = Instant::now();
        if let Some(id) = self.saving {
            let result = match tasks.wait_for(id, SAVE_WAIT) {
                Some(f) => match f.output {
                    Ok(TaskOutput::ProjectSaved(r)) => r,
                    Ok(other) => Err(format!("unexpected save result {other:?}")),
                    Err(panic) => Err(panic),
                },
                None => Err(format!(
                    "the save did not finish within {} s",
                    SAVE_WAIT.as_secs()
                )),
            };
            if let Some(e) = self.save_done(id, result, now) {
                return Err(e.text);
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
    pub(super) fn register(&mut self, r: &SummaryResult) -> Result<(), curate::CurateError> {
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
