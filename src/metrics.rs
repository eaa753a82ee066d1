//! Ranking metrics (Recall/MRR/NDCG@K, AUC), tie policies, aggregation, and the
//! `scores.jsonl` record.

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
}

use std::collections::BTreeMap;

/// How tied scores between a positive and negatives are ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum TiePolicy {
    /// A tied negative ranks above the positive (the honest default).
    #[default]
    Pessimistic,
    /// A tied positive ranks above the negatives (the reference code's behaviour).
    Optimistic,
    /// The expected value over a uniformly random order of tied candidates.
    Average,
}

/// Averages over the cases of one scorer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub cases: usize,
    /// `recall@K`, `mrr@K`, `ndcg@K` for each K, and `auc`.
    pub metrics: BTreeMap<String, f64>,
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

/// n choose r as f64.
fn choose(n: usize, r: usize) -> f64 {
    if r > n {
        return 0.0;
    }
    let r = r.min(n - r);
    (0..r).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Metrics of one case. Returns `None` when the case has no positive.
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
    // Group candidates into tie groups by descending score.
    let mut sorted: Vec<&ScoredCandidate> = cands.iter().collect();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
    // For each positive: the distribution of its 1-based position, as (first, count)
    // of equally likely positions, plus per tie group info for MRR.
    let mut pos_spans: Vec<(usize, usize)> = Vec::new();
    // First-positive position distribution: P(first positive at position p).
    let mut first_dist: Vec<(usize, f64)> = Vec::new();
    let mut start = 1usize; // position of the group's first slot
    let mut i = 0;
    let mut found_first = false;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].score.total_cmp(&sorted[i].score).is_eq() {
            j += 1;
        }
        let g = j - i;
        let m = sorted[i..j].iter().filter(|c| c.label > 0).count();
        if m > 0 {
            for _ in 0..m {
                match ties {
                    TiePolicy::Pessimistic => pos_spans.push((start + g - m, 1)),
                    TiePolicy::Optimistic => pos_spans.push((start, 1)),
                    TiePolicy::Average => pos_spans.push((start, g)),
                }
            }
            if !found_first {
                found_first = true;
                match ties {
                    TiePolicy::Pessimistic => first_dist.push((start + g - m, 1.0)),
                    TiePolicy::Optimistic => first_dist.push((start, 1.0)),
                    TiePolicy::Average => {
                        // P(min position >= start + t) = C(g - t, m) / C(g, m).
                        let total = choose(g, m);
                        for t in 0..=(g - m) {
                            let p = (choose(g - t, m) - choose(g - t - 1, m)) / total;
                            first_dist.push((start + t, p));
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
        let mut hits = 0.0;
        let mut dcg = 0.0;
        for &(first, count) in &pos_spans {
            for p in first..first + count {
                let w = 1.0 / count as f64;
                if p <= k {
                    hits += w;
                    dcg += w / ((p + 1) as f64).log2();
                }
            }
        }
        let idcg: f64 = (1..=n_pos.min(k))
            .map(|p| 1.0 / ((p + 1) as f64).log2())
            .sum();
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
    // AUC over positive/negative pairs.
    let auc = if n_neg == 0 {
        1.0
    } else {
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
        sum / (n_pos * n_neg) as f64
    };
    out.insert("auc".into(), auc);
    Some(out)
}

/// Averages per-case metrics per scorer. Cases without a positive are skipped.
pub fn evaluate(
    records: &[ScoreRecord],
    ks: &[usize],
    ties: TiePolicy,
) -> BTreeMap<String, Summary> {
    let mut out: BTreeMap<String, Summary> = BTreeMap::new();
    for rec in records {
        let Some(m) = case_metrics(&rec.candidates, ks, ties) else {
            continue;
        };
        let s = out.entry(rec.scorer.clone()).or_default();
        s.cases += 1;
        for (k, v) in m {
            *s.metrics.entry(k).or_insert(0.0) += v;
        }
    }
    for s in out.values_mut() {
        let n = s.cases as f64;
        for v in s.metrics.values_mut() {
            *v /= n;
        }
    }
    out
}
