//! `trsr summarize`: summarize every case of a prepared folder into summaries.jsonl
//! (one [`SummaryTrace`] per line), resumably, over one or more model instances.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::batch::{
    interrupt_token, load_models, progress, run_pool, select_cases, BatchReport, CommonArgs,
    JsonlOut, ModelArgs, SamplingArgs,
};
use crate::cache::{trace_key_with, Cache};
use crate::data::{Case, ItemTextTemplate, Prepared};
use crate::lm::{CancelToken, LanguageModel, SamplingParams};
use crate::prompt::Templates;
use crate::segment::BlockParams;
use crate::summarize::{
    cache_tag, is_cancelled, summarize, Method, SummarizeEvent, SummarizeRequest, SummaryTrace,
};

#[derive(clap::Args, Debug, Clone)]
pub struct SummarizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prepared folder (items.jsonl + cases.jsonl), as `trsr prepare` makes it.
    #[arg(long)]
    pub data: PathBuf,
    /// hierarchical: each block alone, then a merge; recurrent: block 1, then updates.
    #[arg(long, value_enum)]
    pub method: Method,
    /// Items per block.
    #[arg(long, default_value_t = 5)]
    pub block_size: usize,
    /// At most this many blocks (the most recent items are kept).
    #[arg(long, default_value_t = 5)]
    pub max_blocks: usize,
    /// Cut blocks by a token budget instead of an item count.
    #[arg(long)]
    pub token_budget: Option<usize>,
    /// Only the first N cases.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output file (summaries.jsonl); an existing one is continued.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The block parameters the flags ask for.
pub fn block_params(
    block_size: usize,
    max_blocks: usize,
    token_budget: Option<usize>,
) -> BlockParams {
    match token_budget {
        Some(budget_tokens) => BlockParams::ByTokens {
            budget_tokens,
            max_blocks,
        },
        None => BlockParams::ByCount {
            size: block_size,
            max_blocks,
        },
    }
}

/// Everything a batch summarization needs besides the models.
pub struct SummarizeBatch<'a> {
    pub data: &'a Prepared,
    pub cases: Vec<&'a Case>,
    pub text: &'a ItemTextTemplate,
    pub templates: &'a Templates,
    pub method: Method,
    pub block_params: BlockParams,
    pub sampling: SamplingParams,
    pub cache: Option<&'a Cache>,
    /// False with `--no-cache`: compute even when cached (and store the result).
    pub read_cache: bool,
    pub show_progress: bool,
}

/// Resume key of a summaries.jsonl line.
fn line_key(case: &str, method: Method) -> String {
    format!("{case}\u{0}{method}")
}

