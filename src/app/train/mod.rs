//! The Train tab: fine-tune the LLM recommender with LoRA (as LLM-TRSR does) on the
//! loaded dataset's `train` cases, validating on its `val` cases after each epoch.
//!
//! The work is the worker's Train job (`worker::train`). By role: [`state`] holds the
//! run as the window follows it and the tab's form (no egui), [`actions`] builds the
//! job, runs the tab's commands and follows the job's events, [`view`] draws.

pub mod actions;
pub mod state;
pub mod view;

pub use actions::{blocker, execute, observe_events, project_summaries, TrainCmd};
pub use state::{
    default_out_dir, fmt_secs, split_cases, Phase, SplitCases, TrainPanel, TrainRun, TRAIN_SPLIT,
    VAL_SPLIT,
};
pub use view::{train_ui, TARGETS};
