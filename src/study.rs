//! The study file of `trsr study`: one RON file describes a grid of
//! configurations (dataset, preset, methods, block sizes, history limits, summary
//! on/off, models and adapters, baselines, case limit, seeds) so that a whole
//! comparison is one command and its report can be reproduced from the file.
//!
//! Why its own parser step: a typo in a grid must not silently run the wrong
//! study. Unknown keys are refused (`deny_unknown_fields`) and every value is
//! range-checked after parsing; both errors name the file, the line and the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One model of the grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `default`, a GGUF path, `hf:owner/repo/file.gguf` or `owner/repo:file.gguf`.
    pub model: String,
    /// A PEFT LoRA adapter folder put on the model.
    #[serde(default)]
    pub adapter: Option<PathBuf>,
}

/// A study grid. Every list is a grid axis; the study runs their product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyConfig {
    /// Dataset folder (raw MIND / Amazon-M2 / RecBole, or prepared JSONL), relative
    /// to the current directory.
    pub data: PathBuf,
    /// Prompt preset name (`workbench` or `reference`).
    #[serde(default = "default_preset")]
    pub preset: String,
    /// Summarization methods: `hierarchical`, `recurrent`.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    #[serde(default = "default_block_sizes")]
    pub block_sizes: Vec<usize>,
    #[serde(default = "default_five")]
    pub max_blocks: Vec<usize>,
    /// Recent items in the recommender prompt.
    #[serde(default = "default_five")]
    pub recent: Vec<usize>,
    /// Score with a summary (`true`: every method and block size) and/or without
    /// one (`false`).
    #[serde(default = "default_summary")]
    pub summary: Vec<bool>,
    #[serde(default = "default_models")]
    pub models: Vec<ModelSpec>,
    /// Baselines: `random`, `popularity`, `bm25`.
    #[serde(default = "default_baselines")]
    pub baselines: Vec<String>,
    /// Only the first N cases.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only cases of this split.
    #[serde(default)]
    pub split: Option<String>,
    /// Sampling seeds (summaries and the random baseline); one run per seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// The metric that picks the best baseline and is tested against it.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// Confidence level of the intervals.
    #[serde(default = "default_ci")]
    pub ci: f64,
    /// Bootstrap resamples.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Tie policy: `pessimistic`, `optimistic` or `average`.
    #[serde(default = "default_ties")]
    pub ties: String,
    /// Most new tokens per summary step.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Parallel model instances (default: as the batch commands choose).
    #[serde(default)]
    pub threads: Option<usize>,
}

impl StudyConfig {
    /// The preset the study runs under.
    pub fn preset(&self) -> anyhow::Result<crate::preset::Preset> {
        <crate::preset::Preset as clap::ValueEnum>::from_str(&self.preset, true)
            .map_err(|e| anyhow::anyhow!("study key `preset`: {e}"))
    }
}

fn default_preset() -> String {
    "workbench".into()
}
fn default_methods() -> Vec<String> {
    vec!["hierarchical".into(), "recurrent".into()]
}
fn default_block_sizes() -> Vec<usize> {
    vec![5]
}
fn default_five() -> Vec<usize> {
    vec![5]
}
fn default_summary() -> Vec<bool> {
    vec![true, false]
}
fn default_models() -> Vec<ModelSpec> {
    vec![ModelSpec {
        model: "default".into(),
        adapter: None,
    }]
}
fn default_baselines() -> Vec<String> {
    vec!["random".into(), "popularity".into(), "bm25".into()]
}
fn default_seeds() -> Vec<u64> {
    vec![42]
}
fn default_metric() -> String {
    "ndcg@10".into()
}
fn default_ci() -> f64 {
    0.95
}
fn default_bootstrap() -> usize {
    crate::stats::DEFAULT_RESAMPLES
}
fn default_max_new_tokens() -> usize {
    150
}
fn default_ties() -> String {
    "pessimistic".into()
}

/// Presets a study may name.
pub const PRESETS: &[&str] = &["workbench", "reference"];
/// The metric cut-offs of a study (those of `trsr sweep`).
pub const KS: [usize; 3] = [3, 5, 10];

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("could not read study file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{col}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{path}:{line}: key `{key}`: {message}")]
    Value {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

fn parse_method(s: &str) -> Option<crate::summarize::Method> {
    <crate::summarize::Method as clap::ValueEnum>::from_str(s, true).ok()
}

fn parse_baseline(s: &str) -> Option<crate::rank::Baseline> {
    <crate::rank::Baseline as clap::ValueEnum>::from_str(s, true).ok()
}

/// The 1-based line where `key:` is first written (outside `//` comments), or 1.
pub fn line_of(text: &str, key: &str) -> usize {
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(pos) = rest.find(key) {
            let before = rest[..pos].chars().last();
            let after = rest[pos + key.len()..].trim_start();
            let starts_word = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if starts_word && after.starts_with(':') {
                return i + 1;
            }
            rest = &rest[pos + key.len()..];
        }
    }
    1
}