/// Summarizes the cases not yet in `out`, appending one trace per line.
pub fn summarize_all<'a>(
    models: &mut [Box<dyn LanguageModel>],
    b: &SummarizeBatch<'a>,
    out: &Path,
    cancel: &CancelToken,
) -> anyhow::Result<BatchReport> {
    let (done_rows, mut writer) = JsonlOut::resume::<SummaryTrace>(out)?;
    let done: std::collections::HashSet<String> = done_rows
        .iter()
        .map(|t| line_key(&t.case, t.method))
        .collect();
    let jobs: Vec<&'a Case> = b
        .cases
        .iter()
        .copied()
        .filter(|c| !done.contains(&line_key(&c.case, b.method)))
        .collect();
    let mut report = BatchReport {
        already_done: b.cases.len() - jobs.len(),
        ..BatchReport::default()
    };
    let pb = progress(jobs.len(), "cases", b.show_progress);
    let tokens = AtomicU64::new(0);
    let start = Instant::now();
    let rate = |n: u64| n as f64 / start.elapsed().as_secs_f64().max(1e-9);
    let request = |case: &'a Case| SummarizeRequest {
        case,
        catalogue: &b.data.catalogue,
        text_template: b.text,
        block_params: b.block_params.clone(),
        method: b.method,
        templates: b.templates,
        sampling: b.sampling.clone(),
    };
    // A context too small for the blocks (a server started with a short context, say)
    // stops here with one error, before any case is written.
    if let (Some(case), Some(lm)) = (jobs.first(), models.first()) {
        crate::summarize::preflight(&**lm, &request(case))?;
    }
    let work =
        |lm: &mut dyn LanguageModel, case: &&'a Case| -> anyhow::Result<(SummaryTrace, bool)> {
            let req = request(case);
            let key = match b.cache {
                Some(_) => Some(trace_key_with(&req, &lm.identity(), &cache_tag(&*lm)?)),
                None => None,
            };
            if let (Some(cache), Some(key), true) = (b.cache, &key, b.read_cache) {
                if let Some(mut t) = cache.get_trace(key) {
                    t.case = case.case.clone();
                    return Ok((t, true));
                }
            }
            let mut on_event = |e: SummarizeEvent| {
                if let SummarizeEvent::Token { .. } = e {
                    let n = tokens.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(16) {
                        pb.set_message(format!("{:.1} tok/s", rate(n)));
                    }
                }
            };
            let trace = summarize(lm, &req, cancel, &mut on_event)?;
            if let (Some(cache), Some(key)) = (b.cache, &key) {
                if let Err(e) = cache.put_trace(key, &trace) {
                    pb.println(format!("warning: {e:#}"));
                }
            }
            Ok((trace, false))
        };
    let mut on_result = |i: usize, r: anyhow::Result<(SummaryTrace, bool)>| -> anyhow::Result<()> {
        match r {
            Ok((trace, cached)) => {
                writer.write(&trace)?;
                report.written += 1;
                if cached {
                    report.cached += 1;
                } else {
                    report.tokens += trace
                        .steps
                        .iter()
                        .map(|s| s.output_tokens as u64)
                        .sum::<u64>();
                }
            }
            Err(e) if is_cancelled(&e) => report.cancelled = true,
            Err(e) => {
                pb.println(format!("case {}: {e:#}", jobs[i].case));
                report.failed.push((jobs[i].case.clone(), format!("{e:#}")));
            }
        }
        pb.inc(1);
        pb.set_message(format!(
            "{:.2} cases/s, {:.1} tok/s",
            rate(pb.position()),
            rate(tokens.load(Ordering::Relaxed))
        ));
        Ok(())
    };
    run_pool(models, &jobs, cancel, &work, &mut on_result)?;
    pb.finish_and_clear();
    if cancel.is_cancelled() && report.written + report.failed.len() < jobs.len() {
        report.cancelled = true;
    }
    report.elapsed_secs = start.elapsed().as_secs_f64();
    Ok(report)
}

pub fn run(mut args: SummarizeArgs) -> anyhow::Result<()> {
    let data = crate::data::jsonl::load_prepared(&args.data)?;
    args.common.resolve_preset(&args.data)?;
    let templates = args.common.templates(&data.catalogue)?;
    let text = args.common.text_template(&data.catalogue);
    let cases = select_cases(&data, args.common.split.as_deref(), args.limit);
    if cases.is_empty() {
        anyhow::bail!("no cases to summarize in {}", args.data.display());
    }
    let cache = args.common.cache();
    let mut models = load_models(&args.model, &templates, args.common.workers())?;
    let batch = SummarizeBatch {
        data: &data,
        cases,
        text: &text,
        templates: &templates,
        method: args.method,
        block_params: block_params(args.block_size, args.max_blocks, args.token_budget),
        sampling: args.sampling.params(args.common.preset),
        cache: cache.as_ref(),
        read_cache: !args.common.no_cache,
        show_progress: !args.common.quiet,
    };
    let report = summarize_all(&mut models, &batch, &args.out, &interrupt_token())?;
    eprintln!(
        "{} summaries written to {} ({} from the cache, {} already there), {:.1} generated tok/s",
        report.written,
        args.out.display(),
        report.cached,
        report.already_done,
        report.tokens as f64 / report.elapsed_secs.max(1e-9)
    );
    report.finish(&args.out)
}
