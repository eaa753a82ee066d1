//! Errors of the `llm` module.

use std::path::PathBuf;

/// What can go wrong when loading or running a model. Each message says what, where, and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("model file not found: {0}")]
    NotFound(PathBuf),
    #[error("{path}: not a valid GGUF file ({reason}); re-download it (trsr fetch-model for the default model)")]
    BadGguf { path: PathBuf, reason: String },
    #[error("unsupported architecture `{arch}` in {path} (supported: llama, qwen2, qwen3)")]
    UnsupportedArch { arch: String, path: PathBuf },
    #[error("prompt has {prompt_tokens} tokens but the model's context is {context_len} (with {max_new_tokens} new tokens requested); shorten the prompt")]
    PromptTooLong {
        prompt_tokens: usize,
        context_len: usize,
        max_new_tokens: usize,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Other(String),
}
