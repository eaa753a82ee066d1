//! `trsr score`: score every case's candidates with the LLM recommender or a
//! baseline into scores.jsonl (one `metrics::ScoreRecord` per line), resumably.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;

use super::batch::{
    interrupt_token, load_models, progress, read_jsonl, run_pool, select_cases, BatchReport,
    CommonArgs, JsonlOut, ModelArgs,
};
use crate::cache::{score_key, Cache};
use crate::data::{Case, ItemTextTemplate, Prepared};
use crate::lm::{CancelToken, LanguageModel};
use crate::metrics::ScoreRecord;
use crate::prompt::Templates;
use crate::rank::{
    llm_scorer_name, recommend_chat_prompt, score_baseline, Baseline, BaselineStats,
    RecommendOptions,
};
use crate::summarize::{cache_tag, Cancelled, Method, SummaryTrace};

/// Which scorer `trsr score` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScorerChoice {
    Llm,
    Random,
    Popularity,
    Bm25,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ScoreArgs {
    /// Prepared folder (items.jsonl + cases.jsonl).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value = "llm")]
    pub scorer: ScorerChoice,
    #[command(flatten)]
    pub model: ModelArgs,
    /// summaries.jsonl from `trsr summarize` (needed by the LLM scorer unless
    /// --no-summary or --full-history). Each summary (case and method) is scored.
    #[arg(long)]
    pub summaries: Option<PathBuf>,
    /// How many most recent history items the prompt shows.
    #[arg(long, default_value_t = 5)]
    pub recent: usize,
    /// Ablation: no preference-summary section.
    #[arg(long)]
    pub no_summary: bool,
    /// Ablation: no recent-items section.
    #[arg(long)]
    pub no_recent: bool,
    /// Ablation: the raw history (as much as fits the context) instead of a summary.
    #[arg(long)]
    pub full_history: bool,
    /// Only the first N cases.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of the random baseline.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output file (scores.jsonl); an existing one is continued.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the exact text scored for every candidate to FILE (JSONL:
    /// `{"case", "scorer", "candidate", "prompt", "tokens"}`; P(yes) is read at its last
    /// position; with a cut (`--truncate-tokens`) the prompt is written whole and
    /// `"cut_at"` and `"read_at"` give the cut and the token position P(yes) is read at).
    #[arg(long, value_name = "FILE")]
    pub dump_prompts: Option<PathBuf>,
    /// Cut each scored text (prompt and candidate) at N tokens and read P(yes) at the
    /// last kept position, as the reference's test.py does (`truncation=True,
    /// max_length=2048`). Default: 2048 under `--preset reference`, none otherwise;
    /// 0 turns the cut off.
    #[arg(long, value_name = "N")]
    pub truncate_tokens: Option<usize>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Everything a batch scoring needs besides the models.
pub struct ScoreBatch<'a> {
    pub data: &'a Prepared,
    pub cases: Vec<&'a Case>,
    pub text: &'a ItemTextTemplate,
    pub templates: &'a Templates,
    pub opts: RecommendOptions,
    /// Summaries to score with (LLM scorer with a summary section).
    pub summaries: Option<&'a [SummaryTrace]>,
    pub cache: Option<&'a Cache>,
    pub read_cache: bool,
    pub show_progress: bool,
}

fn line_key(case: &str, scorer: &str) -> String {
    format!("{case}\u{0}{scorer}")
}

/// One LLM scoring job: a case and the summary to use.
struct LlmJob<'a> {
    case: &'a Case,
    summary: Option<&'a SummaryTrace>,
    scorer: String,
}

