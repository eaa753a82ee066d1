//! The LLM recommender and the baselines, each producing a [`ScoreRecord`] per case.
//!
//! The recommender prompt follows LLM-TRSR: an instruction (the summary is the user's
//! long-term interest, the recent items their short-term interest; answer yes or no),
//! the preference-summary section, the K most recent history items, the candidate, then
//! the assistant turn. Everything up to the candidate is one shared prefix; each
//! candidate adds a suffix. The score is P(yes) from
//! [`LanguageModel::score_yes_no`], which computes the prefix once.
//!
//! Baselines: `random` (seeded per case), `popularity` (how often an item occurs in
//! the training cases' histories and targets; all cases when none is marked `train`),
//! and `bm25` (the history's item text as the query, each candidate's text as the
//! document; statistics over the whole catalogue).

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{Case, Catalogue, ItemTextTemplate};
use crate::lm::LanguageModel;
use crate::metrics::{ScoreRecord, ScoredCandidate};
use crate::prompt::{fill, PromptForm, Templates};
use crate::summarize::Method;

/// Which sections the recommender prompt has.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecommendOptions {
    /// How many of the most recent history items form the short-term section.
    pub recent: usize,
    /// Include the preference-summary section (off: the `no-summary` ablation).
    pub use_summary: bool,
    /// Include the recent-items section (off: the `no-recent` ablation).
    pub use_recent: bool,
    /// Put the raw history (as much of the most recent part as fits the context)
    /// where the summary would be (the `full-history` ablation).
    pub full_history: bool,
    /// Cut each scored text at this many tokens and read P(yes) at the last kept
    /// position, as the reference's test.py does (2,048 under `--preset reference`);
    /// `None` scores whole texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_tokens: Option<usize>,
}

impl Default for RecommendOptions {
    fn default() -> Self {
        Self {
            recent: 5,
            use_summary: true,
            use_recent: true,
            full_history: false,
            truncate_tokens: None,
        }
    }
}

impl RecommendOptions {
    /// The ablation tags of the scorer name, e.g. `:no-summary`.
    pub fn tags(&self) -> String {
        let mut s = String::new();
        if self.full_history {
            s.push_str(":full-history");
        } else if !self.use_summary {
            s.push_str(":no-summary");
        }
        if !self.use_recent {
            s.push_str(":no-recent");
        }
        s
    }
}

/// `llm:<model>[:<method>][:no-summary|:full-history][:no-recent]`.
pub fn llm_scorer_name(model: &str, method: Option<Method>, opts: &RecommendOptions) -> String {
    let mut s = format!("llm:{model}");
    if let Some(m) = method {
        if opts.use_summary && !opts.full_history {
            s.push(':');
            s.push_str(m.name());
        }
    }
    s.push_str(&opts.tags());
    s
}

/// What the reference code writes for a missing summary or an empty item list.
const REFERENCE_NULL: &str = "NULL";

/// Marks where the candidate goes while the prompt is split.
const CANDIDATE_MARK: &str = "\u{1}CANDIDATE\u{1}";

fn item_text(catalogue: &Catalogue, text: &ItemTextTemplate, id: &str) -> String {
    match catalogue.get(id) {
        Some(item) => text.render(item),
        None => format!("id: {id}"),
    }
}

