//! Property tests of the metrics (`metrics::case_metrics` / `metrics::evaluate`, what
//! `trsr eval` prints): a case's metrics do not depend on the order its candidates are
//! listed in, and they equal a brute-force definition that enumerates every ranking the
//! scores allow. Scores are drawn from a handful of values so ties are common.
//!
//! The brute force: a ranking is a permutation of the candidates with scores
//! non-increasing; within a tie group every order is allowed. `average` is the mean of
//! a metric over all such rankings (each equally likely), `pessimistic` its minimum and
//! `optimistic` its maximum (Recall, MRR and NDCG only fall when a positive moves down).

use std::collections::BTreeMap;

use proptest::prelude::*;
use trsr::metrics::{case_metrics, evaluate, ScoreRecord, ScoredCandidate, TiePolicy};

const KS: [usize; 4] = [1, 3, 5, 10];

/// Up to 7 candidates (7! = 5040 permutations to enumerate), scores from 4 values.
fn candidates() -> impl Strategy<Value = Vec<ScoredCandidate>> {
    prop::collection::vec((0u8..4, prop::bool::weighted(0.3)), 1..=7).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (s, pos))| ScoredCandidate {
                id: format!("N{i}"),
                label: u8::from(pos),
                score: [0.1, 0.5, 0.5000001, 0.9][s as usize],
            })
            .collect()
    })
}

/// Recall@K, MRR@K, NDCG@K of one explicit ranking (candidates in rank order).
fn metrics_of_ranking(ranked: &[&ScoredCandidate], k: usize) -> [f64; 3] {
    let n_pos = ranked.iter().filter(|c| c.label > 0).count() as f64;
    let mut hits = 0.0;
    let mut mrr = 0.0;
    let mut dcg = 0.0;
    for (i, c) in ranked.iter().enumerate().take(k) {
        if c.label > 0 {
            let rank = (i + 1) as f64;
            hits += 1.0;
            if mrr == 0.0 {
                mrr = 1.0 / rank;
            }
            dcg += 1.0 / (rank + 1.0).log2();
        }
    }
    let ideal: f64 = (1..=(n_pos as usize).min(k))
        .map(|p| 1.0 / ((p + 1) as f64).log2())
        .sum();
    [
        hits / n_pos,
        mrr,
        if ideal > 0.0 { dcg / ideal } else { 0.0 },
    ]
}

/// Every permutation of `0..n` (Heap's algorithm).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn heap(k: usize, a: &mut [usize], out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(a.to_vec());
            return;
        }
        for i in 0..k {
            heap(k - 1, a, out);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            a.swap(j, k - 1);
        }
    }
    let mut out = Vec::new();
    heap(n, &mut (0..n).collect::<Vec<_>>(), &mut out);
    out
}

/// The brute-force metrics of one case under `ties`, keyed as `case_metrics` keys them.
fn brute_force(cands: &[ScoredCandidate], ties: TiePolicy) -> BTreeMap<String, f64> {
    let rankings: Vec<Vec<&ScoredCandidate>> = permutations(cands.len())
        .into_iter()
        .map(|p| p.into_iter().map(|i| &cands[i]).collect::<Vec<_>>())
        .filter(|r: &Vec<&ScoredCandidate>| r.windows(2).all(|w| w[0].score >= w[1].score))
        .collect();
    let mut out = BTreeMap::new();
    for k in KS {
        let per: Vec<[f64; 3]> = rankings.iter().map(|r| metrics_of_ranking(r, k)).collect();
        for (m, name) in ["recall", "mrr", "ndcg"].iter().enumerate() {
            let values = per.iter().map(|v| v[m]);
            let v = match ties {
                TiePolicy::Average => values.sum::<f64>() / per.len() as f64,
                TiePolicy::Pessimistic => values.fold(f64::INFINITY, f64::min),
                TiePolicy::Optimistic => values.fold(f64::NEG_INFINITY, f64::max),
            };
            out.insert(format!("{name}@{k}"), v);
        }
    }
    out
}

fn assert_close(got: &BTreeMap<String, f64>, want: &BTreeMap<String, f64>, what: &str) {
    for (name, w) in want {
        let g = got
            .get(name)
            .unwrap_or_else(|| panic!("{what}: {name} missing"));
        assert!(
            (g - w).abs() < 1e-9,
            "{what}: {name} is {g}, brute force {w}"
        );
    }
}

const POLICIES: [TiePolicy; 3] = [
    TiePolicy::Average,
    TiePolicy::Pessimistic,
    TiePolicy::Optimistic,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn metrics_do_not_depend_on_candidate_order(
        (cands, shuffled) in candidates()
            .prop_flat_map(|c| (Just(c.clone()), Just(c).prop_shuffle())),
    ) {
        for ties in POLICIES {
            // Bit for bit: the policy may not see the listing order at all.
            prop_assert_eq!(
                case_metrics(&cands, &KS, ties),
                case_metrics(&shuffled, &KS, ties),
                "{:?}", ties
            );
        }
    }

    #[test]
    fn case_metrics_equal_the_brute_force_definition(cands in candidates()) {
        for ties in POLICIES {
            match case_metrics(&cands, &KS, ties) {
                None => prop_assert!(cands.iter().all(|c| c.label == 0)),
                Some(got) => assert_close(&got, &brute_force(&cands, ties), ties.name()),
            }
        }
    }

    /// `evaluate` (what `trsr eval` prints) averages the brute force over the cases
    /// of each scorer; cases without a positive are skipped and counted.
    #[test]
    fn evaluate_equals_the_brute_force_mean(
        cases in prop::collection::vec((candidates(), 0u8..2), 1..8),
    ) {
        let records: Vec<ScoreRecord> = cases
            .iter()
            .enumerate()
            .map(|(i, (c, s))| ScoreRecord {
                case: format!("c{i}"),
                scorer: format!("s{s}"),
                candidates: c.clone(),
                preset: None,
            })
            .collect();
        for ties in POLICIES {
            let summaries = evaluate(&records, &KS, ties);
            for (scorer, summary) in &summaries {
                let mine: Vec<&ScoreRecord> =
                    records.iter().filter(|r| &r.scorer == scorer).collect();
                let with_pos: Vec<_> = mine
                    .iter()
                    .filter(|r| r.candidates.iter().any(|c| c.label > 0))
                    .collect();
                prop_assert_eq!(summary.cases, with_pos.len());
                prop_assert_eq!(summary.skipped, mine.len() - with_pos.len());
                if with_pos.is_empty() {
                    continue;
                }
                let mut mean: BTreeMap<String, f64> = BTreeMap::new();
                for r in &with_pos {
                    for (k, v) in brute_force(&r.candidates, ties) {
                        *mean.entry(k).or_insert(0.0) += v / with_pos.len() as f64;
                    }
                }
                assert_close(&summary.metrics, &mean, &format!("{scorer} {}", ties.name()));
            }
        }
    }
}
