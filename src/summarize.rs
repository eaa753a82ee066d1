//! The LLM-TRSR summarizers: hierarchical and recurrent, producing a [`SummaryTrace`].
//!
//! - Hierarchical: each block is summarized alone with the same instruction; then one
//!   call merges the ordered block summaries. When that merge prompt would not fit the
//!   model's context, the summaries are merged as a tree of smaller merges (consecutive
//!   groups that fit, then a merge of the group results, and so on); the trace's notes
//!   say so.
//! - Recurrent: block 1 is summarized; for each later block the prompt holds the previous
//!   summary and the new block and asks for an updated, self-contained summary; the last
//!   one is final.
//!
//! Every step keeps its prompt, output, token counts, time and token log-probabilities.
//! Step `i` samples with seed `sampling.seed + i`, so the same seed gives the same trace
//! (apart from the milliseconds), and re-running from a step reproduces later steps.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{Case, Catalogue, ItemTextTemplate};
use crate::lm::{
    CancelToken, ChatMessage, LanguageModel, ModelIdentity, SamplingParams, StopReason, TokenDelta,
};
use crate::prompt::Templates;
use crate::segment::{segment, BlockParams, SegItem};

/// How a history's blocks become one summary.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Each block alone, then a merge of the ordered block summaries.
    Hierarchical,
    /// Block 1, then an update with each next block.
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

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one summarizer step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Summarize one block alone.
    Block,
    /// Recurrent: previous summary + next block -> updated summary.
    Update,
    /// Hierarchical: merge ordered partial summaries.
    Merge,
}

/// One model call of a summarization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepTrace {
    pub kind: StepKind,
    /// Indices of the blocks this step covers (0-based, in order).
    pub blocks: Vec<usize>,
    /// The full prompt as sent (chat template applied).
    pub prompt: String,
    /// The generated text, trimmed.
    pub output: String,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    pub ms: f64,
    /// Natural-log probability of each generated token.
    #[serde(default)]
    pub token_logprobs: Vec<f32>,
}

/// Everything a summarization did, for one case and method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryTrace {
    pub case: String,
    pub method: Method,
    /// Item ids of each block, oldest block first.
    pub blocks: Vec<Vec<String>>,
    pub steps: Vec<StepTrace>,
    pub final_summary: String,
    pub model: ModelIdentity,
    /// Sampling settings; step `i` used seed `sampling.seed + i`.
    pub sampling: SamplingParams,
    pub block_params: BlockParams,
    /// What a reader should know: dropped items, merge trees, skipped merges.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The preset whose prompts the trace used (`reference`: the verbatim form).
    #[serde(default)]
    pub preset: crate::preset::Preset,
}

/// Progress of a summarization, streamed to the caller.
#[derive(Clone, Debug, PartialEq)]
pub enum SummarizeEvent {
    StepStarted {
        step: usize,
        kind: StepKind,
        blocks: Vec<usize>,
        prompt: String,
    },
    Token {
        step: usize,
        delta: TokenDelta,
    },
    StepFinished {
        step: usize,
        trace: StepTrace,
    },
}

/// What to summarize and how.
#[derive(Clone, Debug)]
pub struct SummarizeRequest<'a> {
    pub case: &'a Case,
    pub catalogue: &'a Catalogue,
    pub text_template: &'a ItemTextTemplate,
    pub block_params: BlockParams,
    pub method: Method,
    pub templates: &'a Templates,
    pub sampling: SamplingParams,
}

/// Returned (inside `anyhow::Error`) when a job stopped because its cancel token was set.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// True when `err` is (or wraps) [`Cancelled`].
pub fn is_cancelled(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<Cancelled>())
}

/// The sampling settings of step `step`: the base settings with seed `seed + step`.
pub fn step_sampling(base: &SamplingParams, step: usize) -> SamplingParams {
    let mut p = base.clone();
    p.seed = base.seed.wrapping_add(step as u64);
    p
}

