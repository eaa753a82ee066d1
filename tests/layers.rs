//! The dependency direction `src/lib.rs` states, checked on the source text: which
//! top-level module may name which, and where egui / eframe and candle / tokenizers may
//! appear. Fails naming the file, line and the import that breaks the rule.

use std::path::{Path, PathBuf};

/// The layer of a top-level module (the first path component under `src/`).
fn layer(module: &str) -> &'static str {
    match module {
        "app" => "app",
        "cli" | "main" => "cli",
        "worker" => "worker",
        "llm" => "llm",
        "remote" => "remote",
        "lib" => "lib",
        _ => "core",
    }
}

/// The layers a layer may use (besides itself).
fn may_use(from: &str) -> &'static [&'static str] {
    match from {
        "lib" => &["core", "llm", "remote", "worker", "app", "cli"],
        "cli" => &["core", "llm", "remote", "worker", "app"],
        "app" => &["core", "worker"],
        "worker" => &["core", "llm", "remote"],
        "llm" => &["core"],
        // The chat templates (minijinja, no candle) live in `llm::chat`; the crates
        // that belong to `llm` alone stay out of `remote` (see OWNED).
        "remote" => &["core", "llm"],
        _ => &["core"],
    }
}

/// Crates only one layer may name.
const OWNED: &[(&str, &str)] = &[
    ("eframe", "app"),
    ("egui", "app"),
    ("egui_plot", "app"),
    ("rfd", "app"),
    ("candle_core", "llm"),
    ("candle_nn", "llm"),
    ("candle_transformers", "llm"),
    ("tokenizers", "llm"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The identifiers that start a path in `code` after `prefix` (e.g. `crate::`).
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        out.push(&rest[..end]);
    }
    out
}

/// Crate names a line uses: `name::`, `use name`, `name::{`.
fn crates_named<'a>(code: &'a str, names: &[&'a str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    for n in names {
        let pat = format!("{n}::");
        for (i, _) in code.match_indices(&pat) {
            let before = code[..i].chars().last();
            let after_colons = code[..i].ends_with("::");
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') || after_colons {
                continue;
            }
            out.push(*n);
        }
    }
    out
}

#[test]
fn modules_use_only_the_layers_lib_rs_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut broken = Vec::new();
    let owned: Vec<&str> = OWNED.iter().map(|(c, _)| *c).collect();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let from = layer(&top);
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for m in paths_after(code, "crate::") {
                let to = layer(m);
                if to != from && !may_use(from).contains(&to) {
                    broken.push(format!(
                        "src/{}:{}: `{from}` uses `crate::{m}` (`{to}`): {}",
                        rel.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
            for c in crates_named(code, &owned) {
                let owner = OWNED.iter().find(|(n, _)| *n == c).unwrap().1;
                if from != owner && from != "lib" {
                    broken.push(format!(
                        "src/{}:{}: `{c}` belongs to `{owner}` only, used in `{from}`: {}",
                        rel.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports against the dependency direction of src/lib.rs:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checker_sees_a_forbidden_import() {
    assert_eq!(paths_after("use crate::cli::export;", "crate::"), ["cli"]);
    assert!(paths_after("use mycrate::cli;", "crate::").is_empty());
    assert_eq!(
        crates_named("let d = candle_core::Device::Cpu;", &["candle_core"]),
        ["candle_core"]
    );
    assert!(crates_named("use super::egui::x;", &["egui"]).is_empty());
    assert!(!may_use("app").contains(&"cli"));
    assert!(!may_use("core").contains(&"llm"));
}
