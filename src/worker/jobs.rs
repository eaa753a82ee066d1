//! What the worker does for each job: summarize, score, batch-evaluate, count tokens,
//! train (in `worker::train`).
//!
//! The method lives in the pipeline (`summarize`, `rank`, `prompt`); this file turns
//! its callbacks into worker events and reuses cached traces (`cache`).

use std::sync::Arc;

use anyhow::Context as _;

use super::{Emitter, Event, JobId, JobSpec};
use crate::data::{Case, Catalogue, ItemTextTemplate};
use crate::lm::{CancelToken, LanguageModel, SamplingParams};
use crate::metrics::ScoreRecord;
use crate::prompt::Templates;
use crate::segment::{segment, BlockParams, SegItem, Segmentation};
use crate::summarize::{SummarizeEvent, SummarizeRequest};

pub use crate::rank::RecommendOptions;
pub use crate::summarize::{
    Method, StepKind, StepTrace as StepResult, SummaryTrace as SummaryResult,
};

/// Summarize one case's history.
#[derive(Clone, Debug)]
pub struct SummarizeJob {
    pub case: Case,
    pub catalogue: Arc<Catalogue>,
    pub text_template: ItemTextTemplate,
    pub block_params: BlockParams,
    pub method: Method,
    pub sampling: SamplingParams,
    pub templates: Templates,
    /// Re-run from step `from` on, keeping the earlier steps of `prior`.
    pub resume: Option<(SummaryResult, usize)>,
    /// The results cache to look in (traces of the CLI or earlier runs) before computing,
    /// and to store into; `None`: no cache.
    pub cache: Option<std::path::PathBuf>,
}

/// Score a case's candidates (target first, then negatives).
#[derive(Clone, Debug)]
pub struct ScoreJob {
    pub case: Case,
    pub catalogue: Arc<Catalogue>,
    pub text_template: ItemTextTemplate,
    pub templates: Templates,
    pub summary: Option<String>,
    pub options: RecommendOptions,
}

/// Summarize (optionally) and score N cases, with progress; ends with the metrics.
#[derive(Clone, Debug)]
pub struct BatchJob {
    pub cases: Vec<Case>,
    pub catalogue: Arc<Catalogue>,
    pub text_template: ItemTextTemplate,
    pub block_params: BlockParams,
    pub method: Method,
    pub sampling: SamplingParams,
    pub templates: Templates,
    /// Summarize each case first (slow); otherwise score from recent items only.
    pub summarize: bool,
    pub options: RecommendOptions,
    /// The results cache the summaries use (see [`SummarizeJob::cache`]).
    pub cache: Option<std::path::PathBuf>,
}

/// What a finished job hands back.
#[derive(Clone, Debug)]
pub enum JobOutput {
    Summary(Box<SummaryResult>),
    Scores(ScoreRecord),
    Batch {
        records: Vec<ScoreRecord>,
        metrics: std::collections::BTreeMap<String, crate::metrics::Summary>,
    },
    TokenCounts(Vec<(String, usize)>),
    /// A finished training run.
    Train(Box<crate::train::TrainReport>),
}

/// Runs one job on the worker thread.
pub fn run_job(
    lm: &mut dyn LanguageModel,
    id: JobId,
    job: JobSpec,
    cancel: &CancelToken,
    em: &mut Emitter,
) -> anyhow::Result<JobOutput> {
    match job {
        JobSpec::Summarize(j) => {
            summarize(lm, id, &j, cancel, em).map(|s| JobOutput::Summary(Box::new(s)))
        }
        JobSpec::Score(j) => {
            let (record, prompt) = score(
                lm,
                &j.templates,
                &j.case,
                &j.catalogue,
                &j.text_template,
                j.summary.as_deref(),
                &j.options,
            )?;
            let _ = em.send(Event::ScoresReady {
                job: id,
                record: record.clone(),
                prompt,
            });
            Ok(JobOutput::Scores(record))
        }
        JobSpec::BatchEvaluate(j) => batch(lm, id, &j, cancel, em),
        JobSpec::CountTokens(texts) => {
            let mut out = Vec::with_capacity(texts.len());
            for t in texts {
                if cancel.is_cancelled() {
                    break;
                }
                let n = lm.count_tokens(&t)?;
                out.push((t, n));
            }
            Ok(JobOutput::TokenCounts(out))
        }
        JobSpec::Train(j) => {
            super::train::run(lm, id, &j, cancel, em).map(|r| JobOutput::Train(Box::new(r)))
        }
    }
}