#[allow(clippy::too_many_arguments)]
/// The user message of the recommender prompt, with `candidate` in place and the
/// last `history_keep` history items in the full-history section.
fn user_message(
    templates: &Templates,
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    summary: Option<&str>,
    opts: &RecommendOptions,
    history_keep: usize,
    candidate: &str,
) -> String {
    let texts = |ids: &[String]| -> Vec<String> {
        ids.iter()
            .map(|id| item_text(catalogue, text, id))
            .collect()
    };
    let n = case.history.len();
    let recent = (opts.use_recent && opts.recent > 0)
        .then(|| templates.item_list(&texts(&case.history[n.saturating_sub(opts.recent)..])));
    let history = opts
        .full_history
        .then(|| templates.item_list(&texts(&case.history[n.saturating_sub(history_keep)..])));
    let summary = if opts.use_summary && !opts.full_history {
        summary
    } else {
        None
    };
    // The reference writes `NULL` for a left-out summary or item list.
    let (summary, recent) = match templates.form {
        PromptForm::Verbatim => (
            Some(summary.unwrap_or(REFERENCE_NULL)),
            Some(
                recent
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| REFERENCE_NULL.to_string()),
            ),
        ),
        PromptForm::Chat => (summary, recent),
    };
    fill(
        &templates.recommend,
        &[
            ("summary", summary),
            ("recent", recent.as_deref()),
            ("history", history.as_deref()),
            ("candidate", Some(candidate)),
            ("yes", Some(&templates.yes)),
            ("no", Some(&templates.no)),
        ],
    )
}

/// Splits a rendered prompt at the candidate mark: the prefix ends at the last
/// non-space character before the mark (so the prefix and a suffix tokenize as the
/// whole would), the suffix template holds the rest.
fn split_at_mark(rendered: &str) -> anyhow::Result<(String, String)> {
    let pos = rendered.find(CANDIDATE_MARK).ok_or_else(|| {
        anyhow::anyhow!("the recommend template has no `{{candidate}}` placeholder")
    })?;
    let cut = rendered[..pos].trim_end().len();
    Ok((rendered[..cut].to_string(), rendered[cut..].to_string()))
}

fn suffixes_for(
    suffix_template: &str,
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
) -> Vec<String> {
    case.candidates()
        .iter()
        .map(|id| suffix_template.replacen(CANDIDATE_MARK, &item_text(catalogue, text, id), 1))
        .collect()
}

/// The recommender's user message split into a shared prefix and one suffix per
/// candidate (target first), without the chat template (for display). The full
/// history, when asked for, is not shortened here; [`score_llm`] fits it to the
/// model's context.
pub fn recommend_prompt(
    templates: &Templates,
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    summary: Option<&str>,
    opts: &RecommendOptions,
) -> (String, Vec<String>) {
    let msg = user_message(
        templates,
        case,
        catalogue,
        text,
        summary,
        opts,
        case.history.len(),
        CANDIDATE_MARK,
    );
    match split_at_mark(&msg) {
        Ok((prefix, suffix)) => (prefix, suffixes_for(&suffix, case, catalogue, text)),
        // A template without `{candidate}` (validation normally prevents it): the
        // candidate follows the whole message.
        Err(_) => (
            msg,
            case.candidates()
                .iter()
                .map(|id| format!("\n{}", item_text(catalogue, text, id)))
                .collect(),
        ),
    }
}

