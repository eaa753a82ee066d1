//! `trsr sweep`: summarize and score every (method, block size) setting, plus the
//! baselines and the no-summary LLM ablation once, and write one metrics table
//! (`metrics.csv`, `metrics.json`) for plotting. Per-setting files:
//! `summaries_<method>_b<size>.jsonl`, `scores_<method>_b<size>.jsonl`,
//! `scores_baselines.jsonl`, `scores_llm_no-summary.jsonl`. Everything resumes.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::batch::{
    interrupt_token, load_models, read_jsonl, select_cases, BatchReport, CommonArgs, ModelArgs,
    SamplingArgs,
};
use super::score::{score_baselines_all, score_llm_all, ScoreBatch};
use super::summarize::{block_params, summarize_all, SummarizeBatch};
use crate::cache::Cache;
use crate::data::{Case, ItemTextTemplate, Prepared};
use crate::lm::{CancelToken, LanguageModel, SamplingParams};
use crate::metrics::{evaluate, metric_names, ScoreRecord, TiePolicy};
use crate::prompt::Templates;
use crate::rank::{Baseline, RecommendOptions};
use crate::summarize::{Method, SummaryTrace};

#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prepared folder (items.jsonl + cases.jsonl).
    #[arg(long)]
    pub data: PathBuf,
    /// Block sizes to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,3,5,8")]
    pub block_sizes: Vec<usize>,
    /// Methods to try, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "recurrent,hierarchical"
    )]
    pub methods: Vec<Method>,
    /// At most this many blocks per history.
    #[arg(long, default_value_t = 5)]
    pub max_blocks: usize,
    /// Recent items in the recommender prompt.
    #[arg(long, default_value_t = 5)]
    pub recent: usize,
    /// Only the first N cases.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Tie policy of the metrics.
    #[arg(long, value_enum, default_value = "pessimistic")]
    pub ties: TiePolicy,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// One row of the sweep's metrics table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub scorer: String,
    /// `recurrent`, `hierarchical`, or empty for scorers without a summary.
    pub method: String,
    /// Block size, or `None` for scorers without a summary.
    pub block_size: Option<usize>,
    pub cases: usize,
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// The metric cut-offs of the table.
pub const KS: [usize; 3] = [3, 5, 10];

/// What a sweep runs, besides the models.
pub struct SweepPlan<'a> {
    pub data: &'a Prepared,
    pub cases: Vec<&'a Case>,
    pub text: &'a ItemTextTemplate,
    pub templates: &'a Templates,
    pub methods: Vec<Method>,
    pub block_sizes: Vec<usize>,
    pub max_blocks: usize,
    pub recent: usize,
    pub sampling: SamplingParams,
    pub seed: u64,
    pub ties: TiePolicy,
    pub cache: Option<&'a Cache>,
    pub read_cache: bool,
    pub show_progress: bool,
}

fn score_batch<'b>(
    plan: &'b SweepPlan<'_>,
    opts: RecommendOptions,
    summaries: Option<&'b [SummaryTrace]>,
) -> ScoreBatch<'b> {
    ScoreBatch {
        data: plan.data,
        cases: plan.cases.clone(),
        text: plan.text,
        templates: plan.templates,
        opts,
        summaries,
        cache: plan.cache,
        read_cache: plan.read_cache,
        show_progress: plan.show_progress,
    }
}

fn rows_for(
    records: &[ScoreRecord],
    method: &str,
    block_size: Option<usize>,
    ties: TiePolicy,
) -> Vec<MetricsRow> {
    evaluate(records, &KS, ties)
        .into_iter()
        .map(|(scorer, s)| MetricsRow {
            scorer,
            method: method.to_string(),
            block_size,
            cases: s.cases,
            metrics: s.metrics,
        })
        .collect()
}

/// Which parts of a sweep run (`trsr study` picks; `trsr sweep` runs all).
#[derive(Clone, Debug, PartialEq)]
pub struct SweepParts {
    /// Baselines scored once (none: skipped).
    pub baselines: Vec<Baseline>,
    /// The LLM without a summary.
    pub no_summary: bool,
    /// Every (method, block size) with a summary.
    pub with_summary: bool,
}