/// The LLM scoring jobs of a batch (a case per summary, or per case without summaries)
/// and how many cases have no summary.
fn llm_jobs<'a>(b: &ScoreBatch<'a>, model_name: &str) -> anyhow::Result<(Vec<LlmJob<'a>>, usize)> {
    let needs_summary = b.opts.use_summary && !b.opts.full_history;
    let mut jobs: Vec<LlmJob> = Vec::new();
    let mut without_summary = 0usize;
    if needs_summary {
        let traces = b.summaries.ok_or_else(|| {
            anyhow::anyhow!(
                "the LLM scorer needs summaries: give --summaries FILE (from `trsr summarize`), or \
                 --no-summary / --full-history for the ablations"
            )
        })?;
        let mut by_case: HashMap<&str, Vec<&SummaryTrace>> = HashMap::new();
        for t in traces {
            by_case.entry(t.case.as_str()).or_default().push(t);
        }
        for case in &b.cases {
            match by_case.get(case.case.as_str()) {
                Some(ts) => {
                    for t in ts {
                        jobs.push(LlmJob {
                            case,
                            summary: Some(t),
                            scorer: llm_scorer_name(model_name, Some(t.method), &b.opts),
                        });
                    }
                }
                None => without_summary += 1,
            }
        }
    } else {
        for case in &b.cases {
            jobs.push(LlmJob {
                case,
                summary: None,
                scorer: llm_scorer_name(model_name, None::<Method>, &b.opts),
            });
        }
    }
    Ok((jobs, without_summary))
}

