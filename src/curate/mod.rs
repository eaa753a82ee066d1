//! Curation of summaries: per case, method and step (or the final summary), a
//! review status, an edited text with a word diff against the model's text, and
//! notes; an undo/redo history over every edit; counters and filters; and
//! staleness: which steps and scores must be re-run after an edit.
//!
//! UI-free. The summarizer's trace maps onto [`TraceRecord`] (steps with kind,
//! block item ids and output); the curation layer never needs the trace type
//! itself.
//!
//! Staleness is content-based: each step remembers a signature of the texts it was
//! generated from (the effective texts of the steps it reads), and the scores
//! remember a signature of the final summary they scored. A step is stale when the
//! current effective texts of its inputs differ from those it was generated from,
//! or when one of its inputs is stale. So undoing an edit makes its downstream
//! fresh again, and re-running a step records its new inputs.

pub mod diff;

pub use diff::{word_diff, DiffOp};

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::metrics::ScoredCandidate;

/// What part of a case's summary trace an annotation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Target {
    /// Step `i` of the trace (0-based), in the order the summarizer ran them.
    Step(usize),
    /// The final summary (the last step's output unless edited here).
    Final,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Step(i) => write!(f, "step {i}"),
            Target::Final => f.write_str("final"),
        }
    }
}

/// Where an annotation sits: (case id, summarization method, step or final).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub case: String,
    pub method: String,
    pub target: Target,
}

impl Key {
    pub fn new(case: impl Into<String>, method: impl Into<String>, target: Target) -> Self {
        Self {
            case: case.into(),
            method: method.into(),
            target,
        }
    }

    pub fn final_of(case: impl Into<String>, method: impl Into<String>) -> Self {
        Self::new(case, method, Target::Final)
    }

    pub fn step(case: impl Into<String>, method: impl Into<String>, i: usize) -> Self {
        Self::new(case, method, Target::Step(i))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "case {} / {} / {}", self.case, self.method, self.target)
    }
}

/// Review status of one summary.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Status {
    #[default]
    Unreviewed,
    Accepted,
    Rejected,
    Flagged,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Unreviewed,
        Status::Accepted,
        Status::Rejected,
        Status::Flagged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Unreviewed => "unreviewed",
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
            Status::Flagged => "flagged",
        }
    }

    /// Parses `accept(ed)`, `reject(ed)`, `flag(ged)`, `unreviewed`.
    pub fn parse(s: &str) -> Option<Status> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unreviewed" => Some(Status::Unreviewed),
            "accept" | "accepted" => Some(Status::Accepted),
            "reject" | "rejected" => Some(Status::Rejected),
            "flag" | "flagged" => Some(Status::Flagged),
            _ => None,
        }
    }

    /// A reviewed item counts as done.
    pub fn is_done(self) -> bool {
        self != Status::Unreviewed
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A human's review of one summary, with provenance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    pub status: Status,
    /// The model's text this annotation was made against (provenance: what the
    /// model wrote, beside what the human made of it).
    pub model_text: String,
    /// The human's text; `None` when the model's text stands.
    #[serde(default)]
    pub edited_text: Option<String>,
    #[serde(default)]
    pub notes: String,
    /// Unix time in milliseconds of the first and the latest change.
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl Annotation {
    pub fn new(model_text: impl Into<String>, now_ms: u64) -> Self {
        Self {
            status: Status::Unreviewed,
            model_text: model_text.into(),
            edited_text: None,
            notes: String::new(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }

    /// The text that stands: the edited one if any, else the model's.
    pub fn text(&self) -> &str {
        self.edited_text.as_deref().unwrap_or(&self.model_text)
    }

    pub fn is_edited(&self) -> bool {
        self.edited_text.is_some()
    }

    /// Word diff from the model's text to the text that stands.
    pub fn diff(&self) -> Vec<DiffOp> {
        word_diff(&self.model_text, self.text())
    }
}

/// The kind of a summarizer step (DESIGN.md: block / update / merge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StepKind {
    /// Summarizes one block alone (hierarchical steps, and the first recurrent step).
    Block,
    /// Recurrent: reads the previous step's summary and a new block.
    Update,
    /// Hierarchical: reads every earlier block summary and merges them.
    Merge,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Block => "block",
            StepKind::Update => "update",
            StepKind::Merge => "merge",
        }
    }
}

