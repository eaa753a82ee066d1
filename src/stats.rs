//! Uncertainty for the ranking metrics: percentile-bootstrap confidence intervals,
//! paired differences between two scorers on the same cases, a paired sign-flip
//! permutation test, and Holm's correction for many comparisons.
//!
//! Why: evaluation sets are often a few hundred users, where a Recall@3 difference
//! of 0.02 is noise. Every number here is a function of per-case metric values,
//! which come from [`crate::metrics::case_metrics`] (the one place metrics are
//! defined); this module only resamples and tests them.
//!
//! - **Interval**: percentile bootstrap over cases. Each of `resamples` resamples
//!   draws n cases with replacement (seeded ChaCha8, so a run is reproducible) and
//!   takes the mean; the interval is the (1-level)/2 and (1+level)/2 quantiles of
//!   those means, with NumPy's default linear interpolation (SciPy's
//!   `bootstrap(method='percentile')` computes the same quantity). All metrics of
//!   a scorer are resampled jointly by case; a metric undefined for a case (AUC
//!   without negatives) is averaged over the resampled cases that define it.
//! - **Paired difference**: on the cases both scorers have (the others are reported
//!   and left out), d_i = a_i - b_i; its mean and a percentile-bootstrap interval
//!   of that mean.
//! - **p-value**: the paired sign-flip permutation test, two-sided. Under the null
//!   hypothesis that the two scorers are exchangeable on each case, every sign of
//!   d_i is equally likely; p = P(|sum of ±d_i| >= |sum of d_i|). Exact (all 2^m
//!   sign patterns of the m non-zero differences; a zero difference does not change
//!   the statistic) when 2^m is at most the permutation budget, otherwise Monte
//!   Carlo with p = (hits + 1) / (draws + 1). This is SciPy's
//!   `permutation_test(..., permutation_type='samples')` on paired samples.
//! - **Holm**: step-down adjustment of a family of p-values (controls the
//!   family-wise error rate without assuming independence).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::metrics::{case_metrics, metric_names, ScoreRecord, TiePolicy};

/// Bootstrap resamples when none are given (`--bootstrap`).
pub const DEFAULT_RESAMPLES: usize = 2000;
/// Sign-flip draws of the Monte Carlo permutation test; below 2^m draws for m
/// non-zero differences the test is exact instead.
pub const DEFAULT_PERMUTATIONS: usize = 10_000;
/// The paired test's name, as printed beside its p-values.
pub const PAIRED_TEST: &str = "paired sign-flip permutation test, two-sided";
/// The interval method's name.
pub const INTERVAL_METHOD: &str = "percentile bootstrap over cases";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StatsError {
    #[error(
        "{what}: {cases} case(s); a confidence interval needs at least 2 cases \
         (with fewer, any interval would be zero-width and meaningless)"
    )]
    TooFewCases { what: String, cases: usize },
    #[error("confidence level {0} is not between 0 and 1 (e.g. 0.95)")]
    BadLevel(f64),
    #[error("the bootstrap needs at least 1 resample (e.g. --bootstrap 2000)")]
    NoResamples,
}

/// A confidence interval `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// How intervals are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BootstrapParams {
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    pub resamples: usize,
    pub seed: u64,
}

impl Default for BootstrapParams {
    fn default() -> Self {
        Self {
            level: 0.95,
            resamples: DEFAULT_RESAMPLES,
            seed: 42,
        }
    }
}

impl BootstrapParams {
    pub fn validate(&self) -> Result<(), StatsError> {
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(StatsError::BadLevel(self.level));
        }
        if self.resamples == 0 {
            return Err(StatsError::NoResamples);
        }
        Ok(())
    }
}

