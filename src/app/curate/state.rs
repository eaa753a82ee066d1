//! The Curation tab's own state, without egui: which (case, method) and which summary
//! is shown, the list filter, the editor and notes buffers, and the list's order.

use crate::curate::{Curation, Key, Status, Target};
use crate::metrics::ScoredCandidate;

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
    pub(super) last_selected: Option<String>,
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
pub fn targets(curation: &Curation, case: &str, method: &str) -> Vec<Target> {
    let n = curation.trace(case, method).map_or(0, |t| t.steps.len());
    (0..n).map(Target::Step).chain([Target::Final]).collect()
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

/// 1-based rank of the positive among scored candidates (a tied negative ranks above it).
pub fn target_rank(c: &[ScoredCandidate]) -> Option<usize> {
    let t = c.iter().find(|c| c.label > 0)?;
    Some(
        1 + c
            .iter()
            .filter(|x| x.label == 0 && x.score >= t.score)
            .count(),
    )
}
