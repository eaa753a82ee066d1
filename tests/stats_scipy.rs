//! Intervals and p-values of `trsr::stats` and `trsr eval --ci --compare` against
//! SciPy (`scipy.stats.bootstrap`, percentile method; `scipy.stats.permutation_test`,
//! paired), on the fixed data and answers that `scripts/stats_expected.py` recorded
//! in `tests/data/stats_expected.json`.
//!
//! Exact permutation p-values must match to rounding: both enumerate all 2^n sign
//! patterns. Bootstrap intervals cannot match exactly (different random
//! resamples), but both estimate the same quantiles of the same bootstrap
//! distribution; see [`quantile_tolerance`].

mod common;

use serde_json::Value;
use trsr::stats::{bootstrap_mean, holm, sign_flip_test, BootstrapParams};

fn expected() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/stats_expected.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Rust resamples in these tests.
const RUST_RESAMPLES: usize = 20_000;
/// SciPy's resamples (scripts/stats_expected.py).
const SCIPY_RESAMPLES: f64 = 200_000.0;

/// How far two Monte Carlo estimates of the 2.5% / 97.5% quantile of the same
/// bootstrap distribution may be apart. The standard error of a sample q-quantile
/// from R draws is sqrt(q (1 - q) / R) / f(x_q); for a near-normal bootstrap
/// distribution with standard deviation sd, f(x_0.025) = phi(1.96) / sd = 0.0584 / sd.
/// The two estimates are independent, so their difference has variance
/// SE_rust^2 + SE_scipy^2; we allow 6 of those standard errors (a false failure
/// about once in 500 million runs for a normal distribution; the bootstrap
/// distribution of a mean of 12 to 40 bounded values is close enough to normal).
fn quantile_tolerance(boot_sd: f64) -> f64 {
    let q: f64 = 0.025;
    let var = q * (1.0 - q) * (1.0 / RUST_RESAMPLES as f64 + 1.0 / SCIPY_RESAMPLES);
    6.0 * var.sqrt() / 0.0584 * boot_sd
}

fn params(seed: u64) -> BootstrapParams {
    BootstrapParams {
        level: 0.95,
        resamples: RUST_RESAMPLES,
        seed,
    }
}

fn assert_ci_close(got: [f64; 2], want: &[f64], boot_sd: f64, what: &str) {
    let tol = quantile_tolerance(boot_sd);
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol,
            "{what}: interval {got:?} vs SciPy {want:?}, tolerance {tol:.5}"
        );
    }
}

#[test]
fn bootstrap_interval_of_a_mean_matches_scipy_percentile() {
    let e = &expected()["bootstrap_mean"];
    let x = floats(&e["data"]);
    let ci = bootstrap_mean(&x, &params(1)).unwrap();
    assert_ci_close(
        [ci.lo, ci.hi],
        &floats(&e["ci"]),
        e["boot_sd"].as_f64().unwrap(),
        "mean",
    );
}

#[test]
fn bootstrap_interval_of_a_paired_difference_matches_scipy() {
    let e = &expected()["bootstrap_paired"];
    let (a, b) = (floats(&e["a"]), floats(&e["b"]));
    let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    let ci = bootstrap_mean(&d, &params(2)).unwrap();
    assert_ci_close(
        [ci.lo, ci.hi],
        &floats(&e["ci"]),
        e["boot_sd"].as_f64().unwrap(),
        "paired difference",
    );
}

#[test]
fn exact_sign_flip_p_values_equal_scipy_permutation_test() {
    let e = expected();
    let sets = e["permutation_exact"].as_array().unwrap();
    assert!(sets.len() >= 4);
    for (i, s) in sets.iter().enumerate() {
        let (a, b) = (floats(&s["a"]), floats(&s["b"]));
        let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        let r = sign_flip_test(&d, 1 << 16, 0);
        assert!(r.exact, "set {i} should be enumerated");
        let want = s["p"].as_f64().unwrap();
        assert!(
            (r.p - want).abs() < 1e-12,
            "set {i}: p {} vs SciPy {want}",
            r.p
        );
    }
}

#[test]
fn monte_carlo_sign_flip_p_is_within_its_error_of_scipy() {
    let e = &expected()["permutation_mc"];
    let (a, b) = (floats(&e["a"]), floats(&e["b"]));
    let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    let want = e["p"].as_f64().unwrap();
    let r = sign_flip_test(&d, 200_000, 3);
    assert!(!r.exact);
    // Each p is a proportion over 200,000 draws: SE = sqrt(p (1 - p) / R) each,
    // 6 standard errors of the difference of two independent estimates.
    let tol = 6.0 * (2.0 * want * (1.0 - want) / 200_000.0).sqrt();
    assert!((r.p - want).abs() <= tol, "p {} vs SciPy {want}", r.p);
}

#[test]
fn holm_adjusts_by_hand() {
    // p = (0.01, 0.04, 0.03, 0.5), m = 4. Sorted: 0.01*4 = 0.04, 0.03*3 = 0.09,
    // 0.04*2 = 0.08 -> max(0.09, 0.08) = 0.09 (monotone), 0.5*1 = 0.5.
    let adj = holm(&[0.01, 0.04, 0.03, 0.5]);
    let want = [0.04, 0.09, 0.09, 0.5];
    for (g, w) in adj.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{adj:?}");
    }
    // Capped at 1.
    assert_eq!(holm(&[0.6, 0.7]), vec![1.0, 1.0]);
    assert!(holm(&[]).is_empty());
}