/// Writes the exact text scored for each candidate of each job, one JSON line per
/// candidate: `{"case", "scorer", "candidate", "prompt", "tokens"}`; the prompt is the
/// shared prefix plus the candidate's suffix, whose last position gives P(yes), and
/// `tokens` its length as the model is fed it. With a cut (`opts.truncate_tokens`) the
/// prompt is still written whole (the text the reference builds before its tokenizer
/// truncates), plus `"cut_at"` (the cut) and `"read_at"` (the 1-based token position
/// P(yes) is read at: the last kept one).
pub fn dump_prompts(lm: &dyn LanguageModel, b: &ScoreBatch, path: &Path) -> anyhow::Result<usize> {
    use std::io::Write;
    let model_name = lm.identity().name;
    let (jobs, _) = llm_jobs(b, &model_name)?;
    let file = std::fs::File::create(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let mut lines = 0;
    for job in &jobs {
        let summary = job.summary.map(|t| t.final_summary.as_str());
        let ((prefix, suffixes), _kept) = recommend_chat_prompt(
            lm,
            b.templates,
            job.case,
            &b.data.catalogue,
            b.text,
            summary,
            &b.opts,
        )
        .with_context(|| format!("case {}", job.case.case))?;
        let tokens = lm
            .scored_tokens(&prefix, &suffixes)
            .with_context(|| format!("case {}: counting the scored tokens", job.case.case))?;
        for ((id, suffix), n) in job.case.candidates().iter().zip(&suffixes).zip(tokens) {
            let mut line = serde_json::json!({
                "case": job.case.case,
                "scorer": job.scorer,
                "candidate": id,
                "prompt": format!("{prefix}{suffix}"),
                "tokens": n,
            });
            if let Some(cut) = b.opts.truncate_tokens {
                line["cut_at"] = cut.into();
                line["read_at"] = n.min(cut).into();
            }
            writeln!(w, "{line}").with_context(|| format!("could not write {}", path.display()))?;
            lines += 1;
        }
    }
    w.flush()
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(lines)
}

/// Scores the cases not yet in `out` with the LLM recommender.
pub fn score_llm_all(
    models: &mut [Box<dyn LanguageModel>],
    b: &ScoreBatch,
    out: &Path,
    cancel: &CancelToken,
) -> anyhow::Result<BatchReport> {
    let model_name = models
        .first()
        .map(|m| m.identity().name)
        .ok_or_else(|| anyhow::anyhow!("no model instance to score with"))?;
    let (done_rows, mut writer) = JsonlOut::resume::<ScoreRecord>(out)?;
    let done: HashSet<String> = done_rows
        .iter()
        .map(|r| line_key(&r.case, &r.scorer))
        .collect();
    let (mut jobs, without_summary) = llm_jobs(b, &model_name)?;
    let total = jobs.len();
    jobs.retain(|j| !done.contains(&line_key(&j.case.case, &j.scorer)));
    let mut report = BatchReport {
        already_done: total - jobs.len(),
        ..BatchReport::default()
    };
    if let (Some(job), Some(lm)) = (jobs.first(), models.first()) {
        crate::rank::preflight(
            &**lm,
            b.templates,
            job.case,
            &b.data.catalogue,
            b.text,
            job.summary.map(|t| t.final_summary.as_str()),
            &b.opts,
        )?;
    }
    let pb = progress(jobs.len(), "cases", b.show_progress);
    if without_summary > 0 {
        pb.println(format!(
            "warning: {without_summary} case(s) have no summary in the summaries file and are not scored"
        ));
    }
    let tokens = AtomicU64::new(0);
    let start = Instant::now();
    let work = |lm: &mut dyn LanguageModel, job: &LlmJob| -> anyhow::Result<(ScoreRecord, bool)> {
        if cancel.is_cancelled() {
            return Err(Cancelled.into());
        }
        let summary = job.summary.map(|t| t.final_summary.as_str());
        let key = match b.cache {
            Some(_) => Some(score_key(
                &lm.identity(),
                &cache_tag(&*lm)?,
                b.templates,
                job.case,
                &b.data.catalogue,
                b.text,
                summary,
                &b.opts,
            )),
            None => None,
        };
        if let (Some(cache), Some(key), true) = (b.cache, &key, b.read_cache) {
            if let Some(mut r) = cache.get_scores(key) {
                r.case = job.case.case.clone();
                r.scorer = job.scorer.clone();
                return Ok((r, true));
            }
        }
        let ((prefix, suffixes), _kept) = recommend_chat_prompt(
            &*lm,
            b.templates,
            job.case,
            &b.data.catalogue,
            b.text,
            summary,
            &b.opts,
        )?;
        let mut n = lm.count_tokens(&prefix)?;
        for s in &suffixes {
            n += lm.count_tokens(s)?;
        }
        let probs = crate::rank::score_candidates(lm, &prefix, &suffixes, &b.opts)?;
        if probs.len() != suffixes.len() {
            anyhow::bail!(
                "the model returned {} scores for {} candidates",
                probs.len(),
                suffixes.len()
            );
        }
        tokens.fetch_add(n as u64, Ordering::Relaxed);
        let record = ScoreRecord {
            case: job.case.case.clone(),
            scorer: job.scorer.clone(),
            preset: Some(b.templates.preset()),
            candidates: job
                .case
                .candidates()
                .iter()
                .zip(probs)
                .enumerate()
                .map(|(i, (id, p))| crate::metrics::ScoredCandidate {
                    id: id.to_string(),
                    label: u8::from(i == 0),
                    score: f64::from(p),
                })
                .collect(),
        };
        if let (Some(cache), Some(key)) = (b.cache, &key) {
            if let Err(e) = cache.put_scores(key, &record) {
                pb.println(format!("warning: {e:#}"));
            }
        }
        Ok((record, false))
    };
    let mut on_result = |i: usize, r: anyhow::Result<(ScoreRecord, bool)>| -> anyhow::Result<()> {
        match r {
            Ok((rec, cached)) => {
                writer.write(&rec)?;
                report.written += 1;
                if cached {
                    report.cached += 1;
                }
            }
            Err(e) if crate::summarize::is_cancelled(&e) => report.cancelled = true,
            Err(e) => {
                pb.println(format!("case {}: {e:#}", jobs[i].case.case));
                report
                    .failed
                    .push((jobs[i].case.case.clone(), format!("{e:#}")));
            }
        }
        pb.inc(1);
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        pb.set_message(format!(
            "{:.2} cases/s, {:.0} tok/s",
            pb.position() as f64 / secs,
            tokens.load(Ordering::Relaxed) as f64 / secs
        ));
        Ok(())
    };
    run_pool(models, &jobs, cancel, &work, &mut on_result)?;
    pb.finish_and_clear();
    if cancel.is_cancelled() && report.written + report.failed.len() < jobs.len() {
        report.cancelled = true;
    }
    report.tokens = tokens.load(Ordering::Relaxed);
    report.elapsed_secs = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Scores the cases not yet in `out` with each baseline, in parallel (rayon).
/// Popularity counts come from the training cases of the whole dataset.
pub fn score_baselines_all(
    baselines: &[Baseline],
    b: &ScoreBatch,
    seed: u64,
    out: &Path,
    cancel: &CancelToken,
) -> anyhow::Result<BatchReport> {
    let stats = BaselineStats::build(&b.data.cases, &b.data.catalogue, b.text);
    let (done_rows, mut writer) = JsonlOut::resume::<ScoreRecord>(out)?;
    let done: HashSet<String> = done_rows
        .iter()
        .map(|r| line_key(&r.case, &r.scorer))
        .collect();
    let jobs: Vec<(&Case, Baseline)> = baselines
        .iter()
        .flat_map(|&bl| b.cases.iter().map(move |c| (*c, bl)))
        .filter(|(c, bl)| !done.contains(&line_key(&c.case, bl.name())))
        .collect();
    let mut report = BatchReport {
        already_done: b.cases.len() * baselines.len() - jobs.len(),
        ..BatchReport::default()
    };
    let start = Instant::now();
    let pb = progress(jobs.len(), "cases", b.show_progress);
    for chunk in jobs.chunks(256) {
        if cancel.is_cancelled() {
            report.cancelled = true;
            break;
        }
        let records: Vec<ScoreRecord> = chunk
            .par_iter()
            .map(|(c, bl)| score_baseline(*bl, &stats, c, &b.data.catalogue, seed))
            .collect();
        for r in &records {
            writer.write(r)?;
        }
        report.written += records.len();
        pb.inc(records.len() as u64);
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        pb.set_message(format!("{:.0} cases/s", report.written as f64 / secs));
    }
    pb.finish_and_clear();
    report.elapsed_secs = start.elapsed().as_secs_f64();
    Ok(report)
}

/// The recommender options the flags ask for.
pub fn recommend_options(args: &ScoreArgs) -> RecommendOptions {
    RecommendOptions {
        recent: args.recent,
        use_summary: !args.no_summary,
        use_recent: !args.no_recent,
        full_history: args.full_history,
        truncate_tokens: match args.truncate_tokens {
            Some(0) => None,
            Some(n) => Some(n),
            None => args.common.preset.score_cut(),
        },
    }
}

pub fn run(mut args: ScoreArgs) -> anyhow::Result<()> {
    let data = crate::data::jsonl::load_prepared(&args.data)?;
    args.common.resolve_preset(&args.data)?;
    let templates = args.common.templates(&data.catalogue)?;
    let text = args.common.text_template(&data.catalogue);
    let cases = select_cases(&data, args.common.split.as_deref(), args.limit);
    if cases.is_empty() {
        anyhow::bail!("no cases to score in {}", args.data.display());
    }
    let opts = recommend_options(&args);
    // Baselines are cheap: only LLM scores are cached.
    let cache = match args.scorer {
        ScorerChoice::Llm => args.common.cache(),
        _ => None,
    };
    let summaries: Option<Vec<SummaryTrace>> = match &args.summaries {
        Some(p) if args.scorer == ScorerChoice::Llm && opts.use_summary && !opts.full_history => {
            Some(read_jsonl(p)?)
        }
        _ => None,
    };
    let batch = ScoreBatch {
        data: &data,
        cases,
        text: &text,
        templates: &templates,
        opts,
        summaries: summaries.as_deref(),
        cache: cache.as_ref(),
        read_cache: !args.common.no_cache,
        show_progress: !args.common.quiet,
    };
    let cancel = interrupt_token();
    let report = match args.scorer {
        ScorerChoice::Llm => {
            let mut models = load_models(&args.model, &templates, args.common.workers())?;
            if let (Some(path), Some(lm)) = (&args.dump_prompts, models.first()) {
                let n = dump_prompts(&**lm, &batch, path)?;
                eprintln!("{n} scored prompts written to {}", path.display());
            }
            score_llm_all(&mut models, &batch, &args.out, &cancel)?
        }
        ScorerChoice::Random => {
            score_baselines_all(&[Baseline::Random], &batch, args.seed, &args.out, &cancel)?
        }
        ScorerChoice::Popularity => score_baselines_all(
            &[Baseline::Popularity],
            &batch,
            args.seed,
            &args.out,
            &cancel,
        )?,
        ScorerChoice::Bm25 => {
            score_baselines_all(&[Baseline::Bm25], &batch, args.seed, &args.out, &cancel)?
        }
    };
    eprintln!(
        "{} score lines written to {} ({} from the cache, {} already there)",
        report.written,
        args.out.display(),
        report.cached,
        report.already_done
    );
    report.finish(&args.out)
}
