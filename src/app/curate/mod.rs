//! The Curation tab: review the summaries of a project's cases (each step and the
//! final one), accept / reject / flag / edit them with a word diff against the
//! model's text, add notes, undo and redo; re-run only what an edit made stale and
//! see the ranking before and after.
//!
//! By role: [`session`] is the open project (file, autosave, re-run jobs), [`state`] the
//! tab's own state (no egui), [`actions`] its commands and the recording of the window's
//! results into the project, [`view`] the drawing and keys.

pub mod actions;
pub mod session;
pub mod state;
pub mod view;

pub use actions::{adopt_shown_summary, execute, observe_events, rerun_stale, CurateCmd};
pub use session::ProjectSession;
pub use state::{entries, selected_key, CaseFilter, CuratePanel};
pub use view::{curate_shortcuts, curate_ui, CURATE_SHORTCUTS};