/// The case's history as segmentation input, with notes on unknown items.
pub fn history_items<'a>(
    case: &'a Case,
    catalogue: &Catalogue,
    text: &ItemTextTemplate,
    notes: &mut Vec<String>,
) -> Vec<SegItem<'a>> {
    let mut items = Vec::with_capacity(case.history.len());
    let mut missing = Vec::new();
    for id in &case.history {
        match catalogue.get(id) {
            Some(item) => items.push(SegItem {
                id,
                text: text.render(item),
            }),
            None => missing.push(id.as_str()),
        }
    }
    if !missing.is_empty() {
        notes.push(format!(
            "{} history item(s) not in the catalogue were left out: {}",
            missing.len(),
            missing.join(", ")
        ));
    }
    items
}

/// The blocks of a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockPlan {
    /// Item ids per block, oldest block first.
    pub ids: Vec<Vec<String>>,
    /// Item texts per block.
    pub texts: Vec<Vec<String>>,
    /// Dropped or unknown items, oversized blocks.
    pub notes: Vec<String>,
}

/// Segments the request's history into blocks (the method's input).
pub fn plan_blocks(lm: &dyn LanguageModel, req: &SummarizeRequest) -> anyhow::Result<BlockPlan> {
    let mut notes = Vec::new();
    let items = history_items(req.case, req.catalogue, req.text_template, &mut notes);
    let texts: std::collections::HashMap<&str, &str> =
        items.iter().map(|i| (i.id, i.text.as_str())).collect();
    let first_err: std::cell::RefCell<Option<anyhow::Error>> = std::cell::RefCell::new(None);
    let count = |s: &str| match lm.count_tokens(s) {
        Ok(n) => n,
        Err(e) => {
            first_err.borrow_mut().get_or_insert(e);
            s.len() / 4
        }
    };
    let seg = segment(&items, &req.block_params, &count);
    if let Some(e) = first_err.into_inner() {
        return Err(e.context("counting tokens for segmentation"));
    }
    if seg.dropped_oldest > 0 {
        notes.push(format!(
            "the {} oldest history item(s) did not fit the blocks and were left out",
            seg.dropped_oldest
        ));
    }
    for (i, b) in seg.blocks.iter().enumerate() {
        if b.oversized {
            notes.push(format!(
                "block {} holds one item longer than the token budget",
                i + 1
            ));
        }
    }
    let ids: Vec<Vec<String>> = seg.blocks.iter().map(|b| b.item_ids.clone()).collect();
    let block_texts = ids
        .iter()
        .map(|b| {
            b.iter()
                .map(|id| texts.get(id.as_str()).copied().unwrap_or("").to_string())
                .collect()
        })
        .collect();
    Ok(BlockPlan {
        ids,
        texts: block_texts,
        notes,
    })
}

/// Summarizes one case.
pub fn summarize(
    lm: &mut dyn LanguageModel,
    req: &SummarizeRequest,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(SummarizeEvent),
) -> anyhow::Result<SummaryTrace> {
    run(lm, req, &[], 0, cancel, on_event)
}

/// Re-runs from step `from` on, keeping `prior.steps[..from]` as they are (their
/// outputs may have been edited by hand). Later steps are planned again, so an
/// edited summary flows into every step after it.
pub fn resume(
    lm: &mut dyn LanguageModel,
    req: &SummarizeRequest,
    prior: &SummaryTrace,
    from: usize,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(SummarizeEvent),
) -> anyhow::Result<SummaryTrace> {
    if from > prior.steps.len() {
        anyhow::bail!(
            "cannot resume case {} from step {from}: its trace has {} steps",
            prior.case,
            prior.steps.len()
        );
    }
    run(lm, req, &prior.steps, from, cancel, on_event)
}

