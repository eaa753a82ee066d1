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
    /// How a positive tied with negatives is ranked.
    #[arg(long, value_enum, default_value_t = TiePolicy::Pessimistic)]
    pub ties: TiePolicy,
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
    let summaries = metrics::evaluate(&records, &args.k, args.ties);
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
