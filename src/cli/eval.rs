//! `trsr eval`: Recall/MRR/NDCG@K and AUC per scorer from `scores.jsonl` files.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::export::{metrics_json, metrics_table, TableFormat};
use crate::metrics::{self, ScoreRecord, TiePolicy};

#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// scores.jsonl files (lines: {"case", "scorer", "candidates": [{"id", "label", "score"}]}).
    #[arg(long, num_args = 1.., required = true, value_name = "FILE")]
    pub scores: Vec<PathBuf>,
    /// Cut-offs K for Recall@K, MRR@K and NDCG@K.
    #[arg(long, value_delimiter = ',', default_value = "3,5,10")]
    pub k: Vec<usize>,
    /// How a positive tied with negatives is ranked: pessimistic (tied negatives
    /// first), optimistic (the positive first: an upper bound), average (expected value
    /// over a random order), or all (the three side by side). None is the reference
    /// code's: its `np.argsort` is not stable, so its tie order has no fixed rule.
    #[arg(long, value_enum, default_value_t = TiesArg::Pessimistic)]
    pub ties: TiesArg,
    /// Print exactly one JSON object: {"<scorer>": {"recall@3": ..., "auc": ..., "cases": N}}.
    #[arg(long)]
    pub json: bool,
    /// Table layout when not --json: aligned text, Markdown (for papers) or CSV (for plots).
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
    /// Confidence intervals and paired comparisons (`--ci`, `--compare`, `--baseline`).
    #[command(flatten)]
    pub stats: super::eval_stats::StatsArgs,
}

/// `--ties`: one policy, or all three side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TiesArg {
    Pessimistic,
    Optimistic,
    Average,
    All,
}

impl TiesArg {
    /// The one policy asked for; `None` for `all`.
    pub fn policy(self) -> Option<TiePolicy> {
        match self {
            TiesArg::Pessimistic => Some(TiePolicy::Pessimistic),
            TiesArg::Optimistic => Some(TiePolicy::Optimistic),
            TiesArg::Average => Some(TiePolicy::Average),
            TiesArg::All => None,
        }
    }
}

/// The policies `--ties all` shows, in column order.
const ALL_POLICIES: [TiePolicy; 3] = [
    TiePolicy::Pessimistic,
    TiePolicy::Average,
    TiePolicy::Optimistic,
];

/// The `--ties all` table: one row per scorer and metric, a column per policy, and
/// the scorer's count of cases with the target tied with a negative.
pub fn ties_all_table(
    records: &[ScoreRecord],
    order: &[String],
    ks: &[usize],
) -> crate::export::Table {
    let per_policy: Vec<_> = ALL_POLICIES
        .iter()
        .map(|&p| metrics::evaluate(records, ks, p))
        .collect();
    let tied = metrics::tied_cases(records);
    let mut t = crate::export::Table::new(
        ["scorer", "metric"]
            .into_iter()
            .map(String::from)
            .chain(ALL_POLICIES.iter().map(|p| p.name().to_string()))
            .chain(["tied cases".to_string()]),
    );
    for scorer in order {
        let cases = per_policy[0].get(scorer).map_or(0, |s| s.cases);
        for name in metrics::metric_names(ks) {
            let mut row = vec![scorer.clone(), name.clone()];
            for summaries in &per_policy {
                row.push(
                    summaries
                        .get(scorer)
                        .and_then(|s| s.metrics.get(&name))
                        .map_or("-".to_string(), |v| format!("{v:.4}")),
                );
            }
            row.push(format!(
                "{} of {cases}",
                tied.get(scorer).copied().unwrap_or(0)
            ));
            t.push(row);
        }
    }
    t
}

