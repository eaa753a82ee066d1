//! TRSR Workbench: LLM-TRSR (Zheng et al., WWW 2024) end to end.
//!
//! Dependency direction: `app -> worker -> llm -> core`, `app -> core`,
//! `cli -> worker, llm, core`. The core modules (`data`, `segment`, `prompt`,
//! `metrics`, `summarize`, `rank`, `curate`, `export`, `lm`) know neither egui nor
//! candle. `summarize` and `rank` drive a model through the [`lm::LanguageModel`]
//! trait, which `llm` implements on candle.

pub mod app;
pub mod cache;
pub mod cli;
pub mod curate;
pub mod data;
pub mod export;
pub mod llm;
pub mod lm;
pub mod metrics;
pub mod project;
pub mod prompt;
pub mod rank;
pub mod remote;
pub mod segment;
pub mod summarize;
pub mod train;
pub mod worker;
