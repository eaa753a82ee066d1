//! The uncertainty part of `trsr eval` (`--ci`, `--bootstrap`, `--seed`,
//! `--compare`, `--baseline`, `--permutations`): turns [`crate::stats`] results into
//! the table, Markdown, CSV and JSON outputs. Kept apart from `eval.rs` so the
//! point-estimate path stays as it was; `trsr study` uses the same tables.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::{Map, Value};

use crate::export::{Table, TableFormat};
use crate::metrics::{metric_names, ScoreRecord, Summary, TiePolicy};
use crate::stats::{
    apply_holm, case_tables, compare, scorer_intervals, BootstrapParams, Comparison, Interval,
    DEFAULT_PERMUTATIONS, DEFAULT_RESAMPLES, INTERVAL_METHOD, PAIRED_TEST,
};

/// Flags of `trsr eval` for intervals and paired tests.
#[derive(clap::Args, Debug, Clone)]
pub struct StatsArgs {
    /// Add a confidence interval at this level (e.g. 0.95) to every metric: percentile
    /// bootstrap over cases.
    #[arg(long, value_name = "LEVEL")]
    pub ci: Option<f64>,
    /// Bootstrap resamples for the intervals.
    #[arg(long, default_value_t = DEFAULT_RESAMPLES, value_name = "N")]
    pub bootstrap: usize,
    /// Seed of the bootstrap and of the Monte Carlo permutation test.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Compare scorers on the cases both scored: `A,B` (difference A - B, its interval,
    /// a paired sign-flip permutation p-value, Holm-adjusted); more names: every pair.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub compare: Vec<String>,
    /// Compare every other scorer against this one (difference other - NAME).
    #[arg(long, value_name = "NAME", conflicts_with = "compare")]
    pub baseline: Option<String>,
    /// Random sign patterns of the permutation test; it enumerates all 2^n patterns
    /// instead when that is at most this many.
    #[arg(long, default_value_t = DEFAULT_PERMUTATIONS, value_name = "N")]
    pub permutations: usize,
}

impl Default for StatsArgs {
    fn default() -> Self {
        Self {
            ci: None,
            bootstrap: DEFAULT_RESAMPLES,
            seed: 42,
            compare: Vec::new(),
            baseline: None,
            permutations: DEFAULT_PERMUTATIONS,
        }
    }
}

impl StatsArgs {
    /// True when any interval or comparison was asked for.
    pub fn active(&self) -> bool {
        self.ci.is_some() || !self.compare.is_empty() || self.baseline.is_some()
    }

    /// Bootstrap parameters; comparisons without `--ci` use 0.95.
    pub fn params(&self) -> BootstrapParams {
        BootstrapParams {
            level: self.ci.unwrap_or(0.95),
            resamples: self.bootstrap,
            seed: self.seed,
        }
    }
}

/// Intervals per scorer and metric (`None`: metric defined on fewer than 2 cases).
pub type Intervals = BTreeMap<String, BTreeMap<String, Option<Interval>>>;

/// What `--ci` and `--compare`/`--baseline` computed.
#[derive(Clone, Debug, Default)]
pub struct StatsReport {
    pub level: f64,
    pub intervals: Option<Intervals>,
    pub comparisons: Vec<Comparison>,
    /// Number of p-values Holm's correction was applied over.
    pub family: usize,
}

/// The (a, b) pairs asked for, checking the names against the scorers present.
pub fn pairs(args: &StatsArgs, order: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let check = |flag: &str, name: &str| -> anyhow::Result<()> {
        if !order.iter().any(|s| s == name) {
            bail!(
                "{flag}: scorer `{name}` is not in the score files; the scorers there are: {}",
                order.join(", ")
            );
        }
        Ok(())
    };
    let mut out = Vec::new();
    if let Some(base) = &args.baseline {
        check("--baseline", base)?;
        for s in order.iter().filter(|s| *s != base) {
            out.push((s.clone(), base.clone()));
        }
        if out.is_empty() {
            bail!("--baseline {base}: the score files hold no other scorer to compare with");
        }
    }
    if !args.compare.is_empty() {
        let names: Vec<&String> = args.compare.iter().filter(|s| !s.is_empty()).collect();
        if names.len() < 2 {
            bail!("--compare takes at least two scorer names, e.g. --compare bm25,random");
        }
        for n in &names {
            check("--compare", n)?;
        }
        for i in 0..names.len() {
            for j in i + 1..names.len() {
                if names[i] != names[j] {
                    out.push((names[i].clone(), names[j].clone()));
                }
            }
        }
    }
    Ok(out)
}

