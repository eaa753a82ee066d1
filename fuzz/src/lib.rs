//! The fuzz targets of trsr (issue #16): one per parser of a file or answer that comes
//! from elsewhere, each running an input through the same entry point the app and the
//! CLI use. Kept apart from the libFuzzer glue (`fuzz_targets/main.rs`) so that
//! `tests/fuzz_regressions.rs` runs the committed inputs through exactly this code in a
//! normal `cargo test` (it includes this file with `#[path]`).
//!
//! Most parsers take a path, so an input is written to a scratch folder first (one per
//! process). Targets that need two files (a config and its tensors, a dataset's two
//! tables) split the input at [`SPLIT`]; a missing part is an empty file.
//!
//! A target returns `Err(message)` for input it rejects; a panic, an endless loop or an
//! unbounded allocation is a finding.

use std::path::{Path, PathBuf};

/// The targets, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[&str] = &[
    "gguf",
    "chat_template",
    "tokenizer",
    "safetensors",
    "peft",
    "dataset",
    "project",
    "results",
    "remote",
];

/// Where a two-file input is split.
pub const SPLIT: &[u8] = b"\n#-8<-#\n";

/// Runs `data` through `target`'s parser. `Err`: the parser rejected the input (or the
/// target name is unknown); any panic is a bug.
pub fn run(target: &str, data: &[u8]) -> Result<(), String> {
    let dir = scratch();
    match target {
        "gguf" => gguf(&dir, data),
        "chat_template" => chat_template(data),
        "tokenizer" => tokenizer(&dir, data),
        "safetensors" => safetensors(&dir, data),
        "peft" => peft(&dir, data),
        "dataset" => dataset(&dir, data),
        "project" => project(&dir, data),
        "results" => results(&dir, data),
        "remote" => remote(data),
        other => Err(format!("unknown fuzz target `{other}`")),
    }
}

