//! Ranking metrics (Recall/MRR/NDCG@K, AUC), tie policies, aggregation, and the
//! `scores.jsonl` record.
//!
//! Definitions, per case (a list of scored candidates, one or more positives):
//! - Recall@K: positives ranked in the top K, divided by the number of positives
//!   (with one positive: 1 if it is in the top K, else 0).
//! - MRR@K: 1 / rank of the best-ranked positive if that rank is at most K, else 0.
//! - NDCG@K: binary gains; DCG = sum over positives ranked p <= K of 1 / log2(p + 1);
//!   divided by the ideal DCG, all positives first: sum over p = 1..min(positives, K).
//! - AUC: over all (positive, negative) pairs, the fraction where the positive
//!   scores higher (a tie counts as the tie policy says). Undefined for a case
//!   without negatives, which is then left out of the AUC average.
//!
//! Ties: candidates with equal scores form a tie group occupying consecutive
//! ranks. `pessimistic` puts the group's negatives first, `optimistic` its
//! positives first, `average` takes the expected value over a uniformly random order
//! within the group. None of them is the reference code's: it ranks with
//! `np.argsort(-score)`, which is not a stable sort, so its order of tied candidates
//! depends on numpy's version and the CPU and no policy reproduces it;
//! [`target_tied`] tells which cases such ties touch.
//!
//! Averages are over cases, per scorer. A case without a positive is skipped and
//! counted in [`Summary::skipped`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One candidate's score in a `scores.jsonl` line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredCandidate {
    pub id: String,
    /// 1 for a positive (the target), 0 for a negative.
    pub label: u8,
    pub score: f64,
}

/// One line of `scores.jsonl`: `{"case": "c1", "scorer": "llm:<model>", "candidates": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    pub case: String,
    pub scorer: String,
    pub candidates: Vec<ScoredCandidate>,
    /// The preset of an LLM scorer's prompt (`workbench` or `reference`); absent for
    /// baselines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<crate::preset::Preset>,
}

/// How tied scores between a positive and negatives are ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum TiePolicy {
    /// A tied negative ranks above the positive (the honest default).
    #[default]
    Pessimistic,
    /// A tied positive ranks above the negatives (an upper bound).
    Optimistic,
    /// The expected value over a uniformly random order of tied candidates.
    Average,
}

impl TiePolicy {
    pub fn name(self) -> &'static str {
        match self {
            TiePolicy::Pessimistic => "pessimistic",
            TiePolicy::Optimistic => "optimistic",
            TiePolicy::Average => "average",
        }
    }

    pub fn parse(s: &str) -> Option<TiePolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pessimistic" => Some(TiePolicy::Pessimistic),
            "optimistic" => Some(TiePolicy::Optimistic),
            "average" => Some(TiePolicy::Average),
            _ => None,
        }
    }
}

/// Whether a positive (the target) has exactly the score of some negative: the
/// cases whose metrics depend on the tie policy.
pub fn target_tied(cands: &[ScoredCandidate]) -> bool {
    cands
        .iter()
        .filter(|c| c.label > 0)
        .any(|p| cands.iter().any(|n| n.label == 0 && n.score == p.score))
}

/// Per scorer, how many cases have the target tied with a negative.
pub fn tied_cases(records: &[ScoreRecord]) -> std::collections::HashMap<String, usize> {
    let mut out = std::collections::HashMap::new();
    for r in records {
        let n = out.entry(r.scorer.clone()).or_insert(0);
        if target_tied(&r.candidates) {
            *n += 1;
        }
    }
    out
}

/// Averages over the cases of one scorer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Cases evaluated (with at least one positive).
    pub cases: usize,
    /// `recall@K`, `mrr@K`, `ndcg@K` for each K, and `auc` (absent when no case
    /// had a negative).
    pub metrics: BTreeMap<String, f64>,
    /// Cases left out because they had no positive.
    #[serde(default)]
    pub skipped: usize,
}

/// Metric names in table order for the given cut-offs.
pub fn metric_names(ks: &[usize]) -> Vec<String> {
    let mut names = Vec::new();
    for k in ks {
        for m in ["recall", "mrr", "ndcg"] {
            names.push(format!("{m}@{k}"));
        }
    }
    names.push("auc".into());
    names
}

/// 1 / log2(p + 1): the discounted gain of a relevant item at 1-based rank `p`.
fn gain(p: usize) -> f64 {
    1.0 / ((p + 1) as f64).log2()
}