/// The q-quantile (0..=1) of sorted values, linear interpolation between order
/// statistics (NumPy's default `method='linear'`). NaN for no values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The mean of the finite values; NaN when none is.
pub fn mean_defined(values: &[f64]) -> f64 {
    let (sum, n) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// Percentile-bootstrap intervals of the means of several columns resampled
/// jointly by row (case): `columns[j][i]` is metric j of case i, NaN where the
/// metric is undefined for that case. A column with fewer than 2 defined values
/// gets `None`. Errors when there are fewer than 2 cases at all.
pub fn bootstrap_columns(
    columns: &[Vec<f64>],
    params: &BootstrapParams,
    what: &str,
) -> Result<Vec<Option<Interval>>, StatsError> {
    params.validate()?;
    let n = columns.first().map_or(0, Vec::len);
    if n < 2 {
        return Err(StatsError::TooFewCases {
            what: what.to_string(),
            cases: n,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut means: Vec<Vec<f64>> = vec![Vec::with_capacity(params.resamples); columns.len()];
    let mut sums = vec![0.0f64; columns.len()];
    let mut counts = vec![0usize; columns.len()];
    let mut idx = vec![0usize; n];
    for _ in 0..params.resamples {
        for i in idx.iter_mut() {
            *i = rng.random_range(0..n);
        }
        for (j, col) in columns.iter().enumerate() {
            sums[j] = 0.0;
            counts[j] = 0;
            for &i in &idx {
                let v = col[i];
                if v.is_finite() {
                    sums[j] += v;
                    counts[j] += 1;
                }
            }
            if counts[j] > 0 {
                means[j].push(sums[j] / counts[j] as f64);
            }
        }
    }
    let alpha = (1.0 - params.level) / 2.0;
    Ok(columns
        .iter()
        .zip(means.iter_mut())
        .map(|(col, m)| {
            if col.iter().filter(|v| v.is_finite()).count() < 2 || m.is_empty() {
                return None;
            }
            m.sort_by(f64::total_cmp);
            Some(Interval {
                lo: quantile_sorted(m, alpha),
                hi: quantile_sorted(m, 1.0 - alpha),
            })
        })
        .collect())
}

/// Percentile-bootstrap interval of the mean of `values`.
pub fn bootstrap_mean(values: &[f64], params: &BootstrapParams) -> Result<Interval, StatsError> {
    let what = "the values";
    bootstrap_columns(&[values.to_vec()], params, what)?
        .pop()
        .flatten()
        .ok_or_else(|| StatsError::TooFewCases {
            what: what.into(),
            cases: values.iter().filter(|v| v.is_finite()).count(),
        })
}

/// Result of the sign-flip test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignFlip {
    /// Two-sided p-value.
    pub p: f64,
    /// True when all sign patterns were enumerated.
    pub exact: bool,
}

/// The paired sign-flip permutation test on differences `d` (two-sided):
/// exact when 2^m <= `permutations` (m: non-zero differences), else
/// `permutations` seeded random sign patterns.
pub fn sign_flip_test(d: &[f64], permutations: usize, seed: u64) -> SignFlip {
    let nz: Vec<f64> = d
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v != 0.0)
        .collect();
    let m = nz.len();
    if m == 0 {
        return SignFlip {
            p: 1.0,
            exact: true,
        };
    }
    let observed: f64 = nz.iter().sum::<f64>().abs();
    // Sums equal to the observed one up to rounding count as "as extreme": the
    // same relative care SciPy takes (its comparisons allow a relative slack).
    let tol = 1e-9 * nz.iter().map(|v| v.abs()).sum::<f64>();
    let extreme = |s: f64| s.abs() >= observed - tol;
    let exact = m < 63 && (1u64 << m) <= permutations as u64;
    if exact {
        // Gray-code walk: each step flips one sign, so one addition per pattern.
        let total = 1u64 << m;
        let mut signs = vec![1.0f64; m];
        let mut s: f64 = nz.iter().sum();
        let mut hits = u64::from(extreme(s));
        for k in 1..total {
            let bit = k.trailing_zeros() as usize;
            s -= 2.0 * signs[bit] * nz[bit];
            signs[bit] = -signs[bit];
            hits += u64::from(extreme(s));
        }
        SignFlip {
            p: hits as f64 / total as f64,
            exact: true,
        }
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut hits = 0u64;
        for _ in 0..permutations {
            let s: f64 = nz
                .iter()
                .map(|&v| if rng.random::<bool>() { v } else { -v })
                .sum();
            hits += u64::from(extreme(s));
        }
        SignFlip {
            p: ((hits + 1) as f64 / (permutations as f64 + 1.0)).min(1.0),
            exact: false,
        }
    }
}

/// Holm's step-down adjustment: the i-th smallest of m p-values becomes
/// max over j <= i of min(1, (m - j + 1) p_(j)). Returned in the input order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        let adj = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

/// Per-case metric values of one scorer: `values[j][i]` is metric `names[j]` of
/// case `cases[i]`, NaN where undefined (AUC without negatives).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaseTable {
    pub cases: Vec<String>,
    pub names: Vec<String>,
    pub values: Vec<Vec<f64>>,
    /// Cases left out because they had no positive.
    pub skipped: usize,
}

impl CaseTable {
    /// The column of one metric.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        let j = self.names.iter().position(|n| n == name)?;
        Some(&self.values[j])
    }

    /// The mean of one metric over the cases that define it.
    pub fn mean(&self, name: &str) -> Option<f64> {
        self.column(name)
            .map(mean_defined)
            .filter(|v| v.is_finite())
    }
}