impl StudyConfig {
    /// Parses and checks a study file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, StudyError> {
        let cfg: StudyConfig = ron::from_str(text).map_err(|e| StudyError::Syntax {
            path: path.to_path_buf(),
            line: e.span.start.line,
            col: e.span.start.col,
            message: e.code.to_string(),
        })?;
        cfg.check(text, path)?;
        Ok(cfg)
    }

    /// Reads and parses a study file.
    pub fn load(path: &Path) -> Result<Self, StudyError> {
        let text = std::fs::read_to_string(path).map_err(|source| StudyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    fn check(&self, text: &str, path: &Path) -> Result<(), StudyError> {
        let err = |key: &str, message: String| StudyError::Value {
            path: path.to_path_buf(),
            line: line_of(text, key),
            key: key.to_string(),
            message,
        };
        if self.data.as_os_str().is_empty() {
            return Err(err("data", "must name a dataset folder".into()));
        }
        if !PRESETS.contains(&self.preset.as_str()) {
            return Err(err(
                "preset",
                format!(
                    "`{}` is not a preset; use one of: {}",
                    self.preset,
                    PRESETS.join(", ")
                ),
            ));
        }
        for m in &self.methods {
            if parse_method(m).is_none() {
                return Err(err(
                    "methods",
                    format!("`{m}` is not a method; use hierarchical or recurrent"),
                ));
            }
        }
        let positive = |key: &str, v: &[usize], max: usize| -> Result<(), StudyError> {
            if v.is_empty() {
                return Err(err(key, "must list at least one value".into()));
            }
            if let Some(bad) = v.iter().find(|&&x| x == 0 || x > max) {
                return Err(err(key, format!("{bad} is out of range 1..={max}")));
            }
            Ok(())
        };
        positive("block_sizes", &self.block_sizes, 1000)?;
        positive("max_blocks", &self.max_blocks, 1000)?;
        positive("recent", &self.recent, 1000)?;
        if self.summary.is_empty() && self.baselines.is_empty() {
            return Err(err(
                "summary",
                "is empty and there are no baselines: nothing to run".into(),
            ));
        }
        if self.summary.contains(&true) && self.methods.is_empty() {
            return Err(err(
                "methods",
                "is empty while `summary` has true: name at least one method".into(),
            ));
        }
        if !self.summary.is_empty() && self.models.is_empty() {
            return Err(err("models", "must list at least one model".into()));
        }
        for m in &self.models {
            if m.model.trim().is_empty() {
                return Err(err("model", "must not be empty (e.g. \"default\")".into()));
            }
        }
        for b in &self.baselines {
            if parse_baseline(b).is_none() {
                return Err(err(
                    "baselines",
                    format!("`{b}` is not a baseline; use random, popularity or bm25"),
                ));
            }
        }
        if self.limit == Some(0) {
            return Err(err(
                "limit",
                "must be at least 1 (or None for all cases)".into(),
            ));
        }
        if self.seeds.is_empty() {
            return Err(err("seeds", "must list at least one seed".into()));
        }
        if !crate::metrics::metric_names(&KS).contains(&self.metric) {
            return Err(err(
                "metric",
                format!(
                    "`{}` is not a metric; use one of: {}",
                    self.metric,
                    crate::metrics::metric_names(&KS).join(", ")
                ),
            ));
        }
        if !(self.ci > 0.0 && self.ci < 1.0) {
            return Err(err(
                "ci",
                format!("{} is out of range (0, 1), e.g. 0.95", self.ci),
            ));
        }
        if self.bootstrap == 0 || self.bootstrap > 1_000_000 {
            return Err(err(
                "bootstrap",
                format!("{} is out of range 1..=1000000", self.bootstrap),
            ));
        }
        if crate::metrics::TiePolicy::parse(&self.ties).is_none() {
            return Err(err(
                "ties",
                format!("`{}`: use pessimistic, optimistic or average", self.ties),
            ));
        }
        if self.max_new_tokens == 0 || self.max_new_tokens > 8192 {
            return Err(err(
                "max_new_tokens",
                format!("{} is out of range 1..=8192", self.max_new_tokens),
            ));
        }
        if self.threads == Some(0) {
            return Err(err("threads", "must be at least 1".into()));
        }
        Ok(())
    }

    /// The methods, parsed (checked in [`StudyConfig::parse`]).
    pub fn methods(&self) -> Vec<crate::summarize::Method> {
        self.methods
            .iter()
            .filter_map(|m| parse_method(m))
            .collect()
    }

    /// The baselines, parsed.
    pub fn baselines(&self) -> Vec<crate::rank::Baseline> {
        self.baselines
            .iter()
            .filter_map(|b| parse_baseline(b))
            .collect()
    }

    pub fn ties(&self) -> crate::metrics::TiePolicy {
        crate::metrics::TiePolicy::parse(&self.ties).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StudyConfig, StudyError> {
        StudyConfig::parse(text, Path::new("study.ron"))
    }

    #[test]
    fn defaults_fill_a_minimal_file() {
        let c = parse(r#"(data: "sample_data/mind")"#).unwrap();
        assert_eq!(c.block_sizes, vec![5]);
        assert_eq!(c.seeds, vec![42]);
        assert_eq!(c.metric, "ndcg@10");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = parse("(\n  data: \"d\",\n  block_size: [3],\n)")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("study.ron:3:"), "{e}");
        assert!(e.contains("block_size"), "{e}");
    }

    #[test]
    fn out_of_range_value_names_line_and_key() {
        let e = parse("(\n  data: \"d\",\n  // block_sizes: [2]\n  block_sizes: [3, 0],\n)")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "study.ron:4: key `block_sizes`: 0 is out of range 1..=1000"
        );
        let e = parse("(data: \"d\",\n ci: 1.5)").unwrap_err().to_string();
        assert!(e.starts_with("study.ron:2: key `ci`"), "{e}");
        let e = parse("(data: \"d\",\n\n methods: [\"flat\"])")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("study.ron:3: key `methods`"), "{e}");
    }
}
