//! Metrics against hand-computed cases (the computation is written beside each),
//! including ties under each policy and several positives per case.

use std::collections::BTreeMap;

use trsr::metrics::{
    case_metrics, evaluate, metric_names, ScoreRecord, ScoredCandidate, TiePolicy,
};
use TiePolicy::{Average, Optimistic, Pessimistic};

const EPS: f64 = 1e-9;
/// 1 / log2(3) and 1 / log2(5): the gains at ranks 2 and 4.
const G2: f64 = 0.630_929_753_571_457_4;
const G4: f64 = 0.430_676_558_073_393;

fn cands(list: &[(u8, f64)]) -> Vec<ScoredCandidate> {
    list.iter()
        .enumerate()
        .map(|(i, &(label, score))| ScoredCandidate {
            id: format!("x{i}"),
            label,
            score,
        })
        .collect()
}

fn m(list: &[(u8, f64)], ks: &[usize], ties: TiePolicy) -> BTreeMap<String, f64> {
    case_metrics(&cands(list), ks, ties).expect("case has a positive")
}

fn close(got: &BTreeMap<String, f64>, name: &str, want: f64) {
    let g = got[name];
    assert!(
        (g - want).abs() < EPS,
        "{name}: got {g}, want {want}; all: {got:?}"
    );
}

#[test]
fn one_positive_without_ties() {
    // Scores: N .9, N .8, P .6, N .5, N .1 -> the positive ranks 3rd.
    // K=1: nothing in the top 1 -> recall 0, MRR 0, NDCG 0.
    // K=3: recall 1; MRR 1/3; NDCG = (1/log2(3+1)) / (1/log2(2)) = 0.5.
    // AUC: the positive beats .5 and .1 out of 4 negatives -> 0.5.
    let list = [(0, 0.9), (0, 0.8), (1, 0.6), (0, 0.5), (0, 0.1)];
    for ties in [Pessimistic, Optimistic, Average] {
        let r = m(&list, &[1, 3, 5], ties);
        close(&r, "recall@1", 0.0);
        close(&r, "mrr@1", 0.0);
        close(&r, "ndcg@1", 0.0);
        close(&r, "recall@3", 1.0);
        close(&r, "mrr@3", 1.0 / 3.0);
        close(&r, "ndcg@3", 0.5);
        close(&r, "recall@5", 1.0);
        close(&r, "auc", 0.5);
    }
}

#[test]
fn one_positive_tied_with_two_negatives() {
    // Scores: P .7, N .7, N .7, N .2, N .1: a tie group of 3 on ranks 1..3.
    let list = [(1, 0.7), (0, 0.7), (0, 0.7), (0, 0.2), (0, 0.1)];

    // Pessimistic: the positive is 3rd. K=1: 0s. K=3: recall 1, MRR 1/3, NDCG 0.5.
    // AUC: ties count 0; wins over .2 and .1 -> 2/4 = 0.5.
    let r = m(&list, &[1, 3], Pessimistic);
    close(&r, "recall@1", 0.0);
    close(&r, "mrr@1", 0.0);
    close(&r, "recall@3", 1.0);
    close(&r, "mrr@3", 1.0 / 3.0);
    close(&r, "ndcg@3", 0.5);
    close(&r, "auc", 0.5);

    // Optimistic: the positive is 1st -> all 1; AUC (2 ties + 2 wins)/4 = 1.
    let r = m(&list, &[1, 3], Optimistic);
    close(&r, "recall@1", 1.0);
    close(&r, "mrr@1", 1.0);
    close(&r, "ndcg@1", 1.0);
    close(&r, "auc", 1.0);

    // Average: rank uniform on {1, 2, 3}.
    // K=1: recall 1/3; MRR 1/3; NDCG 1/3.
    // K=2: recall 2/3; MRR (1 + 1/2)/3 = 0.5; NDCG (1 + 1/log2 3)/3.
    // K=3: recall 1; MRR (1 + 1/2 + 1/3)/3 = 11/18; NDCG (1 + 1/log2 3 + 1/2)/3.
    // AUC: (2 ties x 0.5 + 2 wins)/4 = 0.75.
    let r = m(&list, &[1, 2, 3], Average);
    close(&r, "recall@1", 1.0 / 3.0);
    close(&r, "mrr@1", 1.0 / 3.0);
    close(&r, "ndcg@1", 1.0 / 3.0);
    close(&r, "recall@2", 2.0 / 3.0);
    close(&r, "mrr@2", 0.5);
    close(&r, "ndcg@2", (1.0 + G2) / 3.0);
    close(&r, "recall@3", 1.0);
    close(&r, "mrr@3", 11.0 / 18.0);
    close(&r, "ndcg@3", (1.0 + G2 + 0.5) / 3.0);
    close(&r, "auc", 0.75);
}