/// Segments a case's history with the given template and token counter.
pub fn segment_case(
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    params: &BlockParams,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Segmentation {
    let items: Vec<SegItem<'_>> = case
        .history
        .iter()
        .map(|id| SegItem {
            id: id.as_str(),
            text: catalogue
                .get(id)
                .map(|it| text.render(it))
                .unwrap_or_else(|| format!("id: {id}")),
        })
        .collect();
    segment(&items, params, count_tokens)
}

fn summarize(
    lm: &mut dyn LanguageModel,
    id: JobId,
    job: &SummarizeJob,
    cancel: &CancelToken,
    em: &mut Emitter,
) -> anyhow::Result<SummaryResult> {
    let req = SummarizeRequest {
        case: &job.case,
        catalogue: &job.catalogue,
        text_template: &job.text_template,
        block_params: job.block_params.clone(),
        method: job.method,
        templates: &job.templates,
        sampling: job.sampling.clone(),
    };
    let cache = match (&job.cache, &job.resume) {
        (Some(dir), None) => crate::cache::Cache::open(dir).ok(),
        _ => None,
    };
    let key =
        crate::cache::trace_key_with(&req, &lm.identity(), &crate::summarize::cache_tag(&*lm)?);
    if let Some(trace) = cache.as_ref().and_then(|c| c.get_trace(&key)) {
        for (i, st) in trace.steps.iter().enumerate() {
            let _ = em.send(Event::StepStarted {
                job: id,
                step: i,
                kind: st.kind,
                blocks: st.blocks.clone(),
                prompt: st.prompt.clone(),
                prompt_tokens: st.prompt_tokens,
            });
            let _ = em.send(Event::StepFinished {
                job: id,
                step: i,
                output: st.output.clone(),
                output_tokens: st.output_tokens,
                prompt_tokens: st.prompt_tokens,
                ms: st.ms,
                cached: true,
            });
        }
        let mut trace = trace;
        trace.notes.push("reused from the results cache".into());
        return Ok(trace);
    }
    let mut on_event = |ev: SummarizeEvent| {
        let sent = match ev {
            SummarizeEvent::StepStarted {
                step,
                kind,
                blocks,
                prompt,
            } => em.send(Event::StepStarted {
                job: id,
                step,
                kind,
                blocks,
                prompt,
                prompt_tokens: 0,
            }),
            SummarizeEvent::Token { step, delta } => em.token(id, step, delta),
            SummarizeEvent::StepFinished { step, trace } => em.send(Event::StepFinished {
                job: id,
                step,
                output: trace.output,
                output_tokens: trace.output_tokens,
                prompt_tokens: trace.prompt_tokens,
                ms: trace.ms,
                cached: false,
            }),
        };
        if sent.is_err() {
            // The UI is gone: stop the generation.
            cancel.cancel();
        }
    };
    let trace = match &job.resume {
        Some((prior, from)) => {
            crate::summarize::resume(lm, &req, prior, *from, cancel, &mut on_event)?
        }
        None => crate::summarize::summarize(lm, &req, cancel, &mut on_event)?,
    };
    if let Some(c) = &cache {
        if let Err(e) = c.put_trace(&key, &trace) {
            eprintln!(
                "note: could not cache the trace of {}: {e:#}",
                job.case.case
            );
        }
    }
    Ok(trace)
}

/// Scores a case's candidates with the LLM recommender: (record, the exact shared prefix).
pub fn score(
    lm: &mut dyn LanguageModel,
    templates: &Templates,
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    summary: Option<&str>,
    opts: &RecommendOptions,
) -> anyhow::Result<(ScoreRecord, String)> {
    crate::rank::score_llm_with_prefix(lm, templates, case, catalogue, text, summary, opts)
        .with_context(|| {
            format!(
                "case {}: scoring {} candidates",
                case.case,
                case.candidates().len()
            )
        })
}

fn batch(
    lm: &mut dyn LanguageModel,
    id: JobId,
    job: &BatchJob,
    cancel: &CancelToken,
    em: &mut Emitter,
) -> anyhow::Result<JobOutput> {
    let total = job.cases.len();
    let mut records = Vec::with_capacity(total);
    for (n, case) in job.cases.iter().enumerate() {
        if cancel.is_cancelled() {
            break;
        }
        let _ = em.send(Event::Progress {
            job: id,
            done: n,
            total,
            message: format!("case {}", case.case),
        });
        let summary = if job.summarize {
            let sj = SummarizeJob {
                case: case.clone(),
                catalogue: job.catalogue.clone(),
                text_template: job.text_template.clone(),
                block_params: job.block_params.clone(),
                method: job.method,
                sampling: job.sampling.clone(),
                templates: job.templates.clone(),
                resume: None,
                cache: job.cache.clone(),
            };
            match summarize(lm, id, &sj, cancel, em) {
                Ok(r) => Some(r.final_summary),
                // A cancel keeps the cases finished before it (they are results).
                Err(_) if cancel.is_cancelled() => break,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        if cancel.is_cancelled() {
            break;
        }
        let scored = score(
            lm,
            &job.templates,
            case,
            &job.catalogue,
            &job.text_template,
            summary.as_deref(),
            &job.options,
        );
        match scored {
            Ok((rec, _)) => records.push(rec),
            Err(_) if cancel.is_cancelled() => break,
            Err(e) => return Err(e),
        }
    }
    let _ = em.send(Event::Progress {
        job: id,
        done: records.len(),
        total,
        message: "done".into(),
    });
    let metrics = crate::metrics::evaluate(
        &records,
        &[3, 5, 10],
        crate::metrics::TiePolicy::Pessimistic,
    );
    Ok(JobOutput::Batch { records, metrics })
}
