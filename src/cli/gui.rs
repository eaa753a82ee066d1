//! `trsr gui [--data DIR] [--model M] [--project FILE] [--autorun]`: open the window.

use std::path::PathBuf;

use crate::app::{Settings, StartOptions};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct GuiArgs {
    /// Dataset folder to open at start.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Model to load at start: `default`, a GGUF/safetensors path, or a Hugging Face reference.
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// Curation project file (RON) to open; created when missing. Autosaved.
    #[arg(long, value_name = "FILE")]
    pub project: Option<PathBuf>,
    /// Select the first user and run a summary as soon as data and model are ready
    /// (used by scripts/screenshot.sh).
    #[arg(long)]
    pub autorun: bool,
    /// Settings file (RON) instead of the default one under the config folder.
    #[arg(long, value_name = "FILE")]
    pub settings: Option<PathBuf>,
}

pub fn run(args: GuiArgs) -> anyhow::Result<()> {
    let opts = StartOptions {
        data: args.data,
        model: args.model,
        project: args.project,
        settings_path: args.settings.or_else(Settings::default_path),
        autorun: args.autorun,
        load_model: false,
        cache_dir: Some(crate::cache::Cache::default_dir()),
    };
    crate::app::run_native(opts)
}