#[test]
fn two_positives_without_ties() {
    // Scores: N .9, P .8, N .7, P .6, N .5 -> positives at ranks 2 and 4.
    // K=1: 0s.
    // K=3: recall 1/2; MRR 1/2; DCG = 1/log2 3; IDCG = 1 + 1/log2 3.
    // K=5: recall 1; MRR 1/2; DCG = 1/log2 3 + 1/log2 5; IDCG = 1 + 1/log2 3.
    // AUC: P.8 beats .7 and .5 (2), P.6 beats .5 (1) -> 3/6 = 0.5.
    let list = [(0, 0.9), (1, 0.8), (0, 0.7), (1, 0.6), (0, 0.5)];
    let r = m(&list, &[1, 3, 5], Pessimistic);
    close(&r, "recall@1", 0.0);
    close(&r, "ndcg@1", 0.0);
    close(&r, "recall@3", 0.5);
    close(&r, "mrr@3", 0.5);
    close(&r, "ndcg@3", G2 / (1.0 + G2));
    close(&r, "recall@5", 1.0);
    close(&r, "mrr@5", 0.5);
    close(&r, "ndcg@5", (G2 + G4) / (1.0 + G2));
    close(&r, "auc", 0.5);
}

#[test]
fn two_positives_tied_with_a_negative() {
    // Scores: P .5, P .5, N .5, N .1: a tie group of 3 (2 positives) on ranks 1..3.
    let list = [(1, 0.5), (1, 0.5), (0, 0.5), (0, 0.1)];

    // Pessimistic: N 1st, positives 2nd and 3rd.
    // K=1: 0s. K=3: recall 1; MRR 1/2; NDCG (1/log2 3 + 1/2) / (1 + 1/log2 3).
    // AUC: each positive ties N.5 (0) and beats N.1 (1) -> 2/4.
    let r = m(&list, &[1, 3], Pessimistic);
    close(&r, "recall@1", 0.0);
    close(&r, "mrr@1", 0.0);
    close(&r, "recall@3", 1.0);
    close(&r, "mrr@3", 0.5);
    close(&r, "ndcg@3", (G2 + 0.5) / (1.0 + G2));
    close(&r, "auc", 0.5);

    // Optimistic: positives 1st and 2nd (not both 1st).
    // K=1: recall 1/2 (one of two positives); MRR 1; NDCG 1/1 = 1.
    // K=3: recall 1; MRR 1; NDCG (1 + 1/log2 3)/(1 + 1/log2 3) = 1. AUC 1.
    let r = m(&list, &[1, 3], Optimistic);
    close(&r, "recall@1", 0.5);
    close(&r, "mrr@1", 1.0);
    close(&r, "ndcg@1", 1.0);
    close(&r, "recall@3", 1.0);
    close(&r, "ndcg@3", 1.0);
    close(&r, "auc", 1.0);

    // Average: each of ranks 1..3 holds a positive with probability 2/3.
    // K=1: recall (2/3)/2 = 1/3; P(best positive at 1) = 2/3 -> MRR 2/3; NDCG 2/3.
    // K=3: recall 1; best positive at 1 w.p. 2/3, at 2 w.p. 1/3 -> MRR 2/3 + 1/6 = 5/6;
    //      DCG = 2/3 (1 + 1/log2 3 + 1/2); IDCG = 1 + 1/log2 3.
    // AUC: each positive: tie with N.5 (1/2) + win over N.1 (1) -> 3/4.
    let r = m(&list, &[1, 3], Average);
    close(&r, "recall@1", 1.0 / 3.0);
    close(&r, "mrr@1", 2.0 / 3.0);
    close(&r, "ndcg@1", 2.0 / 3.0);
    close(&r, "recall@3", 1.0);
    close(&r, "mrr@3", 5.0 / 6.0);
    close(&r, "ndcg@3", 2.0 / 3.0 * (1.0 + G2 + 0.5) / (1.0 + G2));
    close(&r, "auc", 0.75);
}