/// Runs the method's steps. Step `i < keep` is taken from `prior` when it is the
/// step the plan asks for (same kind and blocks); otherwise it is computed.
fn run(
    lm: &mut dyn LanguageModel,
    req: &SummarizeRequest,
    prior: &[StepTrace],
    keep: usize,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(SummarizeEvent),
) -> anyhow::Result<SummaryTrace> {
    let BlockPlan {
        ids: blocks,
        texts: block_texts,
        mut notes,
    } = plan_blocks(&*lm, req)?;
    let mut runner = Runner {
        lm,
        req,
        prior,
        keep,
        cancel,
        on_event,
        steps: Vec::new(),
    };
    let final_summary = if blocks.is_empty() {
        notes.push("the history is empty: no summary".into());
        String::new()
    } else {
        match req.method {
            Method::Recurrent => {
                let mut summary = runner.step(
                    StepKind::Block,
                    vec![0],
                    req.templates.first_prompt(&block_texts[0]),
                )?;
                for (b, texts) in block_texts.iter().enumerate().skip(1) {
                    let prompt = req.templates.update_prompt(&summary, texts);
                    summary = runner.step(StepKind::Update, vec![b], prompt)?;
                }
                summary
            }
            Method::Hierarchical => {
                let mut pieces = Vec::with_capacity(block_texts.len());
                for (b, texts) in block_texts.iter().enumerate() {
                    let out =
                        runner.step(StepKind::Block, vec![b], req.templates.block_prompt(texts))?;
                    pieces.push(Piece {
                        text: out,
                        blocks: vec![b],
                    });
                }
                runner.merge_all(pieces, &mut notes)?
            }
        }
    };
    for (i, s) in runner.steps.iter().enumerate() {
        if s.output.is_empty() {
            notes.push(format!("step {} produced an empty output", i + 1));
        }
    }
    Ok(SummaryTrace {
        case: req.case.case.clone(),
        method: req.method,
        blocks,
        steps: runner.steps,
        final_summary,
        model: runner.lm.identity(),
        sampling: req.sampling.clone(),
        block_params: req.block_params.clone(),
        notes,
        preset: req.templates.preset(),
    })
}

/// A partial summary during merging, with the blocks it covers.
struct Piece {
    text: String,
    blocks: Vec<usize>,
}

struct Runner<'r, 'a> {
    lm: &'r mut dyn LanguageModel,
    req: &'r SummarizeRequest<'a>,
    prior: &'r [StepTrace],
    keep: usize,
    cancel: &'r CancelToken,
    on_event: &'r mut dyn FnMut(SummarizeEvent),
    steps: Vec<StepTrace>,
}

impl Runner<'_, '_> {
    fn render(&self, user: String) -> anyhow::Result<String> {
        self.req.templates.render(&*self.lm, user)
    }

    /// Whether a rendered prompt plus the generation fits the context.
    fn fits(&self, prompt: &str) -> anyhow::Result<(bool, usize)> {
        fits(&*self.lm, &self.req.sampling, prompt)
    }

    /// Runs (or keeps) one step and returns its output.
    fn step(&mut self, kind: StepKind, blocks: Vec<usize>, user: String) -> anyhow::Result<String> {
        let idx = self.steps.len();
        if idx < self.keep {
            if let Some(p) = self.prior.get(idx) {
                if p.kind == kind && p.blocks == blocks {
                    self.steps.push(p.clone());
                    return Ok(p.output.clone());
                }
            }
        }
        if self.cancel.is_cancelled() {
            return Err(Cancelled.into());
        }
        let prompt = self.render(user)?;
        let n = check_fits(&*self.lm, self.req, kind, idx, &prompt)?;
        (self.on_event)(SummarizeEvent::StepStarted {
            step: idx,
            kind,
            blocks: blocks.clone(),
            prompt: prompt.clone(),
        });
        let mut params = step_sampling(&self.req.sampling, idx);
        params.max_new_tokens = params.new_tokens_for(n);
        let mut logprobs = Vec::new();
        let start = Instant::now();
        let on_event = &mut *self.on_event;
        let generated =
            self.lm
                .generate(&prompt, &params, self.cancel, &mut |d: &TokenDelta| {
                    logprobs.push(d.logprob);
                    on_event(SummarizeEvent::Token {
                        step: idx,
                        delta: d.clone(),
                    });
                })?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if generated.stop == StopReason::Cancelled || self.cancel.is_cancelled() {
            return Err(Cancelled.into());
        }
        let trace = StepTrace {
            kind,
            blocks,
            prompt,
            output: self.req.templates.keep_output(&generated.text),
            prompt_tokens: generated.prompt_tokens,
            output_tokens: generated.new_tokens,
            ms,
            token_logprobs: logprobs,
        };
        (self.on_event)(SummarizeEvent::StepFinished {
            step: idx,
            trace: trace.clone(),
        });
        let out = trace.output.clone();
        self.steps.push(trace);
        Ok(out)
    }