/// One step of a summary trace as curation sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    pub kind: StepKind,
    /// The block's item ids (block and update steps); empty for a merge.
    #[serde(default)]
    pub item_ids: Vec<String>,
    /// The model's output for this step.
    pub output: String,
    /// Signature of the input texts this output was generated from.
    pub input_sig: String,
}

/// What curation keeps of one (case, method) summary trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceRecord {
    pub steps: Vec<TraceStep>,
    /// Model identity for provenance (e.g. the GGUF file name), when known.
    #[serde(default)]
    pub model: Option<String>,
    /// Signature of the final summary the case's scores were computed from;
    /// `None` when the case has not been scored with this summary method.
    #[serde(default)]
    pub scored_sig: Option<String>,
    /// The latest scores of the case's candidates with this method's summary.
    #[serde(default)]
    pub scores: Option<Vec<ScoredCandidate>>,
    /// The scores before the latest re-scoring (to show the ranking before and after).
    #[serde(default)]
    pub scores_before: Option<Vec<ScoredCandidate>>,
}

impl TraceRecord {
    /// Indices of the steps whose outputs step `j` reads.
    pub fn deps(&self, j: usize) -> Vec<usize> {
        match self.steps.get(j).map(|s| s.kind) {
            Some(StepKind::Update) if j > 0 => vec![j - 1],
            Some(StepKind::Merge) => (0..j)
                .filter(|&i| self.steps[i].kind == StepKind::Block)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Curation errors a caller can cause.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CurateError {
    #[error("no summary trace for case `{case}`, method `{method}`")]
    UnknownTrace { case: String, method: String },
    #[error("case `{case}`, method `{method}` has {steps} steps; there is no step {step}")]
    UnknownStep {
        case: String,
        method: String,
        step: usize,
        steps: usize,
    },
    #[error("invalid trace for case `{case}`, method `{method}`: {message}")]
    InvalidTrace {
        case: String,
        method: String,
        message: String,
    },
}

/// One user edit (the command of the command pattern).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    SetStatus(Status),
    /// `Some(text)` replaces the text; `None` (or the model's own text) reverts to it.
    SetText(Option<String>),
    SetNotes(String),
}

/// One annotation's state before and after an edit.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    key: Key,
    before: Option<Annotation>,
    after: Option<Annotation>,
}

/// The edit history: applied edit groups and undone ones.
#[derive(Clone, Debug, Default)]
struct History {
    done: Vec<Vec<Change>>,
    undone: Vec<Vec<Change>>,
}

/// Which summaries counters and filters walk over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only each trace's final summary.
    Finals,
    /// Every step and the final summary.
    All,
}

/// Review counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub unreviewed: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub flagged: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.unreviewed + self.accepted + self.rejected + self.flagged
    }
    pub fn done(&self) -> usize {
        self.total() - self.unreviewed
    }
    pub fn left(&self) -> usize {
        self.unreviewed
    }
    fn add(&mut self, s: Status) {
        match s {
            Status::Unreviewed => self.unreviewed += 1,
            Status::Accepted => self.accepted += 1,
            Status::Rejected => self.rejected += 1,
            Status::Flagged => self.flagged += 1,
        }
    }
}

/// What is stale in one (case, method).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Staleness {
    /// Stale steps, in order.
    pub steps: Vec<usize>,
    /// The final summary comes from a stale step.
    pub final_stale: bool,
    /// The case's scores were computed from a different (or stale) final summary.
    pub scores_stale: bool,
}

impl Staleness {
    pub fn is_fresh(&self) -> bool {
        self.steps.is_empty() && !self.final_stale && !self.scores_stale
    }
}

/// One entry of the re-run plan: exactly what to re-run for one (case, method).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RerunItem {
    pub case: String,
    pub method: String,
    /// Steps to regenerate, in order (feed each with [`Curation::step_inputs`]).
    pub steps: Vec<usize>,
    /// Score the case again (after the steps) with [`Curation::final_text`].
    pub rescore: bool,
}