#[test]
fn k_beyond_the_list_and_all_positives() {
    // Only positives: recall, MRR, NDCG are 1 at any K; AUC is undefined (absent).
    let r = m(&[(1, 0.2), (1, 0.9)], &[1, 10], Pessimistic);
    close(&r, "recall@10", 1.0);
    close(&r, "ndcg@1", 1.0);
    close(&r, "mrr@1", 1.0);
    close(&r, "recall@1", 0.5);
    assert!(!r.contains_key("auc"));
    // No positive: no metrics.
    assert!(case_metrics(&cands(&[(0, 0.3)]), &[1], Pessimistic).is_none());
    assert!(case_metrics(&[], &[1], Pessimistic).is_none());
}

#[test]
fn evaluate_averages_over_cases_per_scorer() {
    let rec = |case: &str, scorer: &str, list: &[(u8, f64)]| ScoreRecord {
        case: case.into(),
        scorer: scorer.into(),
        preset: None,
        candidates: cands(list),
    };
    let records = vec![
        // s1, c1: positive 3rd of 5 -> recall@3 1, MRR@3 1/3, AUC 0.5.
        rec(
            "c1",
            "s1",
            &[(0, 0.9), (0, 0.8), (1, 0.6), (0, 0.5), (0, 0.1)],
        ),
        // s1, c2: positives 2nd and 4th -> recall@3 1/2, MRR@3 1/2, AUC 0.5.
        rec(
            "c2",
            "s1",
            &[(0, 0.9), (1, 0.8), (0, 0.7), (1, 0.6), (0, 0.5)],
        ),
        // s1, c3: positive alone -> recall@3 1, MRR@3 1, no AUC.
        rec("c3", "s1", &[(1, 0.1)]),
        // s1, c4: no positive -> skipped.
        rec("c4", "s1", &[(0, 0.1)]),
        // s2, c1: positive 1st -> 1s, AUC 1.
        rec("c1", "s2", &[(1, 0.9), (0, 0.1)]),
    ];
    let out = evaluate(&records, &[3], Pessimistic);
    let s1 = &out["s1"];
    assert_eq!((s1.cases, s1.skipped), (3, 1));
    // recall@3 = (1 + 1/2 + 1)/3; MRR@3 = (1/3 + 1/2 + 1)/3; AUC = (0.5 + 0.5)/2 (c3 has none).
    assert!((s1.metrics["recall@3"] - 2.5 / 3.0).abs() < EPS);
    assert!((s1.metrics["mrr@3"] - (1.0 / 3.0 + 0.5 + 1.0) / 3.0).abs() < EPS);
    assert!((s1.metrics["auc"] - 0.5).abs() < EPS);
    let s2 = &out["s2"];
    assert_eq!(s2.cases, 1);
    assert!((s2.metrics["ndcg@3"] - 1.0).abs() < EPS);
    assert_eq!(
        metric_names(&[3, 10]),
        [
            "recall@3",
            "mrr@3",
            "ndcg@3",
            "recall@10",
            "mrr@10",
            "ndcg@10",
            "auc"
        ]
    );
}

#[test]
fn a_huge_tie_group_stays_finite() {
    // 3000 candidates with the same score, one positive, average ties: the
    // positive's rank is uniform on 1..3000, so
    // recall@10 = 10/3000, MRR@10 = (1/3000) * sum_{p=1..10} 1/p,
    // NDCG@10 = (1/3000) * sum_{p=1..10} 1/log2(p+1), AUC = 0.5.
    let mut list = vec![(0u8, 0.0); 3000];
    list[17].0 = 1;
    let r = m(&list, &[10], Average);
    let h10: f64 = (1..=10).map(|p| 1.0 / p as f64).sum();
    let d10: f64 = (1..=10).map(|p| 1.0 / ((p + 1) as f64).log2()).sum();
    close(&r, "recall@10", 10.0 / 3000.0);
    close(&r, "mrr@10", h10 / 3000.0);
    close(&r, "ndcg@10", d10 / 3000.0);
    close(&r, "auc", 0.5);
    // 1500 positives among 3000 tied: the best positive is 1st with probability 1/2.
    for x in list.iter_mut().take(1500) {
        x.0 = 1;
    }
    let r = m(&list, &[1], Average);
    close(&r, "mrr@1", 0.5);
    assert!(r.values().all(|v| v.is_finite()), "{r:?}");
}
