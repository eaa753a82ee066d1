//! Tie policies against brute force: `average` is the mean over every order of the
//! tied candidates; with one positive, `pessimistic` is the worst such order and
//! `optimistic` the best; `optimistic` is what the reference code computes (target
//! listed first, stable sort by score).

use rand::{Rng, SeedableRng};
use trsr::metrics::{case_metrics, ScoredCandidate, TiePolicy};

const KS: [usize; 4] = [1, 2, 3, 5];

/// Every permutation of 0..n (Heap's algorithm).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn heap(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, a, out);
            if k.is_multiple_of(2) {
                a.swap(i, k - 1);
            } else {
                a.swap(0, k - 1);
            }
        }
    }
    let mut out = Vec::new();
    heap(n, &mut (0..n).collect(), &mut out);
    out
}

/// Metrics of one strict order (no ties): scores n, n-1, ... in that order.
fn strict(c: &[ScoredCandidate], order: &[usize]) -> std::collections::BTreeMap<String, f64> {
    let n = order.len();
    let ranked: Vec<ScoredCandidate> = order
        .iter()
        .enumerate()
        .map(|(pos, &i)| ScoredCandidate {
            id: c[i].id.clone(),
            label: c[i].label,
            score: (n - pos) as f64,
        })
        .collect();
    case_metrics(&ranked, &KS, TiePolicy::Pessimistic).unwrap()
}

fn random_case(rng: &mut impl Rng) -> Vec<ScoredCandidate> {
    let n = rng.random_range(2..=6);
    let mut c: Vec<ScoredCandidate> = (0..n)
        .map(|i| ScoredCandidate {
            id: format!("x{i}"),
            label: u8::from(rng.random_bool(0.35)),
            // Few distinct values: many ties.
            score: rng.random_range(0..3) as f64 / 2.0,
        })
        .collect();
    c[0].label = 1;
    c
}

#[test]
fn average_is_the_mean_over_all_tie_orders() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for _ in 0..300 {
        let c = random_case(&mut rng);
        // Orders consistent with the scores: sorted by score, any order within ties.
        let orders: Vec<Vec<usize>> = permutations(c.len())
            .into_iter()
            .filter(|o| o.windows(2).all(|w| c[w[0]].score >= c[w[1]].score))
            .collect();
        let avg = case_metrics(&c, &KS, TiePolicy::Average).unwrap();
        let pes = case_metrics(&c, &KS, TiePolicy::Pessimistic).unwrap();
        let opt = case_metrics(&c, &KS, TiePolicy::Optimistic).unwrap();
        for name in avg.keys().filter(|n| *n != "auc") {
            let vals: Vec<f64> = orders.iter().map(|o| strict(&c, o)[name]).collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert!(
                (avg[name] - mean).abs() < 1e-9,
                "{name} avg {} vs {mean}: {c:?}",
                avg[name]
            );
            assert!(
                (pes[name] - lo).abs() < 1e-9,
                "{name} pessimistic {} vs {lo}: {c:?}",
                pes[name]
            );
            assert!(
                (opt[name] - hi).abs() < 1e-9,
                "{name} optimistic {} vs {hi}: {c:?}",
                opt[name]
            );
        }
    }
}

#[test]
fn optimistic_matches_the_reference_target_first_stable_sort() {
    // The reference lists the target first and sorts by score, stably: the target
    // wins every tie. Its rank is 1 + the number of strictly higher scores.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    for _ in 0..200 {
        let mut c = random_case(&mut rng);
        for x in c.iter_mut().skip(1) {
            x.label = 0;
        }
        let mut idx: Vec<usize> = (0..c.len()).collect();
        idx.sort_by(|&a, &b| c[b].score.total_cmp(&c[a].score)); // stable
        let rank = idx.iter().position(|&i| i == 0).unwrap() + 1;
        let opt = case_metrics(&c, &KS, TiePolicy::Optimistic).unwrap();
        for k in KS {
            let want = if rank <= k { 1.0 / rank as f64 } else { 0.0 };
            assert!((opt[&format!("mrr@{k}")] - want).abs() < 1e-12);
        }
    }
}