/// Computes the intervals (with `--ci`) and the comparisons.
pub fn compute(
    args: &StatsArgs,
    records: &[ScoreRecord],
    order: &[String],
    ks: &[usize],
    ties: TiePolicy,
) -> anyhow::Result<StatsReport> {
    let params = args.params();
    params.validate()?;
    if args.permutations == 0 {
        bail!("--permutations must be at least 1");
    }
    let pairs = pairs(args, order)?;
    let tables = case_tables(records, ks, ties);
    let mut report = StatsReport {
        level: params.level,
        ..StatsReport::default()
    };
    if args.ci.is_some() {
        let mut all = Intervals::new();
        for scorer in order {
            let Some(t) = tables.get(scorer) else {
                continue;
            };
            all.insert(scorer.clone(), scorer_intervals(t, &params, scorer)?);
        }
        report.intervals = Some(all);
    }
    for (a, b) in pairs {
        let (Some(ta), Some(tb)) = (tables.get(&a), tables.get(&b)) else {
            continue;
        };
        report
            .comparisons
            .push(compare(&a, ta, &b, tb, &params, args.permutations)?);
    }
    report.family = apply_holm(&mut report.comparisons);
    Ok(report)
}

fn fmt_ci(ci: Option<Interval>) -> String {
    ci.map_or(String::new(), |c| format!("[{:.4}, {:.4}]", c.lo, c.hi))
}

fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// Metrics per scorer with intervals. Text and Markdown: `0.4100 [0.3700, 0.4500]`
/// per cell; CSV: columns `recall@3`, `recall@3_lo`, `recall@3_hi`, ... (numbers
/// for plotting).
pub fn metrics_ci_table(
    summaries: &[(String, Summary)],
    intervals: &Intervals,
    ks: &[usize],
    format: TableFormat,
) -> Table {
    let names = metric_names(ks);
    let csv = format == TableFormat::Csv;
    let mut header = vec!["scorer".to_string()];
    for n in &names {
        header.push(n.clone());
        if csv {
            header.push(format!("{n}_lo"));
            header.push(format!("{n}_hi"));
        }
    }
    header.push("cases".into());
    let mut t = Table::new(header);
    for (scorer, s) in summaries {
        let mut row = vec![scorer.clone()];
        for n in &names {
            let v = s.metrics.get(n);
            let ci = intervals
                .get(scorer)
                .and_then(|m| m.get(n))
                .copied()
                .flatten();
            if csv {
                row.push(v.map_or(String::new(), |v| format!("{v:.6}")));
                row.push(ci.map_or(String::new(), |c| format!("{:.6}", c.lo)));
                row.push(ci.map_or(String::new(), |c| format!("{:.6}", c.hi)));
            } else {
                let mut cell = v.map_or(String::new(), |v| format!("{v:.4}"));
                if ci.is_some() {
                    cell.push(' ');
                    cell.push_str(&fmt_ci(ci));
                }
                row.push(cell);
            }
        }
        row.push(s.cases.to_string());
        t.push(row);
    }
    t
}

/// One row per (comparison, metric): a, b, metric, cases, mean a, mean b, diff,
/// interval, p, Holm-adjusted p.
pub fn comparison_table(comparisons: &[Comparison], format: TableFormat) -> Table {
    let csv = format == TableFormat::Csv;
    let mut header: Vec<String> = ["a", "b", "metric", "cases", "a_mean", "b_mean", "diff"]
        .map(String::from)
        .into();
    if csv {
        header.extend(["diff_lo", "diff_hi"].map(String::from));
    } else {
        header.push("diff_ci".into());
    }
    header.extend(["p", "p_holm", "exact"].map(String::from));
    let mut t = Table::new(header);
    for c in comparisons {
        for m in &c.metrics {
            let mut row = vec![
                c.a.clone(),
                c.b.clone(),
                m.metric.clone(),
                m.cases.to_string(),
                format!("{:.4}", m.mean_a),
                format!("{:.4}", m.mean_b),
                format!("{:+.4}", m.diff),
            ];
            if csv {
                row.push(m.ci.map_or(String::new(), |c| format!("{:.6}", c.lo)));
                row.push(m.ci.map_or(String::new(), |c| format!("{:.6}", c.hi)));
                row.push(format!("{}", m.p));
                row.push(format!("{}", m.p_holm));
            } else {
                row.push(fmt_ci(m.ci));
                row.push(fmt_p(m.p));
                row.push(fmt_p(m.p_holm));
            }
            row.push(if m.exact { "yes" } else { "no" }.into());
            t.push(row);
        }
    }
    t
}