/// Per-case metrics per scorer, from [`case_metrics`]; cases in record order.
pub fn case_tables(
    records: &[ScoreRecord],
    ks: &[usize],
    ties: TiePolicy,
) -> BTreeMap<String, CaseTable> {
    let names = metric_names(ks);
    let mut out: BTreeMap<String, CaseTable> = BTreeMap::new();
    for rec in records {
        let t = out.entry(rec.scorer.clone()).or_insert_with(|| CaseTable {
            names: names.clone(),
            values: vec![Vec::new(); names.len()],
            ..CaseTable::default()
        });
        let Some(m) = case_metrics(&rec.candidates, ks, ties) else {
            t.skipped += 1;
            continue;
        };
        t.cases.push(rec.case.clone());
        for (j, n) in names.iter().enumerate() {
            t.values[j].push(m.get(n).copied().unwrap_or(f64::NAN));
        }
    }
    out
}

/// Intervals of every metric of one scorer (`None` for a metric defined on
/// fewer than 2 cases).
pub fn scorer_intervals(
    table: &CaseTable,
    params: &BootstrapParams,
    scorer: &str,
) -> Result<BTreeMap<String, Option<Interval>>, StatsError> {
    let cis = bootstrap_columns(&table.values, params, &format!("scorer `{scorer}`"))?;
    Ok(table.names.iter().cloned().zip(cis).collect())
}

/// One metric of one paired comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedMetric {
    pub metric: String,
    /// Cases in the pair that define the metric for both scorers.
    pub cases: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// Mean of a - b over the paired cases.
    pub diff: f64,
    pub ci: Option<Interval>,
    pub p: f64,
    /// Holm-adjusted p over the family of comparisons shown (set by [`apply_holm`]).
    pub p_holm: f64,
    pub exact: bool,
}

/// Scorer `a` against scorer `b` on their common cases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    /// Cases scored by `a` only, and by `b` only: left out of the pair.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
    pub metrics: Vec<PairedMetric>,
}