/// The exact strings [`score_llm`] scores: the chat-rendered prefix and the suffix
/// per candidate (target first). With `full_history`, the oldest history items are
/// left out until the longest prompt fits the model's context; the second value is
/// how many history items were kept.
pub fn recommend_chat_prompt(
    lm: &dyn LanguageModel,
    templates: &Templates,
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    summary: Option<&str>,
    opts: &RecommendOptions,
) -> anyhow::Result<((String, Vec<String>), usize)> {
    let build = |keep: usize| -> anyhow::Result<(String, Vec<String>)> {
        let msg = user_message(
            templates,
            case,
            catalogue,
            text,
            summary,
            opts,
            keep,
            CANDIDATE_MARK,
        );
        let rendered = templates.render(lm, msg)?;
        let (prefix, suffix) = split_at_mark(&rendered)?;
        Ok((prefix, suffixes_for(&suffix, case, catalogue, text)))
    };
    let full = case.history.len();
    if !opts.full_history {
        return Ok((build(full)?, full));
    }
    let fits = |p: &(String, Vec<String>)| -> anyhow::Result<bool> {
        Ok(prompt_tokens(lm, p)? <= lm.context_len())
    };
    let whole = build(full)?;
    if fits(&whole)? {
        return Ok((whole, full));
    }
    // Binary search the largest number of recent history items that fits.
    let (mut lo, mut hi) = (0usize, full); // lo fits (checked below), hi does not
    let empty = build(0)?;
    if !fits(&empty)? {
        anyhow::bail!(
            "case {}: the recommender prompt does not fit the model's context of {} tokens even \
             without history items",
            case.case,
            lm.context_len()
        );
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(&build(mid)?)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok((build(lo)?, lo))
}

/// P(yes) per candidate, each text cut at `opts.truncate_tokens` when set.
pub fn score_candidates(
    lm: &mut dyn LanguageModel,
    prefix: &str,
    suffixes: &[String],
    opts: &RecommendOptions,
) -> anyhow::Result<Vec<f32>> {
    match opts.truncate_tokens {
        Some(n) => lm.score_yes_no_truncated(prefix, suffixes, n),
        None => lm.score_yes_no(prefix, suffixes),
    }
}

/// The tokens of the longest scored prompt: the shared prefix plus the longest suffix.
fn prompt_tokens(lm: &dyn LanguageModel, p: &(String, Vec<String>)) -> anyhow::Result<usize> {
    let prefix = lm.count_tokens(&p.0)?;
    let mut longest = 0;
    for s in &p.1 {
        longest = longest.max(lm.count_tokens(s)?);
    }
    Ok(prefix + longest)
}

/// Checks before a batch starts that one case's recommender prompt fits the model's
/// context, so a context too small for the prompts (a server started with a short
/// context, say) stops the run with one error naming the model (a server's name
/// carries its URL) instead of failing every case.
pub fn preflight(
    lm: &dyn LanguageModel,
    templates: &Templates,
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    summary: Option<&str>,
    opts: &RecommendOptions,
) -> anyhow::Result<()> {
    let (prompt, _kept) =
        recommend_chat_prompt(lm, templates, case, catalogue, text, summary, opts)?;
    let n = prompt_tokens(lm, &prompt)?;
    let n = opts.truncate_tokens.map_or(n, |cut| n.min(cut));
    if n > lm.context_len() {
        anyhow::bail!(
            "case {}: the recommender prompt has {n} tokens (the shared prefix and the longest \
             candidate); it does not fit the context of {} tokens of {} (use shorter summaries, \
             fewer history items, or a model or server with a longer context)",
            case.case,
            lm.context_len(),
            lm.identity().name
        );
    }
    Ok(())
}

fn record(case: &Case, scorer: String, scores: impl IntoIterator<Item = f64>) -> ScoreRecord {
    ScoreRecord {
        case: case.case.clone(),
        scorer,
        preset: None,
        candidates: case
            .candidates()
            .iter()
            .zip(scores)
            .enumerate()
            .map(|(i, (id, score))| ScoredCandidate {
                id: id.to_string(),
                label: u8::from(i == 0),
                score,
            })
            .collect(),
    }
}

/// Scores the case's candidates with the LLM recommender: P(yes) per candidate.
/// The scorer is `llm:<model>` plus the ablation tags; callers that know the
/// summarization method rename it with [`llm_scorer_name`].
pub fn score_llm(
    lm: &mut dyn LanguageModel,
    templates: &Templates,
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    summary: Option<&str>,
    opts: &RecommendOptions,
) -> anyhow::Result<ScoreRecord> {
    score_llm_with_prefix(lm, templates, case, catalogue, text, summary, opts).map(|(r, _)| r)
}

/// [`score_llm`], also returning the exact shared prompt prefix that was scored
/// (the window shows it), so the prompt is rendered once.
pub fn score_llm_with_prefix(
    lm: &mut dyn LanguageModel,
    templates: &Templates,
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    summary: Option<&str>,
    opts: &RecommendOptions,
) -> anyhow::Result<(ScoreRecord, String)> {
    let ((prefix, suffixes), _kept) =
        recommend_chat_prompt(&*lm, templates, case, catalogue, text, summary, opts)?;
    let probs = score_candidates(lm, &prefix, &suffixes, opts)?;
    if probs.len() != suffixes.len() {
        anyhow::bail!(
            "case {}: the model returned {} scores for {} candidates",
            case.case,
            probs.len(),
            suffixes.len()
        );
    }
    let name = llm_scorer_name(&lm.identity().name, None, opts);
    let mut rec = record(case, name, probs.into_iter().map(f64::from));
    rec.preset = Some(templates.preset());
    Ok((rec, prefix))
}

/// The non-LLM scorers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    Random,
    Popularity,
    Bm25,
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Random => "random",
            Baseline::Popularity => "popularity",
            Baseline::Bm25 => "bm25",
        }
    }
}