/// The `--ties all --json` object: per scorer, the metrics under each policy and the
/// tied cases.
fn ties_all_json(records: &[ScoreRecord], order: &[String], ks: &[usize]) -> serde_json::Value {
    let tied = metrics::tied_cases(records);
    let mut all = serde_json::Map::new();
    for &p in &ALL_POLICIES {
        let summaries = metrics::evaluate(records, ks, p);
        let ordered: Vec<(String, metrics::Summary)> = order
            .iter()
            .filter_map(|s| summaries.get(s).map(|m| (s.clone(), m.clone())))
            .collect();
        if let serde_json::Value::Object(m) = metrics_json(&ordered, ks) {
            for (scorer, v) in m {
                let entry = all
                    .entry(scorer.clone())
                    .or_insert_with(|| serde_json::json!({}));
                entry[p.name()] = v;
                entry["tied_cases"] = tied.get(&scorer).copied().unwrap_or(0).into();
            }
        }
    }
    serde_json::Value::Object(all)
}

/// Reads every file; a (scorer, case) pair seen twice is an error naming both places.
/// Returns the records and the scorers in order of first appearance.
pub fn read_all(paths: &[PathBuf]) -> anyhow::Result<(Vec<ScoreRecord>, Vec<String>)> {
    let mut records = Vec::new();
    let mut order: Vec<String> = Vec::new();
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    for path in paths {
        let file = std::fs::File::open(path)
            .with_context(|| format!("could not open {}", path.display()))?;
        let before = records.len();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line_no = i as u64 + 1;
            let line = line
                .with_context(|| format!("{}:{line_no}: not valid UTF-8 text", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let rec = metrics::parse_score_line(&line, path, line_no)?;
            let here = format!("{}:{line_no}", path.display());
            if let Some(first) = seen.insert((rec.scorer.clone(), rec.case.clone()), here.clone()) {
                bail!(
                    "{here}: field `case`: case `{}` of scorer `{}` was already scored at {first}; \
                     each scorer must score each case once",
                    rec.case,
                    rec.scorer
                );
            }
            if !order.contains(&rec.scorer) {
                order.push(rec.scorer.clone());
            }
            records.push(rec);
        }
        if records.len() == before {
            bail!("no score records in {}", path.display());
        }
    }
    Ok((records, order))
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.k.is_empty() || args.k.contains(&0) {
        bail!("--k takes positive cut-offs such as 3,5,10");
    }
    let (records, order) = read_all(&args.scores)?;
    if args.stats.active() && args.ties == TiesArg::All {
        bail!("--ci, --compare and --baseline take one tie policy: --ties pessimistic, average or optimistic, not all");
    }
    let Some(policy) = args.ties.policy() else {
        if args.json {
            println!("{}", ties_all_json(&records, &order, &args.k));
        } else {
            print!(
                "{}",
                ties_all_table(&records, &order, &args.k).render(args.format)
            );
        }
        return Ok(());
    };
    let summaries = metrics::evaluate(&records, &args.k, policy);
    let tied = metrics::tied_cases(&records);
    let ordered: Vec<(String, metrics::Summary)> = order
        .iter()
        .filter_map(|s| summaries.get(s).map(|m| (s.clone(), m.clone())))
        .collect();
    for (scorer, s) in &ordered {
        if s.skipped > 0 {
            eprintln!(
                "note: scorer `{scorer}`: {} case(s) without a positive candidate were left out",
                s.skipped
            );
        }
    }
    // On stderr, beside the skipped-case notes, so the table / CSV / JSON stay as
    // they were for the programs that read them.
    for (scorer, s) in &ordered {
        eprintln!(
            "ties: scorer `{scorer}`: {} of {} case(s) have the target tied with a negative{}",
            tied.get(scorer).copied().unwrap_or(0),
            s.cases,
            if tied.get(scorer).copied().unwrap_or(0) > 0 {
                " (their metrics depend on --ties; --ties all shows the range)"
            } else {
                ""
            }
        );
    }
    if args.stats.active() {
        return super::eval_stats::print(&args, &records, &order, &ordered);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&metrics_json(&ordered, &args.k))?
        );
    } else {
        print!("{}", metrics_table(&ordered, &args.k).render(args.format));
    }
    Ok(())
}