impl Default for SweepParts {
    fn default() -> Self {
        Self {
            baselines: vec![Baseline::Random, Baseline::Popularity, Baseline::Bm25],
            no_summary: true,
            with_summary: true,
        }
    }
}

/// Runs the whole sweep into `out` and returns the metrics rows (also written).
pub fn sweep(
    models: &mut [Box<dyn LanguageModel>],
    plan: &SweepPlan,
    out: &Path,
    cancel: &CancelToken,
) -> anyhow::Result<Vec<MetricsRow>> {
    sweep_parts(models, plan, &SweepParts::default(), out, cancel)
}

/// Runs the chosen parts of a sweep into `out` (same files as [`sweep`]).
pub fn sweep_parts(
    models: &mut [Box<dyn LanguageModel>],
    plan: &SweepPlan,
    parts: &SweepParts,
    out: &Path,
    cancel: &CancelToken,
) -> anyhow::Result<Vec<MetricsRow>> {
    std::fs::create_dir_all(out).with_context(|| format!("could not create {}", out.display()))?;
    let say = |msg: String| {
        if plan.show_progress {
            eprintln!("{msg}");
        }
    };
    let check = |r: BatchReport, path: &Path| -> anyhow::Result<()> { r.finish(path) };
    let mut rows = Vec::new();

    // Baselines once.
    if !parts.baselines.is_empty() {
        let path = out.join("scores_baselines.jsonl");
        say(format!("baselines -> {}", path.display()));
        let base = score_batch(plan, RecommendOptions::default(), None);
        let r = score_baselines_all(&parts.baselines, &base, plan.seed, &path, cancel)?;
        check(r, &path)?;
        rows.extend(rows_for(
            &read_jsonl::<ScoreRecord>(&path)?,
            "",
            None,
            plan.ties,
        ));
    }

    // The LLM without a summary once.
    if parts.no_summary {
        let path = out.join("scores_llm_no-summary.jsonl");
        say(format!("LLM without summary -> {}", path.display()));
        let opts = RecommendOptions {
            recent: plan.recent,
            use_summary: false,
            truncate_tokens: plan.templates.preset().score_cut(),
            ..RecommendOptions::default()
        };
        let r = score_llm_all(models, &score_batch(plan, opts, None), &path, cancel)?;
        check(r, &path)?;
        rows.extend(rows_for(
            &read_jsonl::<ScoreRecord>(&path)?,
            "",
            None,
            plan.ties,
        ));
    }

    let methods: &[Method] = if parts.with_summary {
        &plan.methods
    } else {
        &[]
    };
    for &method in methods {
        for &size in &plan.block_sizes {
            let sum_path = out.join(format!("summaries_{method}_b{size}.jsonl"));
            say(format!(
                "{method}, blocks of {size} -> {}",
                sum_path.display()
            ));
            let sb = SummarizeBatch {
                data: plan.data,
                cases: plan.cases.clone(),
                text: plan.text,
                templates: plan.templates,
                method,
                block_params: block_params(size, plan.max_blocks, None),
                sampling: plan.sampling.clone(),
                cache: plan.cache,
                read_cache: plan.read_cache,
                show_progress: plan.show_progress,
            };
            let r = summarize_all(models, &sb, &sum_path, cancel)?;
            check(r, &sum_path)?;
            let traces: Vec<SummaryTrace> = read_jsonl(&sum_path)?;
            let score_path = out.join(format!("scores_{method}_b{size}.jsonl"));
            let opts = RecommendOptions {
                recent: plan.recent,
                truncate_tokens: plan.templates.preset().score_cut(),
                ..RecommendOptions::default()
            };
            let r = score_llm_all(
                models,
                &score_batch(plan, opts, Some(&traces)),
                &score_path,
                cancel,
            )?;
            check(r, &score_path)?;
            rows.extend(rows_for(
                &read_jsonl::<ScoreRecord>(&score_path)?,
                method.name(),
                Some(size),
                plan.ties,
            ));
        }
    }
    write_tables(&rows, out)?;
    Ok(rows)
}

