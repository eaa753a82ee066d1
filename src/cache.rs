//! On-disk cache of finished summaries and LLM scores.
//!
//! A key is the SHA-256 of everything that determines the result: the model's file
//! hash and chat rendering, the templates, the block parameters, the sampling
//! settings, the item-text template and the case's item texts. The same work asked
//! for again (a re-run of a command, the window opening a case) is read back instead
//! of recomputed. Entries are JSON files written atomically (temporary file, then
//! rename), so a crash never leaves a half-written entry behind.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::data::{Case, Catalogue, ItemTextTemplate};
use crate::lm::ModelIdentity;
use crate::metrics::ScoreRecord;
use crate::prompt::Templates;
use crate::rank::RecommendOptions;
use crate::summarize::{SummarizeRequest, SummaryTrace};

/// Bump when the meaning of cached results changes.
const CACHE_VERSION: &str = "trsr-cache-v1";

/// A folder of cached traces and scores.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating if needed) a cache folder.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        for sub in ["traces", "scores"] {
            std::fs::create_dir_all(dir.join(sub)).with_context(|| {
                format!("could not create cache folder {}", dir.join(sub).display())
            })?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// `$TRSR_CACHE_DIR`, else `~/.cache/trsr/results` (the platform cache folder).
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("TRSR_CACHE_DIR") {
            if !d.is_empty() {
                return PathBuf::from(d);
            }
        }
        dirs::cache_dir()
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("trsr")
            .join("results")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, kind: &str, key: &str) -> PathBuf {
        let shard = key.get(..2).unwrap_or("xx");
        self.dir.join(kind).join(shard).join(format!("{key}.json"))
    }

    fn get<T: DeserializeOwned>(&self, kind: &str, key: &str) -> Option<T> {
        let bytes = std::fs::read(self.path(kind, key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn put<T: Serialize>(&self, kind: &str, key: &str, value: &T) -> anyhow::Result<()> {
        let path = self.path(kind, key);
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("could not create cache folder {}", parent.display()))?;
        let tmp = parent.join(format!(
            ".{key}.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        let bytes = serde_json::to_vec(value).context("could not encode a cache entry")?;
        if let Err(e) = std::fs::write(&tmp, bytes) {
            // A full disk: the partial entry would only take space.
            let _ = std::fs::remove_file(&tmp);
            return Err(e)
                .with_context(|| format!("could not write cache entry {}", tmp.display()));
        }
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("could not write cache entry {}", path.display()))
    }

    /// The cached trace for `key`, if any (an unreadable entry counts as absent).
    pub fn get_trace(&self, key: &str) -> Option<SummaryTrace> {
        self.get("traces", key)
    }

    pub fn put_trace(&self, key: &str, t: &SummaryTrace) -> anyhow::Result<()> {
        self.put("traces", key, t)
    }

    /// The cached LLM scores for `key`, if any.
    pub fn get_scores(&self, key: &str) -> Option<ScoreRecord> {
        self.get("scores", key)
    }

    pub fn put_scores(&self, key: &str, r: &ScoreRecord) -> anyhow::Result<()> {
        self.put("scores", key, r)
    }
}

/// Hashes JSON-encoded parts in order, each length-prefixed.
struct KeyHasher(Sha256);

impl KeyHasher {
    fn new(kind: &str) -> Self {
        let mut h = Self(Sha256::new());
        h.str(CACHE_VERSION);
        h.str(kind);
        h
    }
    fn str(&mut self, s: &str) {
        self.0.update((s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
    }
    fn json<T: Serialize>(&mut self, v: &T) {
        // Serializing these plain structs cannot fail; an empty string keeps the key
        // well defined if it ever did.
        self.str(&serde_json::to_string(v).unwrap_or_default());
    }
    /// The prompt form (the preset's part of the templates). Nothing for the chat form,
    /// so the `workbench` preset's keys stay what they were.
    fn form(&mut self, t: &Templates) {
        if t.form != crate::prompt::PromptForm::Chat || t.summarize_first.is_some() {
            self.json(&t.form);
            self.json(&t.summarize_first);
        }
    }
    fn items(&mut self, ids: &[String], catalogue: &Catalogue, text: &ItemTextTemplate) {
        self.str(&ids.len().to_string());
        for id in ids {
            self.str(id);
            match catalogue.get(id) {
                Some(item) => self.str(&text.render(item)),
                None => self.str("\u{0}missing"),
            }
        }
    }
    fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// The key of a summarization with the model's chat template. The case id is not
/// part of it: two cases with the same history share a trace (the caller renames
/// `case` on a hit). For a model in raw-prompt mode use [`trace_key_with`] and
/// [`crate::summarize::prompt_form_tag`].
pub fn trace_key(req: &SummarizeRequest, model: &ModelIdentity) -> String {
    trace_key_with(req, model, "")
}

/// [`trace_key`] plus a string that tells model set-ups apart that share a file
/// (e.g. [`crate::summarize::prompt_form_tag`]: chat template vs raw prompts).
/// An empty `extra` gives exactly [`trace_key`].
pub fn trace_key_with(req: &SummarizeRequest, model: &ModelIdentity, extra: &str) -> String {
    let mut h = KeyHasher::new("trace");
    h.str(&model.sha256);
    if !extra.is_empty() {
        h.str(extra);
    }
    h.json(&req.method);
    h.json(&req.block_params);
    h.json(&req.sampling);
    h.json(&req.templates.system);
    h.str(&req.templates.summarize_block);
    h.str(&req.templates.summarize_update);
    h.str(&req.templates.summarize_merge);
    h.form(req.templates);
    h.json(req.text_template);
    h.items(&req.case.history, req.catalogue, req.text_template);
    h.finish()
}

/// The key of an LLM scoring of one case.
#[allow(clippy::too_many_arguments)]
pub fn score_key(
    model: &ModelIdentity,
    extra: &str,
    templates: &Templates,
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    summary: Option<&str>,
    opts: &RecommendOptions,
) -> String {
    let mut h = KeyHasher::new("score");
    h.str(&model.sha256);
    if !extra.is_empty() {
        h.str(extra);
    }
    h.json(&templates.system);
    h.str(&templates.recommend);
    h.str(&templates.yes);
    h.str(&templates.no);
    h.form(templates);
    h.json(text);
    h.json(opts);
    h.json(&summary);
    h.items(&case.history, catalogue, text);
    let cands: Vec<String> = case.candidates().iter().map(|s| s.to_string()).collect();
    h.items(&cands, catalogue, text);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Item;
    use crate::lm::SamplingParams;
    use crate::segment::BlockParams;
    use crate::summarize::Method;

    fn setup() -> (Catalogue, Case, Templates, ItemTextTemplate, ModelIdentity) {
        let mut c = Catalogue::new();
        for id in ["a", "b", "t"] {
            c.insert(Item {
                id: id.into(),
                fields: vec![("title".into(), format!("title {id}"))],
            });
        }
        let case = Case {
            case: "c1".into(),
            user: "u".into(),
            history: vec!["a".into(), "b".into()],
            target: "t".into(),
            negatives: vec!["a".into()],
            split: None,
        };
        let m = ModelIdentity {
            name: "m".into(),
            sha256: "abc".into(),
            architecture: "llama".into(),
            context_len: 2048,
        };
        (c, case, Templates::news(), ItemTextTemplate::default(), m)
    }

    #[test]
    fn trace_key_changes_with_each_determinant() {
        let (cat, case, t, text, m) = setup();
        let req = SummarizeRequest {
            case: &case,
            catalogue: &cat,
            text_template: &text,
            block_params: BlockParams::default(),
            method: Method::Recurrent,
            templates: &t,
            sampling: SamplingParams::default(),
        };
        let k = trace_key(&req, &m);
        assert_eq!(k, trace_key(&req.clone(), &m));
        let mut other = req.clone();
        other.method = Method::Hierarchical;
        assert_ne!(k, trace_key(&other, &m));
        let mut other = req.clone();
        other.sampling.seed = 1;
        assert_ne!(k, trace_key(&other, &m));
        let mut other = req.clone();
        other.block_params = BlockParams::ByCount {
            size: 2,
            max_blocks: 5,
        };
        assert_ne!(k, trace_key(&other, &m));
        let mut m2 = m.clone();
        m2.sha256 = "def".into();
        assert_ne!(k, trace_key(&req, &m2));
        assert_ne!(k, trace_key_with(&req, &m, "raw"));
        assert_eq!(k, trace_key_with(&req, &m, ""));
        let mut t2 = t.clone();
        t2.summarize_update.push('!');
        let mut other = req.clone();
        other.templates = &t2;
        assert_ne!(k, trace_key(&other, &m));
        // An item's text changes the key.
        let mut cat2 = cat.clone();
        cat2.insert(Item {
            id: "a".into(),
            fields: vec![("title".into(), "changed".into())],
        });
        let mut other = req.clone();
        other.catalogue = &cat2;
        assert_ne!(k, trace_key(&other, &m));
    }

    #[test]
    fn entries_round_trip_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        assert!(cache.get_scores("00ff").is_none());
        let r = ScoreRecord {
            case: "c".into(),
            scorer: "llm:m".into(),
            preset: None,
            candidates: vec![],
        };
        cache.put_scores("00ff", &r).unwrap();
        assert_eq!(cache.get_scores("00ff"), Some(r));
    }
}
