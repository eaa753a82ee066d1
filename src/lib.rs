//! TRSR Workbench: LLM-TRSR (Zheng et al., WWW 2024) end to end.
//!
//! # Layers and the direction of use
//!
//! ```text
//! cli ──> app ──> worker ──> llm ────> core
//!  │        │        └─────> remote ─> core
//!  │        │                   └────> llm::chat (chat templates; no candle)
//!  └────────┴──────────────────────────> core
//! ```
//!
//! An arrow means "may use"; nothing may use a layer above it. `tests/layers.rs` checks
//! this on the source text, and that each outside library stays in its layer.
//!
//! - **core** (pure logic, no egui, no candle, no HTTP): `data` (items, loaders,
//!   prepare), `segment` (blocks), `prompt` (templates), `summarize` and `rank` (the
//!   method, driving any [`lm::LanguageModel`]), `metrics`, `curate`, `project`,
//!   `export`, `train` (the recommender's SFT set, settings, events and report; the
//!   training loop itself needs candle and lives in `llm::finetune`), `cache` (results
//!   on disk), `lm` (the model interface), `cancel`, `calendar`.
//! - **llm**: candle and tokenizers: the engine that implements `lm::LanguageModel`,
//!   its CPU kernels (`llm::cpu`), GGUF/safetensors loading, LoRA, training.
//! - **remote**: the same interface over OpenAI-compatible HTTP servers (vLLM, SGLang,
//!   llama.cpp's server); knows HTTP, not candle (it renders prompts with `llm::chat`'s
//!   templates, which are minijinja).
//! - **worker**: the background thread that owns a model and runs jobs for the window;
//!   plain data in and out, woken UI through a closure (no egui).
//! - **app**: the window (eframe, egui, egui_plot, rfd); only it knows egui.
//! - **cli**: the subcommands, including `trsr gui`, which opens the window through
//!   `app::run_native`.

pub mod app;
pub mod cache;
pub mod calendar;
pub mod cancel;
pub mod cli;
pub mod curate;
pub mod data;
pub mod export;
pub mod llm;
pub mod lm;
pub mod metrics;
pub mod preset;
pub mod project;
pub mod prompt;
pub mod rank;
pub mod remote;
pub mod segment;
pub mod stats;
pub mod study;
pub mod summarize;
pub mod train;
pub mod worker;
