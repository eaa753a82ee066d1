// placeholder: replaced by the lead's version at merge
//! Where the default model lives.

use std::path::PathBuf;

/// File name of the default model.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$TRSR_MODEL_DIR/<file>` or `~/.cache/trsr/models/<file>`.
pub fn default_model_path() -> PathBuf {
    let dir = match std::env::var_os("TRSR_MODEL_DIR") {
        Some(d) => PathBuf::from(d),
        None => dirs::cache_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("trsr")
            .join("models"),
    };
    dir.join(DEFAULT_MODEL_FILE)
}

/// The default model's path if it is in place (this placeholder does not download).
pub fn ensure_default_model() -> anyhow::Result<PathBuf> {
    let path = default_model_path();
    if path.is_file() {
        Ok(path)
    } else {
        anyhow::bail!(
            "the default model is missing at {}; run `trsr fetch-model` to put it in place",
            path.display()
        )
    }
}