/// Compares two scorers' per-case metrics on the cases both have: paired
/// difference, its bootstrap interval, and the sign-flip p-value. `p_holm` is
/// left equal to `p` until [`apply_holm`].
pub fn compare(
    a_name: &str,
    a: &CaseTable,
    b_name: &str,
    b: &CaseTable,
    params: &BootstrapParams,
    permutations: usize,
) -> Result<Comparison, StatsError> {
    params.validate()?;
    let b_index: BTreeMap<&str, usize> = b
        .cases
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let a_set: std::collections::BTreeSet<&str> = a.cases.iter().map(String::as_str).collect();
    let pairs: Vec<(usize, usize)> = a
        .cases
        .iter()
        .enumerate()
        .filter_map(|(i, c)| b_index.get(c.as_str()).map(|&j| (i, j)))
        .collect();
    let only_a = a
        .cases
        .iter()
        .filter(|c| !b_index.contains_key(c.as_str()))
        .cloned()
        .collect();
    let only_b = b
        .cases
        .iter()
        .filter(|c| !a_set.contains(c.as_str()))
        .cloned()
        .collect();
    let what = format!("comparison `{a_name}` vs `{b_name}` (cases scored by both)");
    if pairs.len() < 2 {
        return Err(StatsError::TooFewCases {
            what,
            cases: pairs.len(),
        });
    }
    let mut metrics = Vec::new();
    for (j, name) in a.names.iter().enumerate() {
        let Some(bj) = b.names.iter().position(|n| n == name) else {
            continue;
        };
        let (mut xa, mut xb, mut d) = (Vec::new(), Vec::new(), Vec::new());
        for &(i, k) in &pairs {
            let (va, vb) = (a.values[j][i], b.values[bj][k]);
            if va.is_finite() && vb.is_finite() {
                xa.push(va);
                xb.push(vb);
                d.push(va - vb);
            }
        }
        if d.is_empty() {
            continue;
        }
        let ci = if d.len() >= 2 {
            Some(bootstrap_mean(&d, params)?)
        } else {
            None
        };
        let test = sign_flip_test(&d, permutations, params.seed);
        metrics.push(PairedMetric {
            metric: name.clone(),
            cases: d.len(),
            mean_a: mean_defined(&xa),
            mean_b: mean_defined(&xb),
            diff: mean_defined(&d),
            ci,
            p: test.p,
            p_holm: test.p,
            exact: test.exact,
        });
    }
    Ok(Comparison {
        a: a_name.to_string(),
        b: b_name.to_string(),
        only_a,
        only_b,
        metrics,
    })
}

/// Holm-adjusts every p-value of the comparisons as one family (all pairs, all
/// metrics shown). Returns the family size.
pub fn apply_holm(comparisons: &mut [Comparison]) -> usize {
    let ps: Vec<f64> = comparisons
        .iter()
        .flat_map(|c| c.metrics.iter().map(|m| m.p))
        .collect();
    let adj = holm(&ps);
    let mut it = adj.into_iter();
    for c in comparisons.iter_mut() {
        for m in c.metrics.iter_mut() {
            if let Some(v) = it.next() {
                m.p_holm = v;
            }
        }
    }
    ps.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matches_numpy_linear() {
        // np.percentile([1, 2, 3, 4], [0, 25, 50, 90, 100]) = 1, 1.75, 2.5, 3.7, 4
        let v = [1.0, 2.0, 3.0, 4.0];
        for (q, want) in [(0.0, 1.0), (0.25, 1.75), (0.5, 2.5), (0.9, 3.7), (1.0, 4.0)] {
            assert!((quantile_sorted(&v, q) - want).abs() < 1e-12, "q={q}");
        }
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let v: Vec<f64> = (0..50).map(|i| f64::from(i % 7) / 7.0).collect();
        let p = BootstrapParams::default();
        let a = bootstrap_mean(&v, &p).unwrap();
        let b = bootstrap_mean(&v, &p).unwrap();
        assert_eq!(a, b);
        let m = mean_defined(&v);
        assert!(a.lo < m && m < a.hi, "{a:?} around {m}");
        let c = bootstrap_mean(&v, &BootstrapParams { seed: 7, ..p }).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn constant_differences_give_exact_p() {
        // Four equal positive differences: only all-plus and all-minus are as
        // extreme: p = 2 / 16.
        let r = sign_flip_test(&[0.5, 0.5, 0.5, 0.5, 0.0], 10_000, 1);
        assert!(r.exact);
        assert!((r.p - 0.125).abs() < 1e-15);
    }
}
