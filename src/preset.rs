//! The two presets: `workbench` (our own wording and settings, the default) and
//! `reference` (what the LLM-TRSR reference code does, byte for byte where it can be).
//!
//! Researchers put our numbers next to the paper's. Our defaults read better with small
//! instruction-tuned models (a system message, the chat template, numbered items), but
//! they are not what the reference code ran; `--preset reference` is one flag away and
//! switches every prompt, the item text and the generation settings at once. The
//! preset is part of every cache key and is written into trace, score and project
//! files, so results of one never serve the other.
//!
//! The reference strings live in [`crate::prompt`] (prompts) and [`crate::data::text`]
//! (item text); this module only names the preset and its generation settings.

use serde::{Deserialize, Serialize};

use crate::lm::SamplingParams;

/// Which set of prompts and settings a run uses.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Our wording: system message, chat template, numbered items; sampling at 0.7 /
    /// top-p 0.9 with a repetition penalty of 1.1.
    #[default]
    Workbench,
    /// The reference code's prompts (raw `### User:` form, no system message, no chat
    /// template, unnumbered items), item text and Hugging Face sampling defaults.
    Reference,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Workbench => "workbench",
            Preset::Reference => "reference",
        }
    }

    /// Where a scored text is cut, in tokens (`None`: whole texts are scored).
    pub fn score_cut(self) -> Option<usize> {
        match self {
            Preset::Workbench => None,
            Preset::Reference => Some(REFERENCE_MAX_TOKENS),
        }
    }

    /// The summarizer's default sampling under this preset.
    pub fn sampling(self) -> SamplingParams {
        match self {
            Preset::Workbench => SamplingParams::default(),
            Preset::Reference => reference_sampling(),
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which of the reference's two datasets' wording (and item text) to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceWording {
    /// `preprocess/MIND/*` and the `MIND` branches of `LLM-TRSR/*.py`.
    Mind,
    /// `preprocess/amazon/*` and the `amazon` branches.
    Amazon,
}

impl ReferenceWording {
    pub fn name(self) -> &'static str {
        match self {
            ReferenceWording::Mind => "mind",
            ReferenceWording::Amazon => "amazon",
        }
    }

    /// The reference wording of a dataset format: MIND and Amazon-M2 only.
    pub fn for_format(f: crate::data::Format) -> Option<Self> {
        match f {
            crate::data::Format::Mind => Some(ReferenceWording::Mind),
            crate::data::Format::AmazonM2 => Some(ReferenceWording::Amazon),
            crate::data::Format::RecBole | crate::data::Format::Jsonl => None,
        }
    }
}

/// The generation the reference's `transformers.pipeline(..., do_sample=True,
/// max_new_tokens=150)` runs: the library's sampling defaults (temperature 1.0, top-k
/// 50, top-p 1.0, no repetition penalty), 150 new tokens, seed 42 (`set_seed(42)`).
/// (The 30B runs pass `max_length=2048` instead: see `--max-length`.)
pub fn reference_sampling() -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_k: Some(50),
        top_p: Some(1.0),
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        seed: 42,
        max_new_tokens: 150,
        stop: Vec::new(),
        max_length: None,
    }
}

/// The error for `--preset reference` on a dataset the reference has no prompts for.
pub fn no_reference_wording(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--preset reference: the reference code defines prompts and item text for MIND and \
         Amazon-M2 only, and {what}; pass --reference-wording mind or --reference-wording amazon \
         to say which of the two to use"
    )
}

/// The file `trsr prepare` writes beside `items.jsonl` / `cases.jsonl`: the source
/// format and the preset, so later commands know which reference wording fits.
/// The reference's cut of a text, in tokens: `SFTTrainer(max_seq_length=2048)` in
/// training and `truncation=True, max_length=2048` when test.py scores.
pub const REFERENCE_MAX_TOKENS: usize = 2048;

pub const PREPARE_META_FILE: &str = "prepare.json";

/// What `prepare.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrepareMeta {
    /// `mind`, `amazon-m2`, `recbole` or `jsonl`.
    pub format: String,
    pub preset: Preset,
    /// The reference wording `--reference-wording` chose (RecBole / JSONL folders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_wording: Option<ReferenceWording>,
}

impl PrepareMeta {
    /// Reads `DIR/prepare.json`; `Ok(None)` when the folder has none.
    pub fn read(dir: &std::path::Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(PREPARE_META_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                anyhow::anyhow!(
                    "{}:{}: not a valid prepare.json: {e}",
                    path.display(),
                    e.line()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("could not read {}: {e}", path.display())),
        }
    }

    /// The reference wording of the prepared folder's source format.
    pub fn reference_wording(&self) -> Option<ReferenceWording> {
        if self.reference_wording.is_some() {
            return self.reference_wording;
        }
        match self.format.as_str() {
            "mind" => Some(ReferenceWording::Mind),
            "amazon-m2" => Some(ReferenceWording::Amazon),
            _ => None,
        }
    }
}