/// The curation state: traces, annotations and the undo history.
///
/// Serialized (in the project file) as two lists; the undo history is per session
/// and not saved.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "CurationFile", into = "CurationFile")]
pub struct Curation {
    traces: BTreeMap<(String, String), TraceRecord>,
    annotations: BTreeMap<Key, Annotation>,
    history: History,
}

impl PartialEq for Curation {
    fn eq(&self, other: &Self) -> bool {
        self.traces == other.traces && self.annotations == other.annotations
    }
}

/// The saved form of [`Curation`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct CurationFile {
    #[serde(default)]
    traces: Vec<TraceEntry>,
    #[serde(default)]
    annotations: Vec<AnnotationEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TraceEntry {
    case: String,
    method: String,
    trace: TraceRecord,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct AnnotationEntry {
    key: Key,
    annotation: Annotation,
}

impl From<CurationFile> for Curation {
    fn from(f: CurationFile) -> Self {
        Curation {
            traces: f
                .traces
                .into_iter()
                .map(|t| ((t.case, t.method), t.trace))
                .collect(),
            annotations: f
                .annotations
                .into_iter()
                .map(|a| (a.key, a.annotation))
                .collect(),
            history: History::default(),
        }
    }
}

impl From<Curation> for CurationFile {
    fn from(c: Curation) -> Self {
        CurationFile {
            traces: c
                .traces
                .into_iter()
                .map(|((case, method), trace)| TraceEntry {
                    case,
                    method,
                    trace,
                })
                .collect(),
            annotations: c
                .annotations
                .into_iter()
                .map(|(key, annotation)| AnnotationEntry { key, annotation })
                .collect(),
        }
    }
}

/// Signature of an ordered list of texts (SHA-256, hex, first 16 bytes).
fn signature<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for t in texts {
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Curation {
    pub fn new() -> Self {
        Self::default()
    }

    // ----- traces -------------------------------------------------------------

    /// Registers (or replaces) the trace of one (case, method), as the summarizer
    /// produced it: `(kind, block item ids, output)` per step. Each step is taken
    /// to have been generated from its inputs' model outputs. Annotations stay.
    pub fn register_trace(
        &mut self,
        case: &str,
        method: &str,
        steps: Vec<(StepKind, Vec<String>, String)>,
        model: Option<String>,
    ) -> Result<(), CurateError> {
        let invalid = |message: String| CurateError::InvalidTrace {
            case: case.to_string(),
            method: method.to_string(),
            message,
        };
        if steps.is_empty() {
            return Err(invalid("a trace needs at least one step".into()));
        }
        for (i, (kind, _, _)) in steps.iter().enumerate() {
            match kind {
                StepKind::Update if i == 0 => {
                    return Err(invalid(
                        "step 0 is an update with no previous summary".into(),
                    ))
                }
                StepKind::Merge if !steps[..i].iter().any(|s| s.0 == StepKind::Block) => {
                    return Err(invalid(format!(
                        "step {i} merges but no block step precedes it"
                    )))
                }
                _ => {}
            }
        }
        let mut rec = TraceRecord {
            steps: steps
                .into_iter()
                .map(|(kind, item_ids, output)| TraceStep {
                    kind,
                    item_ids,
                    output,
                    input_sig: String::new(),
                })
                .collect(),
            model,
            scored_sig: None,
            scores: None,
            scores_before: None,
        };
        for j in 0..rec.steps.len() {
            let sig = signature(
                rec.deps(j)
                    .into_iter()
                    .map(|d| rec.steps[d].output.as_str()),
            );
            rec.steps[j].input_sig = sig;
        }
        self.traces
            .insert((case.to_string(), method.to_string()), rec);
        Ok(())
    }

    pub fn trace(&self, case: &str, method: &str) -> Option<&TraceRecord> {
        self.traces.get(&(case.to_string(), method.to_string()))
    }

    /// Every registered (case, method), in order.
    pub fn traces(&self) -> impl Iterator<Item = (&str, &str, &TraceRecord)> {
        self.traces
            .iter()
            .map(|((c, m), t)| (c.as_str(), m.as_str(), t))
    }

    fn trace_or_err(&self, case: &str, method: &str) -> Result<&TraceRecord, CurateError> {
        self.trace(case, method)
            .ok_or_else(|| CurateError::UnknownTrace {
                case: case.to_string(),
                method: method.to_string(),
            })
    }

    fn check_target(&self, key: &Key) -> Result<&TraceRecord, CurateError> {
        let t = self.trace_or_err(&key.case, &key.method)?;
        if let Target::Step(i) = key.target {
            if i >= t.steps.len() {
                return Err(CurateError::UnknownStep {
                    case: key.case.clone(),
                    method: key.method.clone(),
                    step: i,
                    steps: t.steps.len(),
                });
            }
        }
        Ok(t)
    }

    /// The model's current text at a key (a step's output; for the final, the last step's).
    pub fn model_text(&self, key: &Key) -> Result<&str, CurateError> {
        let t = self.check_target(key)?;
        Ok(match key.target {
            Target::Step(i) => &t.steps[i].output,
            Target::Final => &t.steps[t.steps.len() - 1].output,
        })
    }

    /// The text that stands at a key: the edit if any, else the model's (for the
    /// final: its edit, else the last step's text that stands).
    pub fn effective_text(&self, key: &Key) -> Result<&str, CurateError> {
        if let Some(edited) = self
            .annotations
            .get(key)
            .and_then(|a| a.edited_text.as_deref())
        {
            self.check_target(key)?;
            return Ok(edited);
        }
        let t = self.check_target(key)?;
        match key.target {
            Target::Step(i) => Ok(&t.steps[i].output),
            Target::Final => self.effective_text(&Key::step(
                key.case.clone(),
                key.method.clone(),
                t.steps.len() - 1,
            )),
        }
    }

    /// The final summary that stands for a (case, method).
    pub fn final_text(&self, case: &str, method: &str) -> Result<&str, CurateError> {
        self.effective_text(&Key::final_of(case, method))
    }

    /// The texts that stand for the inputs of step `step`: for an update, the
    /// previous summary; for a merge, the block summaries in order; for a block,
    /// none (its input is the block's items, see [`TraceStep::item_ids`]).
    pub fn step_inputs(
        &self,
        case: &str,
        method: &str,
        step: usize,
    ) -> Result<Vec<String>, CurateError> {
        let key = Key::step(case, method, step);
        let t = self.check_target(&key)?;
        t.deps(step)
            .into_iter()
            .map(|d| {
                self.effective_text(&Key::step(case, method, d))
                    .map(str::to_string)
            })
            .collect()
    }

    fn current_input_sig(
        &self,
        case: &str,
        method: &str,
        step: usize,
    ) -> Result<String, CurateError> {
        Ok(signature(
            self.step_inputs(case, method, step)?
                .iter()
                .map(String::as_str),
        ))
    }

    /// Records a re-run step's new output; it is now generated from the current
    /// inputs (not an undoable edit). Annotations keep the text they reviewed.
    pub fn record_step_output(
        &mut self,
        case: &str,
        method: &str,
        step: usize,
        output: String,
    ) -> Result<(), CurateError> {
        let sig = self.current_input_sig(case, method, step)?;
        let t = self
            .traces
            .get_mut(&(case.to_string(), method.to_string()))
            .ok_or_else(|| CurateError::UnknownTrace {
                case: case.to_string(),
                method: method.to_string(),
            })?;
        t.steps[step].output = output;
        t.steps[step].input_sig = sig;
        Ok(())
    }

    /// Records that the case was scored with the final summary that stands now.
    pub fn record_scored(&mut self, case: &str, method: &str) -> Result<(), CurateError> {
        let sig = signature([self.final_text(case, method)?]);
        if let Some(t) = self.traces.get_mut(&(case.to_string(), method.to_string())) {
            t.scored_sig = Some(sig);
        }
        Ok(())
    }

    /// Records new scores of the case's candidates, made with the final summary
    /// that stands now; the previous scores are kept as `scores_before`.
    pub fn record_scores(
        &mut self,
        case: &str,
        method: &str,
        scores: Vec<ScoredCandidate>,
    ) -> Result<(), CurateError> {
        self.record_scored(case, method)?;
        if let Some(t) = self.traces.get_mut(&(case.to_string(), method.to_string())) {
            t.scores_before = t.scores.take();
            t.scores = Some(scores);
        }
        Ok(())
    }

    // ----- staleness ----------------------------------------------------------

    /// What is stale in one (case, method).
    pub fn staleness(&self, case: &str, method: &str) -> Result<Staleness, CurateError> {
        let t = self.trace_or_err(case, method)?;
        let n = t.steps.len();
        let mut stale = vec![false; n];
        for j in 0..n {
            let deps = t.deps(j);
            stale[j] = deps.iter().any(|&d| stale[d])
                || self.current_input_sig(case, method, j)? != t.steps[j].input_sig;
        }
        let final_stale = stale[n - 1];
        let scores_stale = match &t.scored_sig {
            None => false,
            Some(sig) => final_stale || *sig != signature([self.final_text(case, method)?]),
        };
        Ok(Staleness {
            steps: (0..n).filter(|&j| stale[j]).collect(),
            final_stale,
            scores_stale,
        })
    }

    /// Exactly what to re-run, over every trace: stale steps in order, then scoring
    /// where scores exist and are stale. Fresh traces are left out.
    pub fn rerun_plan(&self) -> Vec<RerunItem> {
        let mut plan = Vec::new();
        for (case, method) in self.traces.keys() {
            let Ok(s) = self.staleness(case, method) else {
                continue;
            };
            if s.is_fresh() {
                continue;
            }
            plan.push(RerunItem {
                case: case.clone(),
                method: method.clone(),
                steps: s.steps,
                rescore: s.scores_stale,
            });
        }
        plan
    }

    // ----- annotations and edits ---------------------------------------------

    pub fn annotation(&self, key: &Key) -> Option<&Annotation> {
        self.annotations.get(key)
    }

    pub fn annotations(&self) -> impl Iterator<Item = (&Key, &Annotation)> {
        self.annotations.iter()
    }

    /// True when the key's annotation was made against a model text that has
    /// since changed (a re-run) and was not edited by hand: its status no longer
    /// speaks for the text that stands, which needs a fresh review.
    pub fn review_outdated(&self, key: &Key) -> bool {
        match (self.annotations.get(key), self.model_text(key)) {
            (Some(a), Ok(current)) => a.edited_text.is_none() && a.model_text != current,
            _ => false,
        }
    }

    /// The status at a key (`Unreviewed` when never annotated).
    pub fn status(&self, key: &Key) -> Status {
        self.annotations
            .get(key)
            .map(|a| a.status)
            .unwrap_or_default()
    }

    /// The annotation an edit would produce, or `None` when it changes nothing.
    fn edited(
        &self,
        key: &Key,
        edit: &Edit,
        now_ms: u64,
    ) -> Result<Option<Annotation>, CurateError> {
        let model = self.model_text(key)?.to_string();
        let mut a = self
            .annotations
            .get(key)
            .cloned()
            .unwrap_or_else(|| Annotation::new(model.clone(), now_ms));
        let before = a.clone();
        match edit {
            Edit::SetStatus(s) => {
                // A review is made against the model's current text.
                a.status = *s;
                a.model_text = model.clone();
            }
            Edit::SetNotes(n) => a.notes = n.clone(),
            Edit::SetText(t) => {
                // Editing means reviewing the current model text.
                a.model_text = model.clone();
                a.edited_text = t.clone().filter(|t| *t != model);
            }
        }
        if a == before {
            return Ok(None);
        }
        a.updated_at_ms = now_ms;
        Ok(Some(a))
    }

    /// Applies one edit as one undo step. Returns whether anything changed.
    pub fn apply(&mut self, key: &Key, edit: Edit) -> Result<bool, CurateError> {
        self.apply_at(key, edit, now_ms())
    }

    /// [`Curation::apply`] with an explicit clock (Unix ms).
    pub fn apply_at(&mut self, key: &Key, edit: Edit, now_ms: u64) -> Result<bool, CurateError> {
        self.apply_many_at(&[(key.clone(), edit)], now_ms)
    }

    /// Applies several edits as one undo step (e.g. "accept all shown").
    /// Nothing is applied if any key is unknown.
    pub fn apply_many_at(
        &mut self,
        edits: &[(Key, Edit)],
        now_ms: u64,
    ) -> Result<bool, CurateError> {
        for (key, _) in edits {
            self.check_target(key)?;
        }
        let mut group = Vec::new();
        for (key, edit) in edits {
            if let Some(after) = self.edited(key, edit, now_ms)? {
                let before = self.annotations.insert(key.clone(), after.clone());
                group.push(Change {
                    key: key.clone(),
                    before,
                    after: Some(after),
                });
            }
        }
        if group.is_empty() {
            return Ok(false);
        }
        self.history.done.push(group);
        self.history.undone.clear();
        Ok(true)
    }

    fn set(&mut self, key: &Key, value: Option<Annotation>) {
        match value {
            Some(a) => {
                self.annotations.insert(key.clone(), a);
            }
            None => {
                self.annotations.remove(key);
            }
        }
    }

    pub fn can_undo(&self) -> bool {
        !self.history.done.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.history.undone.is_empty()
    }

    /// Undoes the latest edit group; returns the keys it touched (empty: nothing to undo).
    pub fn undo(&mut self) -> Vec<Key> {
        let Some(group) = self.history.done.pop() else {
            return Vec::new();
        };
        for c in group.iter().rev() {
            self.set(&c.key, c.before.clone());
        }
        let keys = group.iter().map(|c| c.key.clone()).collect();
        self.history.undone.push(group);
        keys
    }

    /// Redoes the latest undone edit group; returns the keys it touched.
    pub fn redo(&mut self) -> Vec<Key> {
        let Some(group) = self.history.undone.pop() else {
            return Vec::new();
        };
        for c in &group {
            self.set(&c.key, c.after.clone());
        }
        let keys = group.iter().map(|c| c.key.clone()).collect();
        self.history.done.push(group);
        keys
    }

    // ----- counters and filters -----------------------------------------------

    /// Every reviewable key in scope, in order (per trace: steps, then final).
    pub fn keys(&self, scope: Scope) -> Vec<Key> {
        let mut out = Vec::new();
        for ((case, method), t) in &self.traces {
            if scope == Scope::All {
                for i in 0..t.steps.len() {
                    out.push(Key::step(case.clone(), method.clone(), i));
                }
            }
            out.push(Key::final_of(case.clone(), method.clone()));
        }
        out
    }

    /// Keys in scope whose status is one of `statuses` (all when empty).
    pub fn filter(&self, scope: Scope, statuses: &[Status]) -> Vec<Key> {
        self.keys(scope)
            .into_iter()
            .filter(|k| statuses.is_empty() || statuses.contains(&self.status(k)))
            .collect()
    }

    /// The key after (or before, when `forward` is false) `from` among the keys in
    /// scope with one of `statuses` (all when empty); wraps around. From `None`, or
    /// from a key not in the list, it starts at the first (or last) one. `None`
    /// when no key matches. (J/K navigation.)
    pub fn next_key(
        &self,
        from: Option<&Key>,
        scope: Scope,
        statuses: &[Status],
        forward: bool,
    ) -> Option<Key> {
        // Walk the full order from `from`, so a key whose status just changed (and
        // left the filter) still moves to its neighbour.
        let all = self.keys(scope);
        let n = all.len();
        if n == 0 {
            return None;
        }
        let p = from.and_then(|k| all.iter().position(|x| x == k));
        let matches = |k: &Key| statuses.is_empty() || statuses.contains(&self.status(k));
        (1..=n)
            .map(|off| match (p, forward) {
                (Some(p), true) => (p + off) % n,
                (Some(p), false) => (p + n - off % n) % n,
                (None, true) => off - 1,
                (None, false) => n - off,
            })
            .map(|i| &all[i])
            .find(|k| matches(k))
            .cloned()
    }

    pub fn counts(&self, scope: Scope) -> Counts {
        let mut c = Counts::default();
        for k in self.keys(scope) {
            c.add(self.status(&k));
        }
        c
    }
}
