//! What the worker does for each job: summarize, score, batch-evaluate, count tokens.
//!
//! Until the pipeline (`summarize`, `rank`, `prompt`) lands, the prompts here follow the
//! paper's structure with our own wording; the job shapes and events stay the same when
//! these calls move to the pipeline functions.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;

use super::{Emitter, Event, JobId, JobSpec, StepKind};
use crate::data::{Case, Catalogue, ItemTextTemplate};
use crate::lm::{CancelToken, ChatMessage, LanguageModel, SamplingParams};
use crate::metrics::{ScoreRecord, ScoredCandidate};
use crate::segment::{segment, BlockParams, SegItem, Segmentation};

/// Hierarchical (each block alone, then one merge) or recurrent (a chain of updates).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Method {
    #[default]
    Hierarchical,
    Recurrent,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Hierarchical => "hierarchical",
            Method::Recurrent => "recurrent",
        }
    }
}

/// Summarize one case's history.
#[derive(Clone, Debug)]
pub struct SummarizeJob {
    pub case: Case,
    pub catalogue: Arc<Catalogue>,
    pub text_template: ItemTextTemplate,
    pub block_params: BlockParams,
    pub method: Method,
    pub sampling: SamplingParams,
    /// Re-run from step `from` on, keeping the earlier steps of `prior`.
    pub resume: Option<(SummaryResult, usize)>,
}

/// Score a case's candidates (target first, then negatives).
#[derive(Clone, Debug)]
pub struct ScoreJob {
    pub case: Case,
    pub catalogue: Arc<Catalogue>,
    pub text_template: ItemTextTemplate,
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
    /// Summarize each case first (slow); otherwise score from recent items only.
    pub summarize: bool,
    pub options: RecommendOptions,
}

/// Which parts the recommender prompt holds (the ablation toggles).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecommendOptions {
    pub recent: usize,
    pub use_summary: bool,
    pub use_recent: bool,
}

impl Default for RecommendOptions {
    fn default() -> Self {
        Self {
            recent: 5,
            use_summary: true,
            use_recent: true,
        }
    }
}

/// One finished summarization step.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepResult {
    pub kind: StepKind,
    pub blocks: Vec<usize>,
    pub prompt: String,
    pub output: String,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    pub ms: f64,
    pub token_logprobs: Vec<f32>,
}

/// A finished summary with all its steps.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SummaryResult {
    pub case: String,
    pub method: Method,
    pub blocks: Vec<Vec<String>>,
    pub steps: Vec<StepResult>,
    pub final_summary: String,
}