/// BM25 parameters (Robertson's usual values).
const BM25_K1: f64 = 1.2;
const BM25_B: f64 = 0.75;
/// Query-term frequency saturation.
const BM25_K3: f64 = 8.0;

/// Lower-cased alphanumeric words of a text.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The text BM25 indexes for an item: the values of the item-text template's
/// fields (not the field names, which every item shares), or the rendered format
/// string when the template has one.
fn index_text(item: &crate::data::Item, text: &ItemTextTemplate) -> String {
    if text.format.is_some() {
        return text.render(item);
    }
    let mut out = String::new();
    let mut push = |v: &str| {
        out.push_str(v);
        out.push(' ');
    };
    if text.fields.is_empty() {
        push(&item.id);
        for (_, v) in &item.fields {
            push(v);
        }
    } else {
        for f in &text.fields {
            if f == "id" {
                push(&item.id);
            } else if let Some(v) = item.field(f) {
                push(v);
            }
        }
    }
    out
}

/// One indexed document: term frequencies and length.
#[derive(Clone, Debug, Default)]
struct Doc {
    tf: HashMap<u32, u32>,
    len: u32,
}

/// What the baselines need, computed once per dataset.
#[derive(Clone, Debug, Default)]
pub struct BaselineStats {
    /// Occurrences of each item in the counted cases' histories and targets.
    pub popularity: HashMap<String, u64>,
    /// How many cases the popularity counts come from, and whether they were the
    /// `train` split (false: all cases, as none is marked `train`).
    pub popularity_cases: usize,
    pub popularity_from_train: bool,
    vocab: HashMap<String, u32>,
    docs: HashMap<String, Doc>,
    df: Vec<u32>,
    avg_len: f64,
}

impl BaselineStats {
    /// Counts popularity from the `train` cases (all cases when none is `train`)
    /// and indexes every catalogue item's text for BM25.
    pub fn build(cases: &[Case], catalogue: &Catalogue, text: &ItemTextTemplate) -> Self {
        let from_train = cases.iter().any(|c| c.split.as_deref() == Some("train"));
        let mut popularity: HashMap<String, u64> = HashMap::new();
        let mut counted = 0;
        for c in cases {
            if from_train && c.split.as_deref() != Some("train") {
                continue;
            }
            counted += 1;
            for id in c.history.iter().chain(std::iter::once(&c.target)) {
                *popularity.entry(id.clone()).or_insert(0) += 1;
            }
        }
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut df: Vec<u32> = Vec::new();
        let mut docs = HashMap::with_capacity(catalogue.len());
        let mut total_len = 0u64;
        for item in catalogue.items() {
            let mut doc = Doc::default();
            for w in tokenize(&index_text(item, text)) {
                let next = vocab.len() as u32;
                let id = *vocab.entry(w).or_insert(next);
                if id as usize == df.len() {
                    df.push(0);
                }
                let tf = doc.tf.entry(id).or_insert(0);
                if *tf == 0 {
                    df[id as usize] += 1;
                }
                *tf += 1;
                doc.len += 1;
            }
            total_len += u64::from(doc.len);
            docs.insert(item.id.clone(), doc);
        }
        let avg_len = if docs.is_empty() {
            0.0
        } else {
            total_len as f64 / docs.len() as f64
        };
        Self {
            popularity,
            popularity_cases: counted,
            popularity_from_train: from_train,
            vocab,
            docs,
            df,
            avg_len,
        }
    }