/// Metrics of one case. Returns `None` when the case has no positive.
/// The map holds `recall@K`, `mrr@K`, `ndcg@K` per K, and `auc` when the case has
/// a negative.
pub fn case_metrics(
    cands: &[ScoredCandidate],
    ks: &[usize],
    ties: TiePolicy,
) -> Option<BTreeMap<String, f64>> {
    let n_pos = cands.iter().filter(|c| c.label > 0).count();
    let n_neg = cands.len() - n_pos;
    if n_pos == 0 {
        return None;
    }
    let mut sorted: Vec<&ScoredCandidate> = cands.iter().collect();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));

    // Rank distribution of the positives: (1-based rank, expected number of
    // positives at that rank).
    let mut pos_at: Vec<(usize, f64)> = Vec::new();
    // Distribution of the best-ranked positive's rank: (rank, probability).
    let mut first_dist: Vec<(usize, f64)> = Vec::new();
    let mut start = 1usize; // rank of the tie group's first slot
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].score.total_cmp(&sorted[i].score).is_eq() {
            j += 1;
        }
        let g = j - i; // group size
        let m = sorted[i..j].iter().filter(|c| c.label > 0).count(); // its positives
        if m > 0 {
            let first_slot = match ties {
                TiePolicy::Pessimistic => start + g - m,
                TiePolicy::Optimistic | TiePolicy::Average => start,
            };
            match ties {
                TiePolicy::Pessimistic | TiePolicy::Optimistic => {
                    pos_at.extend((first_slot..first_slot + m).map(|p| (p, 1.0)));
                }
                TiePolicy::Average => {
                    // Each slot holds a positive with probability m / g.
                    pos_at.extend((start..start + g).map(|p| (p, m as f64 / g as f64)));
                }
            }
            if first_dist.is_empty() {
                match ties {
                    TiePolicy::Pessimistic | TiePolicy::Optimistic => {
                        first_dist.push((first_slot, 1.0))
                    }
                    TiePolicy::Average => {
                        // P(best positive at slot start + t) = C(g-t-1, m-1) / C(g, m):
                        // P(0) = m / g, P(t+1) / P(t) = (g-t-m) / (g-t-1). The
                        // ratio form stays finite for any group size.
                        let mut p = m as f64 / g as f64;
                        for t in 0..=(g - m) {
                            first_dist.push((start + t, p));
                            if t + 1 < g {
                                p *= (g - t - m) as f64 / (g - t - 1) as f64;
                            }
                        }
                    }
                }
            }
        }
        start += g;
        i = j;
    }

    let mut out = BTreeMap::new();
    for &k in ks {
        let in_top = pos_at.iter().filter(|(p, _)| *p <= k);
        let hits: f64 = in_top.clone().map(|(_, w)| w).sum();
        let dcg: f64 = in_top.map(|(p, w)| w * gain(*p)).sum();
        let idcg: f64 = (1..=n_pos.min(k)).map(gain).sum();
        let mrr: f64 = first_dist
            .iter()
            .filter(|(p, _)| *p <= k)
            .map(|(p, w)| w / *p as f64)
            .sum();
        out.insert(format!("recall@{k}"), hits / n_pos as f64);
        out.insert(format!("mrr@{k}"), mrr);
        out.insert(
            format!("ndcg@{k}"),
            if idcg > 0.0 { dcg / idcg } else { 0.0 },
        );
    }
    if n_neg > 0 {
        let tie_credit = match ties {
            TiePolicy::Pessimistic => 0.0,
            TiePolicy::Optimistic => 1.0,
            TiePolicy::Average => 0.5,
        };
        let mut sum = 0.0;
        for p in cands.iter().filter(|c| c.label > 0) {
            for n in cands.iter().filter(|c| c.label == 0) {
                sum += match p.score.total_cmp(&n.score) {
                    std::cmp::Ordering::Greater => 1.0,
                    std::cmp::Ordering::Equal => tie_credit,
                    std::cmp::Ordering::Less => 0.0,
                };
            }
        }
        out.insert("auc".into(), sum / (n_pos * n_neg) as f64);
    }
    Some(out)
}