/// This process's scratch folder (under `TMPDIR`); each target overwrites the files it
/// uses, so one folder serves every input.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trsr-fuzz-{}", std::process::id()));
    if !dir.is_dir() {
        let _ = std::fs::create_dir_all(&dir);
    }
    dir
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// `data` cut at the first [`SPLIT`] into two parts (the second empty when absent).
pub fn split2(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(SPLIT.len()).position(|w| w == SPLIT) {
        Some(i) => (&data[..i], &data[i + SPLIT.len()..]),
        None => (data, &[]),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    let s = format!("{e:#}");
    if s.is_empty() {
        "an error without a message".to_string()
    } else {
        s
    }
}

/// A GGUF model file, loaded as `trsr` loads a model: header, metadata, tensor table,
/// tensor data bounds, weights, tokenizer metadata and chat template (one thread, CPU).
fn gguf(dir: &Path, data: &[u8]) -> Result<(), String> {
    let path = dir.join("model.gguf");
    write(&path, data)?;
    let opts = trsr::llm::LoadOptions {
        device: trsr::llm::DevicePref::Cpu,
        threads: Some(1),
        ..Default::default()
    };
    trsr::llm::Engine::load_path(&path, &opts).map_err(err)?;
    Ok(())
}

/// The messages every rendered template sees.
fn messages() -> Vec<trsr::lm::ChatMessage> {
    vec![
        trsr::lm::ChatMessage::system("Be brief."),
        trsr::lm::ChatMessage::user("Summarize: <a> & \"b\" {{ x }}"),
        trsr::lm::ChatMessage::assistant("Done."),
        trsr::lm::ChatMessage::user("Yes or no?"),
    ]
}

/// A chat template (a GGUF's `tokenizer.chat_template` or a tokenizer_config.json's),
/// compiled and rendered with and without the generation prompt.
fn chat_template(data: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(data).map_err(err)?;
    let t = trsr::llm::chat::ChatTemplate::from_str(text, "<s>", "</s>").map_err(err)?;
    let a = t.render(&messages(), true);
    let b = t.render(&messages(), false);
    a.map_err(err)?;
    b.map_err(err)?;
    Ok(())
}

/// A tokenizer: a GGUF's tokenizer metadata (input starting with `GGUF`; its chat
/// template too) or a Hugging Face tokenizer.json; then a round trip of some text.
fn tokenizer(dir: &Path, data: &[u8]) -> Result<(), String> {
    use trsr::llm::tokenizer::Tokenizer;
    let tok = if data.starts_with(b"GGUF") {
        let path = dir.join("tokenizer.gguf");
        write(&path, data)?;
        let (content, _file) = trsr::llm::gguf::read_gguf(&path).map_err(err)?;
        let tok = Tokenizer::from_gguf(&content).map_err(err)?;
        if let Some(t) = trsr::llm::chat::ChatTemplate::from_gguf(&content, &tok).map_err(err)? {
            t.render(&messages(), true).map_err(err)?;
        }
        tok
    } else {
        let path = dir.join("tokenizer.json");
        write(&path, data)?;
        Tokenizer::from_file(&path).map_err(err)?
    };
    for text in ["Hello world, <|im_start|>user\n1 2 3 é 日本 🙂", ""] {
        let ids = tok.encode(text, true).map_err(err)?;
        tok.decode(&ids).map_err(err)?;
    }
    let _ = tok.answer_token("yes");
    Ok(())
}

/// Hugging Face weights: `config.json` | `model.safetensors`.
fn safetensors(dir: &Path, data: &[u8]) -> Result<(), String> {
    let d = dir.join("st");
    let (config, weights) = split2(data);
    write(&d.join("config.json"), config)?;
    write(&d.join("model.safetensors"), weights)?;
    trsr::llm::model::Model::from_safetensors(&d, &candle_core::Device::Cpu).map_err(err)?;
    Ok(())
}

/// A PEFT LoRA adapter: `adapter_config.json` | `adapter_model.safetensors`.
fn peft(dir: &Path, data: &[u8]) -> Result<(), String> {
    use trsr::llm::lora::Adapter;
    let d = dir.join("adapter");
    let (config, weights) = split2(data);
    write(&d.join(Adapter::CONFIG_FILE), config)?;
    write(&d.join(Adapter::WEIGHTS_FILE), weights)?;
    Adapter::load(&d).map_err(err)?;
    Ok(())
}

/// A dataset folder in each format, the two parts of the input as its two files, each
/// loaded as `trsr prepare` and the window load it (format detected from the names).
fn dataset(dir: &Path, data: &[u8]) -> Result<(), String> {
    let (a, b) = split2(data);
    let layouts = [
        ("mind", "news.tsv", "behaviors.tsv"),
        ("amazon", "products_train.csv", "sessions_train.csv"),
        ("recbole", "sample.item", "sample.inter"),
        ("jsonl", "items.jsonl", "cases.jsonl"),
    ];
    let mut errors = Vec::new();
    for (sub, first, second) in layouts {
        let d = dir.join("data").join(sub);
        write(&d.join(first), a)?;
        write(&d.join(second), b)?;
        let opts = trsr::data::LoadOptions {
            locale: None,
            ..Default::default()
        };
        if let Err(e) = trsr::data::load_dir(&d, trsr::data::FormatChoice::Auto, &opts) {
            errors.push(err(e));
        }
    }
    if errors.len() == layouts.len() {
        return Err(errors.join("; "));
    }
    Ok(())
}

/// A project file (RON), loaded, saved to text and parsed again.
fn project(dir: &Path, data: &[u8]) -> Result<(), String> {
    let path = dir.join("fuzz.trsr.ron");
    write(&path, data)?;
    let p = trsr::project::Project::load(&path).map_err(err)?;
    let text = p.to_ron().map_err(err)?;
    trsr::project::parse(&text, &path)
        .map_err(|e| format!("a loaded project does not parse after saving: {}", err(e)))?;
    Ok(())
}

/// Result files: `scores.jsonl` (as `trsr eval` and the window's Plots read it),
/// `summaries.jsonl` (as `trsr train` and `trsr score` read it) and a sweep's
/// `metrics.json`, all on the same bytes.
fn results(dir: &Path, data: &[u8]) -> Result<(), String> {
    let path = dir.join("results.jsonl");
    write(&path, data)?;
    let mut oks = 0;
    let mut errors = Vec::new();
    let mut note = |r: Result<(), String>| match r {
        Ok(()) => oks += 1,
        Err(e) => errors.push(e),
    };
    note(
        trsr::cli::eval::read_all(std::slice::from_ref(&path))
            .map(|_| ())
            .map_err(err),
    );
    note(
        trsr::app::plots::read_scores(&path)
            .map(|_| ())
            .map_err(err),
    );
    note(
        trsr::train::read_summaries(&path, None)
            .map(|_| ())
            .map_err(err),
    );
    note(
        trsr::train::read_summaries(&path, Some("m"))
            .map(|_| ())
            .map_err(err),
    );
    note(
        trsr::cli::batch::read_jsonl::<serde_json::Value>(&path)
            .map(|_| ())
            .map_err(err),
    );
    note(
        trsr::app::plots::read_sweep_with_bands(&path)
            .map(|_| ())
            .map_err(err),
    );
    if oks == 0 {
        return Err(errors.join("; "));
    }
    Ok(())
}

/// A server's answer: a server-sent event stream whose events are completion chunks, and
/// the same bytes as one JSON answer (completion, model list).
fn remote(data: &[u8]) -> Result<(), String> {
    use trsr::remote::wire;
    let mut errors = Vec::new();
    for event in wire::SseReader::new(std::io::BufReader::new(data)) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                errors.push(err(e));
                break;
            }
        };
        match serde_json::from_str::<serde_json::Value>(&event) {
            Ok(v) => {
                if let Err(e) = wire::parse_completion(&v) {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(err(e)),
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Err(e) = wire::parse_completion(&v) {
            errors.push(e);
        }
        if let Err(e) = wire::parse_models(&v) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}
