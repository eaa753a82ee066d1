//! The headless subcommands, and the entry point that opens the window when no
//! subcommand is given.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod batch;
pub mod eval;
pub mod eval_stats;
pub mod export;
pub mod fetch_model;
pub mod generate;
pub mod gpu_check;
pub mod gui;
pub mod prepare;
pub mod score;
pub mod study;
pub mod study_charts;
pub mod summarize;
pub mod sweep;
pub mod train;

/// Makes a write past the file-size limit (`ulimit -f`, RLIMIT_FSIZE) fail with an error
/// (EFBIG, "File too large") instead of killing the process: by default the kernel sends
/// SIGXFSZ, whose default action ends the process on the spot, with no message naming the
/// file and no chance to finish cleanly. Rust's runtime ignores SIGPIPE but leaves SIGXFSZ
/// alone. With the signal ignored, the write returns the error, which names the file
/// (`could not write FILE: File too large`), finished lines stay, and the project keeps
/// its last good save. The binary's `main` calls this first thing; the window and every
/// subcommand get it.
pub fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: sets one signal's disposition to "ignore" (no handler code runs); sound at
    // any time, and called before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "trsr",
    version,
    about = "TRSR Workbench: LLM-TRSR for text-rich sequential recommendation",
    long_about = "TRSR Workbench: load a recommendation dataset, segment histories into blocks, \
                  summarize user preferences with a local LLM, score candidates with an LLM \
                  recommender and evaluate. With no subcommand it opens the window."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open the workbench window (also what `trsr` with no subcommand does).
    Gui(gui::GuiArgs),
    /// Put the default model (SmolLM2-135M-Instruct Q4_1 GGUF) in place and verify it.
    FetchModel(fetch_model::FetchModelArgs),
    /// Turn a raw dataset folder into items.jsonl + cases.jsonl (evaluation cases).
    Prepare(prepare::PrepareArgs),
    /// Compute Recall/MRR/NDCG@K and AUC from scores.jsonl files.
    Eval(eval::EvalArgs),
    /// Generate text with a model, streamed to stdout.
    Generate(generate::GenerateArgs),
    /// Summarize users' preferences block by block (hierarchical or recurrent).
    Summarize(summarize::SummarizeArgs),
    /// Score each case's candidates with the LLM recommender or a baseline.
    Score(score::ScoreArgs),
    /// Summarize and score over block sizes and methods; write one metrics table.
    Sweep(sweep::SweepArgs),
    /// Run a study grid from a RON file; write report.md, PNG charts and scores.jsonl.
    Study(study::StudyArgs),
    /// Export curated SFT examples and result tables.
    Export(export::ExportArgs),
    /// Fine-tune the LLM recommender with LoRA (PEFT format), validating each epoch.
    Train(train::TrainArgs),
    /// Check the engine on a GPU against the CPU engine (greedy decode, P(yes), a LoRA
    /// step) and measure it; `--device cpu` checks the generic path on the CPU.
    GpuCheck(gpu_check::GpuCheckArgs),
}

/// Parses the command line, runs it, and turns errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => gui::run(gui::GuiArgs::default()),
        Some(Command::Gui(a)) => gui::run(a),
        Some(Command::FetchModel(a)) => fetch_model::run(a),
        Some(Command::Prepare(a)) => prepare::run(a),
        Some(Command::Eval(a)) => eval::run(a),
        Some(Command::Generate(a)) => generate::run(a),
        Some(Command::Summarize(a)) => summarize::run(a),
        Some(Command::Score(a)) => score::run(a),
        Some(Command::Sweep(a)) => sweep::run(a),
        Some(Command::Study(a)) => study::run(a),
        Some(Command::Export(a)) => export::run(a),
        Some(Command::Train(a)) => train::run(a),
        Some(Command::GpuCheck(a)) => gpu_check::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