    fn idf(&self, term: u32) -> f64 {
        let n = self.docs.len() as f64;
        let df = f64::from(self.df[term as usize]);
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// BM25 of the history items' text (the query) against item `doc_id`.
    pub fn bm25(&self, history: &[String], doc_id: &str) -> f64 {
        let Some(doc) = self.docs.get(doc_id) else {
            return 0.0;
        };
        let mut qtf: HashMap<u32, u32> = HashMap::new();
        for h in history {
            if let Some(d) = self.docs.get(h) {
                for (&t, &n) in &d.tf {
                    *qtf.entry(t).or_insert(0) += n;
                }
            }
        }
        let norm = if self.avg_len > 0.0 {
            1.0 - BM25_B + BM25_B * f64::from(doc.len) / self.avg_len
        } else {
            1.0
        };
        let mut score = 0.0;
        for (t, q) in qtf {
            if let Some(&tf) = doc.tf.get(&t) {
                let tf = f64::from(tf);
                let q = f64::from(q);
                score += self.idf(t) * tf * (BM25_K1 + 1.0) / (tf + BM25_K1 * norm)
                    * (BM25_K3 + 1.0)
                    * q
                    / (BM25_K3 + q);
            }
        }
        score
    }

    /// Number of distinct indexed words.
    pub fn vocabulary_len(&self) -> usize {
        self.vocab.len()
    }
}

/// A per-case seed: the same `seed` and case always give the same random scores,
/// whatever order cases run in.
fn case_seed(seed: u64, case: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(case.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// Scores one case with a baseline. `seed` only matters for `random`.
pub fn score_baseline(
    b: Baseline,
    stats: &BaselineStats,
    case: &Case,
    catalogue: &Catalogue,
    seed: u64,
) -> ScoreRecord {
    let cands = case.candidates();
    let scores: Vec<f64> = match b {
        Baseline::Random => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(case_seed(seed, &case.case));
            cands.iter().map(|_| rng.random::<f64>()).collect()
        }
        Baseline::Popularity => cands
            .iter()
            .map(|id| stats.popularity.get(*id).copied().unwrap_or(0) as f64)
            .collect(),
        Baseline::Bm25 => {
            let known: Vec<String> = case
                .history
                .iter()
                .filter(|h| catalogue.contains(h))
                .cloned()
                .collect();
            cands.iter().map(|id| stats.bm25(&known, id)).collect()
        }
    };
    record(case, b.name().to_string(), scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Item;

    fn item(id: &str, title: &str) -> Item {
        Item {
            id: id.into(),
            fields: vec![("title".into(), title.into())],
        }
    }

    fn cat() -> Catalogue {
        let mut c = Catalogue::new();
        for (id, t) in [
            ("a", "football match report"),
            ("b", "football transfer news"),
            ("c", "stock market falls"),
            ("d", "cooking pasta at home"),
            ("e", "football cup final"),
        ] {
            c.insert(item(id, t));
        }
        c
    }

    fn case(split: Option<&str>, hist: &[&str], target: &str, negs: &[&str]) -> Case {
        Case {
            case: format!("c-{target}"),
            user: "u".into(),
            history: hist.iter().map(|s| s.to_string()).collect(),
            target: target.into(),
            negatives: negs.iter().map(|s| s.to_string()).collect(),
            split: split.map(str::to_string),
        }
    }

    #[test]
    fn bm25_prefers_lexically_close_candidates() {
        let c = cat();
        let text = ItemTextTemplate::with_fields(&["title"]);
        let stats = BaselineStats::build(&[], &c, &text);
        let k = case(None, &["a", "b"], "e", &["c", "d"]);
        let r = score_baseline(Baseline::Bm25, &stats, &k, &c, 0);
        assert_eq!(r.scorer, "bm25");
        assert_eq!(r.candidates[0].id, "e");
        assert_eq!(r.candidates[0].label, 1);
        assert!(r.candidates[0].score > 0.0);
        assert_eq!(r.candidates[1].score, 0.0);
        assert_eq!(r.candidates[2].score, 0.0);
    }

    #[test]
    fn popularity_counts_train_cases_only_when_marked() {
        let c = cat();
        let text = ItemTextTemplate::default();
        let cases = vec![
            case(Some("train"), &["a", "b"], "c", &[]),
            case(Some("train"), &["c"], "b", &[]),
            case(Some("test"), &["d", "d", "d"], "e", &["c", "d"]),
        ];
        let stats = BaselineStats::build(&cases, &c, &text);
        assert!(stats.popularity_from_train);
        assert_eq!(stats.popularity_cases, 2);
        let r = score_baseline(Baseline::Popularity, &stats, &cases[2], &c, 0);
        let s: Vec<f64> = r.candidates.iter().map(|x| x.score).collect();
        assert_eq!(s, vec![0.0, 2.0, 0.0]);
        // No train split: all cases count.
        let all: Vec<Case> = cases
            .iter()
            .cloned()
            .map(|mut k| {
                k.split = None;
                k
            })
            .collect();
        let stats = BaselineStats::build(&all, &c, &text);
        assert!(!stats.popularity_from_train);
        assert_eq!(stats.popularity.get("d"), Some(&3));
    }

    #[test]
    fn random_is_seeded_per_case() {
        let c = cat();
        let stats = BaselineStats::default();
        let k = case(None, &["a"], "b", &["c", "d", "e"]);
        let r1 = score_baseline(Baseline::Random, &stats, &k, &c, 7);
        let r2 = score_baseline(Baseline::Random, &stats, &k, &c, 7);
        let r3 = score_baseline(Baseline::Random, &stats, &k, &c, 8);
        assert_eq!(r1, r2);
        assert_ne!(r1, r3);
        assert!(r1.candidates.iter().all(|x| (0.0..1.0).contains(&x.score)));
    }

    #[test]
    fn prompt_splits_before_the_candidate_and_drops_ablated_sections() {
        let c = cat();
        let text = ItemTextTemplate::with_fields(&["title"]);
        let t = Templates::news();
        let k = case(None, &["a", "b", "c"], "e", &["d"]);
        let opts = RecommendOptions {
            recent: 2,
            ..Default::default()
        };
        let (prefix, suffixes) = recommend_prompt(&t, &k, &c, &text, Some("likes sport"), &opts);
        assert!(prefix.contains("likes sport"));
        assert!(prefix.contains("football transfer news") && prefix.contains("stock market"));
        assert!(
            !prefix.contains("football match report"),
            "only 2 recent items"
        );
        assert!(!prefix.ends_with(char::is_whitespace));
        assert_eq!(suffixes.len(), 2);
        assert!(suffixes[0].contains("football cup final"));
        assert!(suffixes[1].contains("cooking pasta"));
        assert!(suffixes[0].starts_with('\n'));
        let no_sum = RecommendOptions {
            use_summary: false,
            ..opts.clone()
        };
        let (p2, _) = recommend_prompt(&t, &k, &c, &text, Some("likes sport"), &no_sum);
        assert!(!p2.contains("likes sport") && !p2.contains("Interest summary"));
        let full = RecommendOptions {
            full_history: true,
            use_recent: false,
            ..opts
        };
        let (p3, _) = recommend_prompt(&t, &k, &c, &text, Some("likes sport"), &full);
        assert!(p3.contains("football match report") && !p3.contains("likes sport"));
        assert!(!p3.contains("Most recent clicks"));
    }

    #[test]
    fn scorer_names() {
        let o = RecommendOptions::default();
        assert_eq!(
            llm_scorer_name("m", Some(Method::Recurrent), &o),
            "llm:m:recurrent"
        );
        let o = RecommendOptions {
            use_summary: false,
            ..o
        };
        assert_eq!(
            llm_scorer_name("m", Some(Method::Recurrent), &o),
            "llm:m:no-summary"
        );
    }
}