    /// Merges the ordered pieces into one summary: one merge when it fits, else a
    /// tree of merges over consecutive groups that fit.
    fn merge_all(
        &mut self,
        mut pieces: Vec<Piece>,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<String> {
        if pieces.len() == 1 {
            if self.req.templates.form == crate::prompt::PromptForm::Verbatim {
                // The reference merges even a single block summary.
                let piece = pieces.remove(0);
                return self.step(
                    StepKind::Merge,
                    piece.blocks,
                    self.req.templates.merge_prompt(&[piece.text]),
                );
            }
            notes.push("one block only: its summary is final, no merge".into());
            return Ok(pieces.remove(0).text);
        }
        let mut merges = 0usize;
        let mut rounds = 0usize;
        loop {
            let groups = self.group_pieces(&pieces)?;
            let one_call = groups.len() == 1;
            if !one_call && groups.iter().all(|g| g.len() == 1) {
                anyhow::bail!(
                    "case {}: not even two partial summaries fit one merge prompt in the model's \
                     context of {} tokens (lower max_new_tokens or use a model with a longer context)",
                    self.req.case.case,
                    self.lm.context_len()
                );
            }
            rounds += 1;
            let mut next = Vec::with_capacity(groups.len());
            let mut it = pieces.into_iter();
            for g in groups {
                let group: Vec<Piece> = it.by_ref().take(g.len()).collect();
                if group.len() == 1 {
                    next.extend(group);
                    continue;
                }
                let texts: Vec<String> = group.iter().map(|p| p.text.clone()).collect();
                let blocks: Vec<usize> = group.iter().flat_map(|p| p.blocks.clone()).collect();
                let out = self.step(
                    StepKind::Merge,
                    blocks.clone(),
                    self.req.templates.merge_prompt(&texts),
                )?;
                merges += 1;
                next.push(Piece { text: out, blocks });
            }
            pieces = next;
            if pieces.len() == 1 {
                break;
            }
        }
        if merges > 1 {
            notes.push(format!(
                "the merge prompt did not fit the context of {} tokens: merged as a tree of {merges} \
                 merges in {rounds} rounds",
                self.lm.context_len()
            ));
        }
        Ok(pieces.remove(0).text)
    }

    /// Splits the pieces into consecutive groups whose merge prompt fits (greedy).
    /// Returns the group sizes' placeholder vectors (indices).
    fn group_pieces(&self, pieces: &[Piece]) -> anyhow::Result<Vec<Vec<usize>>> {
        let fits_range = |a: usize, b: usize| -> anyhow::Result<bool> {
            let texts: Vec<String> = pieces[a..b].iter().map(|p| p.text.clone()).collect();
            let prompt = self.render(self.req.templates.merge_prompt(&texts))?;
            Ok(self.fits(&prompt)?.0)
        };
        if fits_range(0, pieces.len())? {
            return Ok(vec![(0..pieces.len()).collect()]);
        }
        let mut groups = Vec::new();
        let mut start = 0;
        while start < pieces.len() {
            let mut end = start + 1;
            while end < pieces.len() && fits_range(start, end + 1)? {
                end += 1;
            }
            groups.push((start..end).collect());
            start = end;
        }
        Ok(groups)
    }
}

/// Whether a rendered prompt plus the generation it asks for fits the model's context;
/// also the prompt's length in tokens.
fn fits(
    lm: &dyn LanguageModel,
    sampling: &SamplingParams,
    prompt: &str,
) -> anyhow::Result<(bool, usize)> {
    let n = lm.count_tokens(prompt)?;
    let need = n + sampling.new_tokens_for(n).max(1);
    Ok((need <= lm.context_len(), n))
}

/// The prompt's length in tokens, or an error that names the case, the step and the
/// model (a server's name carries its URL) when it does not fit the context.
fn check_fits(
    lm: &dyn LanguageModel,
    req: &SummarizeRequest,
    kind: StepKind,
    idx: usize,
    prompt: &str,
) -> anyhow::Result<usize> {
    let (ok, n) = fits(lm, &req.sampling, prompt)?;
    if !ok {
        anyhow::bail!(
            "the {} prompt of step {} has {n} tokens; with {} new tokens it does not fit the \
             context of {} tokens of {} (use smaller blocks, a token budget, or a model or server \
             with a longer context)",
            kind_name(kind),
            idx + 1,
            req.sampling.max_new_tokens,
            lm.context_len(),
            lm.identity().name
        );
    }
    Ok(n)
}

/// Checks before a batch starts that the request's first step fits the model's
/// context (for the hierarchical method: the block with the longest text), so a
/// context that is too small for the block size stops the run with one error
/// instead of failing every case. Later steps depend on generated text and are
/// checked as they run.
pub fn preflight(lm: &dyn LanguageModel, req: &SummarizeRequest) -> anyhow::Result<()> {
    let plan = plan_blocks(lm, req)?;
    let text_len = |b: &Vec<String>| b.iter().map(String::len).sum::<usize>();
    let (user, block) = match req.method {
        Method::Recurrent => match plan.texts.first() {
            Some(first) => (req.templates.first_prompt(first), 0),
            None => return Ok(()),
        },
        Method::Hierarchical => {
            match plan
                .texts
                .iter()
                .enumerate()
                .max_by_key(|(_, b)| text_len(b))
            {
                Some((i, b)) => (req.templates.block_prompt(b), i),
                None => return Ok(()),
            }
        }
    };
    let prompt = req.templates.render(lm, user)?;
    check_fits(lm, req, StepKind::Block, block, &prompt)
        .map(|_| ())
        .map_err(|e| e.context(format!("case {}", req.case.case)))
}

fn kind_name(k: StepKind) -> &'static str {
    match k {
        StepKind::Block => "block",
        StepKind::Update => "update",
        StepKind::Merge => "merge",
    }
}

/// The `extra` part of `lm`'s cache keys: [`prompt_form_tag`] and the engine's
/// [`LanguageModel::numerics`], the non-empty ones joined by `+` (`""` for a chat model on
/// the reference arithmetic, which keeps [`crate::cache::trace_key`]'s entries).
pub fn cache_tag(lm: &dyn LanguageModel) -> anyhow::Result<String> {
    let form = prompt_form_tag(lm)?;
    let numerics = lm.numerics();
    Ok([form, numerics.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("+"))
}

/// A tag for how the model renders prompts, for cache keys: `""` with a chat
/// template (what [`crate::cache::trace_key`] assumes, so the window and the CLI share
/// entries), `"raw"` when it renders the plain `### User:` form instead.
pub fn prompt_form_tag(lm: &dyn LanguageModel) -> anyhow::Result<&'static str> {
    let probe = lm.render_chat(&[ChatMessage::user("U")])?;
    Ok(if probe.contains("### User:") {
        "raw"
    } else {
        ""
    })
}