fn eval(args: &[&str]) -> (bool, String, String) {
    common::trsr(&[&["eval"], args].concat())
}

const SCORES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stats_scores.jsonl");

#[test]
fn eval_ci_compare_json_matches_scipy_and_reports_the_missing_case() {
    let e = &expected()["eval_cli"];
    let boot = RUST_RESAMPLES.to_string();
    let (ok, out, err) = eval(&[
        "--scores",
        SCORES,
        "--k",
        "3,10",
        "--ci",
        "0.95",
        "--bootstrap",
        &boot,
        "--compare",
        "A,B",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    // Existing keys unchanged, the interval beside each metric.
    let a = &v["A"];
    assert_eq!(a["cases"], 13);
    let mrr = a["mrr@10"].as_f64().unwrap();
    let ci = floats(&a["mrr@10_ci"]);
    assert!(ci[0] <= mrr && mrr <= ci[1]);
    assert_ci_close(
        [ci[0], ci[1]],
        &floats(&e["mrr@10_a_ci"]),
        e["mrr@10_a_boot_sd"].as_f64().unwrap(),
        "A mrr@10",
    );
    // The comparison: c13 (A only) left out and reported.
    let c = &v["comparisons"][0];
    assert_eq!(c["a"], "A");
    assert_eq!(c["b"], "B");
    assert_eq!(c["only_a"], serde_json::json!(["c13"]));
    assert!(err.contains("c13"), "{err}");
    let metric = |name: &str| {
        c["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == name)
            .unwrap()
            .clone()
    };
    let m = metric("mrr@10");
    assert_eq!(m["cases"], 12);
    assert!((m["diff"].as_f64().unwrap() - e["mrr@10_diff"].as_f64().unwrap()).abs() < 1e-12);
    assert_eq!(m["exact"], true);
    assert!((m["p"].as_f64().unwrap() - e["mrr@10_p"].as_f64().unwrap()).abs() < 1e-12);
    let dci = floats(&m["diff_ci"]);
    assert_ci_close(
        [dci[0], dci[1]],
        &floats(&e["mrr@10_diff_ci"]),
        e["mrr@10_diff_boot_sd"].as_f64().unwrap(),
        "mrr@10 difference",
    );
    let r3 = metric("recall@3");
    assert!((r3["p"].as_f64().unwrap() - e["recall@3_p"].as_f64().unwrap()).abs() < 1e-12);
    // Holm over the 7 p-values shown (recall, mrr, ndcg at 3 and 10, auc): each
    // adjusted p is at least the raw one.
    let ps: Vec<(f64, f64)> = c["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["p"].as_f64().unwrap(), m["p_holm"].as_f64().unwrap()))
        .collect();
    assert_eq!(ps.len(), 7);
    let min_p = ps.iter().map(|p| p.0).fold(1.0, f64::min);
    let min_holm = ps.iter().map(|p| p.1).fold(1.0, f64::min);
    assert!((min_holm - (7.0 * min_p).min(1.0)).abs() < 1e-12);
}

#[test]
fn eval_ci_table_markdown_and_csv_carry_intervals() {
    let (ok, out, err) = eval(&[
        "--scores",
        SCORES,
        "--k",
        "3",
        "--ci",
        "0.95",
        "--baseline",
        "B",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("sign-flip permutation"), "{out}");
    assert!(out.contains('['), "{out}");
    let (ok, out, err) = eval(&[
        "--scores", SCORES, "--k", "3", "--ci", "0.9", "--format", "markdown",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("| scorer | recall@3 |"), "{out}");
    assert!(out.contains("90% percentile bootstrap"), "{out}");
    let (ok, out, err) = eval(&[
        "--scores", SCORES, "--k", "3", "--ci", "0.95", "--format", "csv",
    ]);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap();
    assert!(
        header.starts_with("scorer,recall@3,recall@3_lo,recall@3_hi,mrr@3"),
        "{header}"
    );
}

#[test]
fn compare_with_an_unknown_scorer_lists_the_scorers() {
    let (ok, _, err) = eval(&["--scores", SCORES, "--compare", "A,bm25"]);
    assert!(!ok);
    assert!(err.contains("`bm25`") && err.contains("A, B"), "{err}");
}

#[test]
fn fewer_than_two_cases_refuse_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("one.jsonl");
    std::fs::write(
        &p,
        r#"{"case": "c1", "scorer": "x", "candidates": [{"id": "T", "label": 1, "score": 0.9}, {"id": "N", "label": 0, "score": 0.1}]}
"#,
    )
    .unwrap();
    let (ok, out, err) = eval(&["--scores", p.to_str().unwrap(), "--ci", "0.95"]);
    assert!(!ok, "{out}");
    assert!(err.contains("at least 2 cases"), "{err}");
    // Without --ci the point estimate is still printed.
    let (ok, _, err) = eval(&["--scores", p.to_str().unwrap()]);
    assert!(ok, "{err}");
}