/// Averages per-case metrics per scorer. Each record is one case; cases without
/// a positive are skipped and counted. Each metric is averaged over the cases
/// that define it (AUC: cases with a negative).
pub fn evaluate(
    records: &[ScoreRecord],
    ks: &[usize],
    ties: TiePolicy,
) -> BTreeMap<String, Summary> {
    let mut out: BTreeMap<String, Summary> = BTreeMap::new();
    let mut defined: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for rec in records {
        let s = out.entry(rec.scorer.clone()).or_default();
        let Some(m) = case_metrics(&rec.candidates, ks, ties) else {
            s.skipped += 1;
            continue;
        };
        s.cases += 1;
        let counts = defined.entry(rec.scorer.clone()).or_default();
        for (k, v) in m {
            *counts.entry(k.clone()).or_insert(0) += 1;
            *s.metrics.entry(k).or_insert(0.0) += v;
        }
    }
    for (scorer, s) in out.iter_mut() {
        for (name, v) in s.metrics.iter_mut() {
            let n = defined
                .get(scorer)
                .and_then(|c| c.get(name))
                .copied()
                .unwrap_or(1);
            *v /= n as f64;
        }
    }
    out
}

/// Parses one `scores.jsonl` line, naming the offending field on error
/// (`candidates[2].score`).
pub fn parse_score_line(
    line: &str,
    path: &std::path::Path,
    line_no: u64,
) -> Result<ScoreRecord, crate::data::DataError> {
    use serde_json::Value;
    let err = |field: &str, message: String| crate::data::DataError::Row {
        path: path.to_path_buf(),
        line: line_no,
        field: field.to_string(),
        message,
    };
    let value: Value =
        serde_json::from_str(line).map_err(|e| err("(json)", format!("invalid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| err("(json)", "expected a JSON object".into()))?;
    let string = |name: &str| -> Result<String, crate::data::DataError> {
        match obj.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) if name == "case" => Ok(n.to_string()),
            Some(_) => Err(err(name, "must be a non-empty string".into())),
            None => Err(err(name, "missing".into())),
        }
    };
    let case = string("case")?;
    let scorer = string("scorer")?;
    let list = match obj.get("candidates") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(err("candidates", "must be a list".into())),
        None => return Err(err("candidates", "missing".into())),
    };
    if list.is_empty() {
        return Err(err("candidates", "is empty".into()));
    }
    let mut candidates = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let f = |name: &str| format!("candidates[{i}].{name}");
        let c = c
            .as_object()
            .ok_or_else(|| err(&format!("candidates[{i}]"), "must be an object".into()))?;
        let id = match c.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(err(&f("id"), "must be a non-empty string".into())),
            None => return Err(err(&f("id"), "missing".into())),
        };
        let label = match c.get("label") {
            Some(Value::Number(n)) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                n.as_u64().unwrap_or(0) as u8
            }
            Some(Value::Bool(b)) => u8::from(*b),
            Some(v) => return Err(err(&f("label"), format!("must be 0 or 1, found {v}"))),
            None => return Err(err(&f("label"), "missing".into())),
        };
        let score = match c.get("score") {
            Some(Value::Number(n)) => n
                .as_f64()
                .ok_or_else(|| err(&f("score"), format!("not a finite number: {n}")))?,
            Some(v) => return Err(err(&f("score"), format!("must be a number, found {v}"))),
            None => return Err(err(&f("score"), "missing".into())),
        };
        candidates.push(ScoredCandidate { id, label, score });
    }
    let preset = match obj.get("preset") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "workbench" => Some(crate::preset::Preset::Workbench),
        Some(Value::String(s)) if s == "reference" => Some(crate::preset::Preset::Reference),
        Some(v) => {
            return Err(err(
                "preset",
                format!("must be \"workbench\" or \"reference\", found {v}"),
            ))
        }
    };
    Ok(ScoreRecord {
        case,
        scorer,
        candidates,
        preset,
    })
}

/// Reads a `scores.jsonl` file. Blank lines are skipped; a bad line is an error
/// naming file, line and field.
pub fn read_scores(path: &std::path::Path) -> Result<Vec<ScoreRecord>, crate::data::DataError> {
    use std::io::BufRead;
    let io = |source| crate::data::DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|e| crate::data::DataError::Row {
            path: path.to_path_buf(),
            line: line_no,
            field: "(line)".into(),
            message: format!("not valid UTF-8 text: {e}"),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_score_line(&line, path, line_no)?);
    }
    Ok(out)
}