/// A one-paragraph note on how the numbers were computed.
pub fn method_note(report: &StatsReport, args: &StatsArgs) -> String {
    let mut s = format!(
        "Intervals: {:.0}% {INTERVAL_METHOD} ({} resamples, seed {}).",
        report.level * 100.0,
        args.bootstrap,
        args.seed
    );
    if !report.comparisons.is_empty() {
        s.push_str(&format!(
            " p: {PAIRED_TEST} on per-case differences (exact over all sign patterns when \
             2^n <= {}, else {} random ones); p_holm: Holm-adjusted over the {} p-values shown.",
            args.permutations, args.permutations, report.family
        ));
    }
    s
}

/// Notes on cases missing from one side of a comparison.
pub fn missing_notes(comparisons: &[Comparison]) -> Vec<String> {
    let mut out = Vec::new();
    for c in comparisons {
        for (who, other, list) in [(&c.a, &c.b, &c.only_a), (&c.b, &c.a, &c.only_b)] {
            if !list.is_empty() {
                let shown: Vec<&str> = list.iter().take(10).map(String::as_str).collect();
                out.push(format!(
                    "`{who}` vs `{other}`: {} case(s) scored only by `{who}` were left out of the pair: {}{}",
                    list.len(),
                    shown.join(", "),
                    if list.len() > 10 { ", ..." } else { "" }
                ));
            }
        }
    }
    out
}

/// The JSON output: the plain metrics object with `"<metric>_ci": [lo, hi]` added
/// after each metric (null where undefined); with comparisons, a top-level
/// `"comparisons"` list.
pub fn stats_json(
    summaries: &[(String, Summary)],
    report: &StatsReport,
    ks: &[usize],
    args: &StatsArgs,
) -> Value {
    let mut all = Map::new();
    for (scorer, s) in summaries {
        let mut m = Map::new();
        for n in metric_names(ks) {
            m.insert(
                n.clone(),
                s.metrics.get(&n).copied().map_or(Value::Null, Value::from),
            );
            if let Some(iv) = &report.intervals {
                let ci = iv.get(scorer).and_then(|x| x.get(&n)).copied().flatten();
                m.insert(
                    format!("{n}_ci"),
                    ci.map_or(Value::Null, |c| Value::from(vec![c.lo, c.hi])),
                );
            }
        }
        m.insert("cases".into(), s.cases.into());
        all.insert(scorer.clone(), Value::Object(m));
    }
    if !report.comparisons.is_empty() {
        let list: Vec<Value> = report
            .comparisons
            .iter()
            .map(|c| {
                let mut o = Map::new();
                o.insert("a".into(), c.a.clone().into());
                o.insert("b".into(), c.b.clone().into());
                o.insert("test".into(), PAIRED_TEST.into());
                o.insert("level".into(), report.level.into());
                o.insert("resamples".into(), args.bootstrap.into());
                o.insert("seed".into(), args.seed.into());
                o.insert("only_a".into(), c.only_a.clone().into());
                o.insert("only_b".into(), c.only_b.clone().into());
                let ms: Vec<Value> = c
                    .metrics
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "metric": m.metric,
                            "cases": m.cases,
                            "a": m.mean_a,
                            "b": m.mean_b,
                            "diff": m.diff,
                            "diff_ci": m.ci.map(|c| vec![c.lo, c.hi]),
                            "p": m.p,
                            "p_holm": m.p_holm,
                            "exact": m.exact,
                        })
                    })
                    .collect();
                o.insert("metrics".into(), Value::Array(ms));
                Value::Object(o)
            })
            .collect();
        all.insert("comparisons".into(), Value::Array(list));
    }
    Value::Object(all)
}

/// Prints the outputs of `trsr eval` with intervals and/or comparisons.
pub fn print(
    eval: &super::eval::EvalArgs,
    records: &[ScoreRecord],
    order: &[String],
    ordered: &[(String, Summary)],
) -> anyhow::Result<()> {
    let (args, ks, json, format) = (&eval.stats, &eval.k, eval.json, eval.format);
    let ties = eval
        .ties
        .policy()
        .ok_or_else(|| anyhow::anyhow!("intervals take one tie policy, not --ties all"))?;
    let report = compute(args, records, order, ks, ties)?;
    for note in missing_notes(&report.comparisons) {
        eprintln!("note: {note}");
    }
    if json {
        println!(
            "{}",
            serde_json::to_string(&stats_json(ordered, &report, ks, args))?
        );
        return Ok(());
    }
    let note = method_note(&report, args);
    let table = match &report.intervals {
        Some(iv) => metrics_ci_table(ordered, iv, ks, format),
        None => crate::export::metrics_table(ordered, ks),
    };
    print!("{}", table.render(format));
    if !report.comparisons.is_empty() {
        println!();
        print!(
            "{}",
            comparison_table(&report.comparisons, format).render(format)
        );
    }
    match format {
        // CSV stays machine-readable: the note goes to stderr.
        TableFormat::Csv => eprintln!("{note}"),
        _ => println!("\n{note}"),
    }
    Ok(())
}