/// Writes `metrics.csv` and `metrics.json`.
pub fn write_tables(rows: &[MetricsRow], out: &Path) -> anyhow::Result<()> {
    let names = metric_names(&KS);
    let csv_path = out.join("metrics.csv");
    let mut w = csv::Writer::from_path(&csv_path)
        .with_context(|| format!("could not write {}", csv_path.display()))?;
    let mut header = vec![
        "scorer".to_string(),
        "method".into(),
        "block_size".into(),
        "cases".into(),
    ];
    header.extend(names.iter().cloned());
    w.write_record(&header)?;
    for r in rows {
        let mut rec = vec![
            r.scorer.clone(),
            r.method.clone(),
            r.block_size.map(|b| b.to_string()).unwrap_or_default(),
            r.cases.to_string(),
        ];
        rec.extend(names.iter().map(|n| {
            r.metrics
                .get(n)
                .map(|v| format!("{v:.6}"))
                .unwrap_or_default()
        }));
        w.write_record(&rec)?;
    }
    w.flush()
        .with_context(|| format!("could not write {}", csv_path.display()))?;
    let json_path = out.join("metrics.json");
    let json = serde_json::to_string_pretty(rows)?;
    std::fs::write(&json_path, json)
        .with_context(|| format!("could not write {}", json_path.display()))?;
    Ok(())
}

pub fn run(mut args: SweepArgs) -> anyhow::Result<()> {
    if args.block_sizes.is_empty() || args.block_sizes.contains(&0) {
        anyhow::bail!("--block-sizes needs positive sizes, e.g. 2,3,5,8");
    }
    let data = crate::data::jsonl::load_prepared(&args.data)?;
    args.common.resolve_preset(&args.data)?;
    let templates = args.common.templates(&data.catalogue)?;
    let text = args.common.text_template(&data.catalogue);
    let cases = select_cases(&data, args.common.split.as_deref(), args.limit);
    if cases.is_empty() {
        anyhow::bail!("no cases in {}", args.data.display());
    }
    let cache = args.common.cache();
    let mut models = load_models(&args.model, &templates, args.common.workers())?;
    let plan = SweepPlan {
        data: &data,
        cases,
        text: &text,
        templates: &templates,
        methods: args.methods.clone(),
        block_sizes: args.block_sizes.clone(),
        max_blocks: args.max_blocks,
        recent: args.recent,
        sampling: args.sampling.params(args.common.preset),
        seed: args.sampling.seed.unwrap_or(42),
        ties: args.ties,
        cache: cache.as_ref(),
        read_cache: !args.common.no_cache,
        show_progress: !args.common.quiet,
    };
    let rows = sweep(&mut models, &plan, &args.out, &interrupt_token())?;
    print_rows(&rows);
    eprintln!(
        "metrics written to {} and {}",
        args.out.join("metrics.csv").display(),
        args.out.join("metrics.json").display()
    );
    Ok(())
}

/// A compact table of the rows on stdout.
fn print_rows(rows: &[MetricsRow]) {
    let cols = ["recall@5", "mrr@5", "ndcg@5", "ndcg@10", "auc"];
    println!(
        "{:<48} {:<13} {:>5} {:>6} {}",
        "scorer",
        "method",
        "block",
        "cases",
        cols.map(|c| format!("{c:>9}")).join(" ")
    );
    for r in rows {
        println!(
            "{:<48} {:<13} {:>5} {:>6} {}",
            r.scorer,
            r.method,
            r.block_size.map(|b| b.to_string()).unwrap_or_default(),
            r.cases,
            cols.map(|c| format!("{:>9.4}", r.metrics.get(c).copied().unwrap_or(f64::NAN)))
                .join(" ")
        );
    }
}