/// What a finished job hands back.
#[derive(Clone, Debug)]
pub enum JobOutput {
    Summary(SummaryResult),
    Scores(ScoreRecord),
    Batch {
        records: Vec<ScoreRecord>,
        metrics: std::collections::BTreeMap<String, crate::metrics::Summary>,
    },
    TokenCounts(Vec<(String, usize)>),
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
        JobSpec::Summarize(j) => summarize(lm, id, &j, cancel, em).map(JobOutput::Summary),
        JobSpec::Score(j) => {
            let (record, prompt) = score(
                lm,
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

const BLOCK_INSTRUCTION: &str = "Here is a list of items a user interacted with, oldest first. \
Summarize the user's preferences in a short paragraph: topics, styles and interests that recur.";
const UPDATE_INSTRUCTION: &str = "Here is a summary of a user's preferences so far, followed by \
the items the user interacted with next. Write an updated, self-contained summary of the user's \
preferences in a short paragraph.";
const MERGE_INSTRUCTION: &str = "Here are summaries of a user's preferences over consecutive \
periods, oldest first. Merge them into one short paragraph describing the user's preferences.";

fn step_prompt(
    lm: &dyn LanguageModel,
    kind: StepKind,
    block_text: &str,
    prior: &[&str],
) -> anyhow::Result<String> {
    let user = match kind {
        StepKind::Block => format!("{BLOCK_INSTRUCTION}\n\nItems:\n{block_text}"),
        StepKind::Update => format!(
            "{UPDATE_INSTRUCTION}\n\nSummary so far:\n{}\n\nNew items:\n{block_text}",
            prior.first().copied().unwrap_or("")
        ),
        StepKind::Merge => {
            let mut s = format!("{MERGE_INSTRUCTION}\n");
            for (i, p) in prior.iter().enumerate() {
                s.push_str(&format!("\nPeriod {}:\n{}\n", i + 1, p.trim()));
            }
            s
        }
    };
    lm.render_chat(&[ChatMessage::user(user)])
}

fn summarize(
    lm: &mut dyn LanguageModel,
    id: JobId,
    job: &SummarizeJob,
    cancel: &CancelToken,
    em: &mut Emitter,
) -> anyhow::Result<SummaryResult> {
    let seg = {
        let lm_ref: &dyn LanguageModel = lm;
        segment_case(
            &job.case,
            &job.catalogue,
            &job.text_template,
            &job.block_params,
            &|t| lm_ref.count_tokens(t).unwrap_or(t.len() / 4),
        )
    };
    anyhow::ensure!(
        !seg.blocks.is_empty(),
        "case {}: the history is empty, nothing to summarize",
        job.case.case
    );
    // The plan: (kind, blocks covered).
    let mut plan: Vec<(StepKind, Vec<usize>)> = Vec::new();
    match job.method {
        Method::Hierarchical => {
            for b in 0..seg.blocks.len() {
                plan.push((StepKind::Block, vec![b]));
            }
            if seg.blocks.len() > 1 {
                plan.push((StepKind::Merge, (0..seg.blocks.len()).collect()));
            }
        }
        Method::Recurrent => {
            plan.push((StepKind::Block, vec![0]));
            for b in 1..seg.blocks.len() {
                plan.push((StepKind::Update, vec![b]));
            }
        }
    }
    let (mut steps, from) = match &job.resume {
        Some((prior, from)) if prior.steps.len() == plan.len() && *from < plan.len() => {
            (prior.steps[..*from].to_vec(), *from)
        }
        _ => (Vec::new(), 0),
    };
    // A hierarchical re-run of one block step only redoes that block and the merge.
    let only_block = job.method == Method::Hierarchical
        && job.resume.is_some()
        && from < seg.blocks.len()
        && !steps.is_empty();
    for (i, (kind, blocks)) in plan.iter().enumerate().skip(from) {
        if cancel.is_cancelled() {
            break;
        }
        if only_block && i > from && *kind == StepKind::Block {
            if let Some((prior, _)) = &job.resume {
                steps.push(prior.steps[i].clone());
                continue;
            }
        }
        let prior: Vec<&str> = match kind {
            StepKind::Block => Vec::new(),
            StepKind::Update => steps
                .last()
                .map(|s: &StepResult| s.output.as_str())
                .into_iter()
                .collect(),
            StepKind::Merge => steps.iter().map(|s| s.output.as_str()).collect(),
        };
        let block_text = blocks
            .first()
            .map(|&b| seg.blocks[b].text.as_str())
            .unwrap_or("");
        let prompt = step_prompt(lm, *kind, block_text, &prior)?;
        let prompt_tokens = lm.count_tokens(&prompt).unwrap_or(0);
        if em
            .send(Event::StepStarted {
                job: id,
                step: i,
                kind: *kind,
                blocks: blocks.clone(),
                prompt: prompt.clone(),
                prompt_tokens,
            })
            .is_err()
        {
            cancel.cancel();
            break;
        }
        let start = Instant::now();
        let mut logprobs = Vec::new();
        let generated = lm
            .generate(&prompt, &job.sampling, cancel, &mut |d| {
                logprobs.push(d.logprob);
                if em.token(id, i, d.clone()).is_err() {
                    cancel.cancel();
                }
            })
            .with_context(|| format!("case {}: step {} ({kind:?})", job.case.case, i + 1))?;
        let _ = em.flush();
        let step = StepResult {
            kind: *kind,
            blocks: blocks.clone(),
            prompt,
            output: generated.text.trim().to_string(),
            prompt_tokens: generated.prompt_tokens,
            output_tokens: generated.new_tokens,
            ms: start.elapsed().as_secs_f64() * 1000.0,
            token_logprobs: logprobs,
        };
        let _ = em.send(Event::StepFinished {
            job: id,
            step: i,
            output: step.output.clone(),
            output_tokens: step.output_tokens,
            ms: step.ms,
        });
        steps.push(step);
    }
    let final_summary = steps.last().map(|s| s.output.clone()).unwrap_or_default();
    Ok(SummaryResult {
        case: job.case.case.clone(),
        method: job.method,
        blocks: seg.blocks.iter().map(|b| b.item_ids.clone()).collect(),
        steps,
        final_summary,
    })
}

const RECOMMEND_INSTRUCTION: &str = "You are a recommender. The preference summary describes the \
user's long-term interests; the recent items show short-term interests. Decide whether the user \
will interact with the candidate item. Answer yes or no.";
const CANDIDATE_MARK: &str = "\u{1}CANDIDATE\u{1}";

/// Builds the recommender prompt split around the candidate: (shared prefix, suffix per
/// candidate, target first).
pub fn recommend_prompt(
    lm: &dyn LanguageModel,
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    summary: Option<&str>,
    opts: &RecommendOptions,
) -> anyhow::Result<(String, Vec<String>)> {
    let render = |id: &str| {
        catalogue
            .get(id)
            .map(|it| text.render(it))
            .unwrap_or_else(|| format!("id: {id}"))
    };
    let mut user = format!("{RECOMMEND_INSTRUCTION}\n");
    if opts.use_summary {
        if let Some(s) = summary.filter(|s| !s.trim().is_empty()) {
            user.push_str(&format!("\nPreference summary:\n{}\n", s.trim()));
        }
    }
    if opts.use_recent && opts.recent > 0 {
        user.push_str("\nRecent items:\n");
        let start = case.history.len().saturating_sub(opts.recent);
        for id in &case.history[start..] {
            user.push_str(&format!("- {}\n", render(id)));
        }
    }
    user.push_str(&format!("\nCandidate item:\n{CANDIDATE_MARK}\n\nWill the user interact with the candidate? Answer yes or no."));
    let full = lm.render_chat(&[ChatMessage::user(user)])?;
    let (prefix, rest) = full
        .split_once(CANDIDATE_MARK)
        .context("chat template dropped the candidate placeholder")?;
    let suffixes = case
        .candidates()
        .iter()
        .map(|id| format!("{}{rest}", render(id)))
        .collect();
    Ok((prefix.to_string(), suffixes))
}

/// Scores a case's candidates with the LLM recommender: (record, shared prefix).
pub fn score(
    lm: &mut dyn LanguageModel,
    case: &Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    summary: Option<&str>,
    opts: &RecommendOptions,
) -> anyhow::Result<(ScoreRecord, String)> {
    let (prefix, suffixes) = recommend_prompt(lm, case, catalogue, text, summary, opts)?;
    let scores = lm
        .score_yes_no(&prefix, &suffixes)
        .with_context(|| format!("case {}: scoring {} candidates", case.case, suffixes.len()))?;
    let candidates = case
        .candidates()
        .iter()
        .zip(scores)
        .enumerate()
        .map(|(i, (id, s))| ScoredCandidate {
            id: id.to_string(),
            label: u8::from(i == 0),
            score: f64::from(s),
        })
        .collect();
    let record = ScoreRecord {
        case: case.case.clone(),
        scorer: format!("llm:{}", lm.identity().name),
        candidates,
    };
    Ok((record, prefix))
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
                resume: None,
            };
            Some(summarize(lm, id, &sj, cancel, em)?.final_summary)
        } else {
            None
        };
        if cancel.is_cancelled() {
            break;
        }
        let (rec, _) = score(
            lm,
            case,
            &job.catalogue,
            &job.text_template,
            summary.as_deref(),
            &job.options,
        )?;
        records.push(rec);
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
