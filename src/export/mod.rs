//! Export: supervised fine-tuning (SFT) data from curated projects, and result
//! tables (scores, summaries, metrics).
//!
//! SFT data is TRL-ready JSONL in two forms: prompt/completion
//! (`{"prompt": ..., "completion": ..., <provenance>}`) and chat messages
//! (`{"messages": [{"role": "user", ...}, {"role": "assistant", ...}], <provenance>}`).
//! Prompt wording is not ours to decide here: callers pass a [`PromptRenderer`]
//! (the prompt templates): [`TemplateRenderer`] renders the workbench's real
//! templates ([`crate::prompt::Templates`]); [`PlainRenderer`] is a plain built-in one.

mod project_sft;
pub use project_sft::{export_templates, sft_export, write_out, NoDataset, SftRequest};

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::curate::{CurateError, Curation, Key, Scope, Status, StepKind, Target};
use crate::data::{Case, Catalogue, ItemTextTemplate};
use crate::metrics::ScoreRecord;

/// What a summarizer step prompt is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummarizerPromptInput<'a> {
    pub kind: StepKind,
    /// The block's items as rendered text, oldest first (empty for a merge).
    pub block_items: &'a [String],
    /// An update's previous summary, or a merge's block summaries in order.
    pub previous: &'a [String],
    /// A block step of a recurrent summary (its first step), whose template may differ
    /// from the hierarchical block template ([`crate::prompt::Templates::summarize_first`]).
    pub recurrent: bool,
}

/// What a recommender prompt is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecommenderPromptInput<'a> {
    /// The user's preference summary (long-term interest).
    pub summary: &'a str,
    /// The most recent history items as rendered text, oldest first (short-term interest).
    pub recent_items: &'a [String],
    /// The candidate item as rendered text.
    pub candidate: &'a str,
}

/// Renders prompts for export (the user turn; chat templates are the trainer's job).
pub trait PromptRenderer {
    fn summarizer(&self, input: &SummarizerPromptInput<'_>) -> String;
    fn recommender(&self, input: &RecommenderPromptInput<'_>) -> String;
}

/// A plain built-in renderer with the paper's sections. The workbench's prompt
/// templates replace it where they are wired in.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainRenderer;

fn numbered(items: &[String]) -> String {
    items
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{}. {t}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

impl PromptRenderer for PlainRenderer {
    fn summarizer(&self, input: &SummarizerPromptInput<'_>) -> String {
        match input.kind {
            StepKind::Block => format!(
                "Summarize the user's preferences from the items they engaged with, in order.\n\n\
                 Items:\n{}\n\nSummary:",
                numbered(input.block_items)
            ),
            StepKind::Update => format!(
                "Here is a summary of the user's preferences so far, and the items they engaged \
                 with next. Write an updated, self-contained summary of the user's preferences.\n\n\
                 Previous summary:\n{}\n\nNew items:\n{}\n\nUpdated summary:",
                input.previous.join("\n"),
                numbered(input.block_items)
            ),
            StepKind::Merge => format!(
                "Here are summaries of the user's preferences over consecutive periods, oldest \
                 first. Merge them into one summary of the user's preferences.\n\n{}\n\nSummary:",
                numbered(input.previous)
            ),
        }
    }

    fn recommender(&self, input: &RecommenderPromptInput<'_>) -> String {
        format!(
            "The user's preference summary describes their long-term interests; their most \
             recent items describe their short-term interests. Will the user engage with the \
             candidate item? Answer yes or no.\n\n\
             ### Preference summary\n{}\n\n### Recent items\n{}\n\n### Candidate item\n{}",
            input.summary,
            numbered(input.recent_items),
            input.candidate
        )
    }
}

/// Renders export prompts with the workbench's prompt templates, exactly as the
/// summarizer and the recommender build their user messages (block / update / merge
/// templates; the recommend template with the summary and recent-items sections on,
/// the full-history section off).
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateRenderer {
    pub templates: crate::prompt::Templates,
}

impl TemplateRenderer {
    pub fn new(templates: crate::prompt::Templates) -> Self {
        Self { templates }
    }
}

impl PromptRenderer for TemplateRenderer {
    fn summarizer(&self, input: &SummarizerPromptInput<'_>) -> String {
        let t = &self.templates;
        match input.kind {
            StepKind::Block if input.recurrent => t.first_prompt(input.block_items),
            StepKind::Block => t.block_prompt(input.block_items),
            StepKind::Update => {
                let previous = input.previous.join("\n");
                t.update_prompt(&previous, input.block_items)
            }
            StepKind::Merge => t.merge_prompt(input.previous),
        }
    }

    fn recommender(&self, input: &RecommenderPromptInput<'_>) -> String {
        let t = &self.templates;
        let recent = match t.form {
            // The reference writes `NULL` for an empty item list.
            crate::prompt::PromptForm::Verbatim if input.recent_items.is_empty() => {
                Some("NULL".to_string())
            }
            _ => (!input.recent_items.is_empty()).then(|| t.item_list(input.recent_items)),
        };
        crate::prompt::fill(
            &t.recommend,
            &[
                ("summary", Some(input.summary)),
                ("recent", recent.as_deref()),
                ("history", None),
                ("candidate", Some(input.candidate)),
                ("yes", Some(&t.yes)),
                ("no", Some(&t.no)),
            ],
        )
    }
}

/// One SFT example with its provenance fields.
#[derive(Clone, Debug, PartialEq)]
pub struct SftExample {
    pub prompt: String,
    pub completion: String,
    /// Kept beside the example: case, method, step, status, edited, model text, ...
    pub provenance: Map<String, Value>,
}

/// The JSONL shape of SFT examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SftForm {
    /// `{"prompt": ..., "completion": ..., ...}`
    PromptCompletion,
    /// `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}], ...}`
    Messages,
}

/// Which examples to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// Also export summaries nobody reviewed (rejected and flagged ones never are).
    pub include_unreviewed: bool,
    /// Only these summarization methods (all when empty).
    pub methods: Vec<String>,
    /// Seed for choosing each case's negative (recommender data).
    pub seed: u64,
    /// How many most recent history items go into a recommender prompt.
    pub recent_items: usize,
    /// How items are rendered into prompt text.
    pub item_text: ItemTextTemplate,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            include_unreviewed: false,
            methods: Vec::new(),
            seed: 42,
            recent_items: 5,
            item_text: ItemTextTemplate::default(),
        }
    }
}

/// What an export wrote and what it left out, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub examples: usize,
    pub skipped: BTreeMap<String, usize>,
}

impl ExportReport {
    fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
    }

    /// `12 examples (skipped: 3 rejected, 1 stale)`.
    pub fn summary(&self) -> String {
        if self.skipped.is_empty() {
            return format!("{} examples", self.examples);
        }
        let parts: Vec<String> = self
            .skipped
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        format!("{} examples (skipped: {})", self.examples, parts.join(", "))
    }
}

/// Export errors a user can cause.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("case `{case}` is in the project but not in the dataset (is the project's dataset the one it was made with?)")]
    UnknownCase { case: String },
    #[error("case `{case}`: item `{item}` is not in the dataset's items")]
    UnknownItem { case: String, item: String },
    #[error(transparent)]
    Curate(#[from] CurateError),
    #[error("could not write the export: {0}")]
    Io(#[from] io::Error),
}

fn included(
    curation: &Curation,
    key: &Key,
    opts: &ExportOptions,
    report: &mut ExportReport,
) -> bool {
    if curation.review_outdated(key) {
        // Reviewed against a model text that a re-run has since replaced.
        if opts.include_unreviewed && curation.status(key) != Status::Rejected {
            return true;
        }
        report.skip("changed since review");
        return false;
    }
    match curation.status(key) {
        Status::Accepted => true,
        Status::Unreviewed if opts.include_unreviewed => true,
        s => {
            report.skip(s.name());
            false
        }
    }
}

fn method_wanted(method: &str, opts: &ExportOptions) -> bool {
    opts.methods.is_empty() || opts.methods.iter().any(|m| m == method)
}

fn render_item(
    catalogue: &Catalogue,
    tpl: &ItemTextTemplate,
    case: &str,
    id: &str,
) -> Result<String, ExportError> {
    catalogue
        .get(id)
        .map(|item| tpl.render(item))
        .ok_or_else(|| ExportError::UnknownItem {
            case: case.to_string(),
            item: id.to_string(),
        })
}

/// Picks a case's negative: a function of (seed, case id) only, so the choice does
/// not depend on export order or on which other cases are exported.
fn pick_negative(case: &Case, seed: u64) -> Option<&str> {
    if case.negatives.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(case.case.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    let i = (u64::from_le_bytes(b) % case.negatives.len() as u64) as usize;
    Some(&case.negatives[i])
}

/// Summary provenance shared by both kinds of export.
fn provenance(curation: &Curation, key: &Key, kind: &str, step: usize) -> Map<String, Value> {
    let ann = curation.annotation(key);
    let model_text = curation
        .model_text(key)
        .map(str::to_string)
        .unwrap_or_default();
    let model = curation
        .trace(&key.case, &key.method)
        .and_then(|t| t.model.clone());
    let mut m = Map::new();
    m.insert("case".into(), key.case.clone().into());
    m.insert("method".into(), key.method.clone().into());
    m.insert("kind".into(), kind.into());
    m.insert("step".into(), step.into());
    m.insert("status".into(), curation.status(key).name().into());
    m.insert("edited".into(), ann.is_some_and(|a| a.is_edited()).into());
    m.insert(
        "model_text".into(),
        ann.map(|a| a.model_text.clone())
            .unwrap_or(model_text)
            .into(),
    );
    m.insert(
        "notes".into(),
        ann.map(|a| a.notes.clone()).unwrap_or_default().into(),
    );
    m.insert(
        "annotated_at_ms".into(),
        ann.map(|a| Value::from(a.updated_at_ms))
            .unwrap_or(Value::Null),
    );
    m.insert(
        "model".into(),
        model.map(Value::from).unwrap_or(Value::Null),
    );
    m
}

/// Is the text that stands at `key` out of date (from a stale step, not edited by hand)?
fn stale_unedited(curation: &Curation, key: &Key) -> Result<bool, ExportError> {
    if curation.annotation(key).is_some_and(|a| a.is_edited()) {
        return Ok(false);
    }
    let s = curation.staleness(&key.case, &key.method)?;
    Ok(match key.target {
        Target::Step(i) => s.steps.contains(&i),
        Target::Final => s.final_stale,
    })
}

/// Recommender SFT data in the paper's form: per curated case and method, one
/// positive (the target, `yes`) and one negative (`no`), each prompted with the
/// final summary that stands, the most recent history items and the candidate.
/// The final summary's status decides inclusion.
pub fn recommender_examples(
    curation: &Curation,
    cases: &[Case],
    catalogue: &Catalogue,
    renderer: &dyn PromptRenderer,
    opts: &ExportOptions,
) -> Result<(Vec<SftExample>, ExportReport), ExportError> {
    let by_id: BTreeMap<&str, &Case> = cases.iter().map(|c| (c.case.as_str(), c)).collect();
    let mut out = Vec::new();
    let mut report = ExportReport::default();
    for key in curation.keys(Scope::Finals) {
        if !method_wanted(&key.method, opts) {
            continue;
        }
        if !included(curation, &key, opts, &mut report) {
            continue;
        }
        if stale_unedited(curation, &key)? {
            report.skip("stale (re-run first)");
            continue;
        }
        let case = *by_id
            .get(key.case.as_str())
            .ok_or_else(|| ExportError::UnknownCase {
                case: key.case.clone(),
            })?;
        let Some(negative) = pick_negative(case, opts.seed) else {
            report.skip("without negatives");
            continue;
        };
        let summary = curation.final_text(&key.case, &key.method)?;
        let start = case.history.len().saturating_sub(opts.recent_items);
        let recent = case.history[start..]
            .iter()
            .map(|id| render_item(catalogue, &opts.item_text, &case.case, id))
            .collect::<Result<Vec<_>, _>>()?;
        let steps = curation
            .trace(&key.case, &key.method)
            .map_or(0, |t| t.steps.len());
        for (candidate, label) in [(case.target.as_str(), 1u8), (negative, 0u8)] {
            let text = render_item(catalogue, &opts.item_text, &case.case, candidate)?;
            let prompt = renderer.recommender(&RecommenderPromptInput {
                summary,
                recent_items: &recent,
                candidate: &text,
            });
            let mut prov = provenance(curation, &key, "final", steps.saturating_sub(1));
            prov.insert("candidate".into(), candidate.into());
            prov.insert("label".into(), label.into());
            out.push(SftExample {
                prompt,
                completion: if label == 1 { "yes" } else { "no" }.to_string(),
                provenance: prov,
            });
            report.examples += 1;
        }
    }
    Ok((out, report))
}

/// Summarizer SFT data: per curated step (and final summary), the step's prompt
/// built from the texts that stand for its inputs -> the accepted or edited text.
/// A final summary is the last step's output, so when the final is exported the
/// last step is not exported again.
pub fn summarizer_examples(
    curation: &Curation,
    cases: &[Case],
    catalogue: &Catalogue,
    renderer: &dyn PromptRenderer,
    opts: &ExportOptions,
) -> Result<(Vec<SftExample>, ExportReport), ExportError> {
    let by_id: BTreeMap<&str, &Case> = cases.iter().map(|c| (c.case.as_str(), c)).collect();
    let mut out = Vec::new();
    let mut report = ExportReport::default();
    // Decide inclusion first, so the final can suppress its duplicate last step.
    let mut chosen: Vec<Key> = Vec::new();
    for key in curation.keys(Scope::All) {
        if method_wanted(&key.method, opts) && included(curation, &key, opts, &mut report) {
            chosen.push(key);
        }
    }
    let finals: std::collections::BTreeSet<(String, String)> = chosen
        .iter()
        .filter(|k| k.target == Target::Final)
        .map(|k| (k.case.clone(), k.method.clone()))
        .collect();
    for key in chosen {
        let Some(trace) = curation.trace(&key.case, &key.method) else {
            continue;
        };
        let last = trace.steps.len() - 1;
        let step = match key.target {
            Target::Step(i) => {
                if i == last && finals.contains(&(key.case.clone(), key.method.clone())) {
                    continue;
                }
                i
            }
            Target::Final => last,
        };
        if stale_unedited(curation, &key)? {
            report.skip("stale (re-run first)");
            continue;
        }
        if !by_id.contains_key(key.case.as_str()) {
            return Err(ExportError::UnknownCase { case: key.case });
        }
        let block_items = trace.steps[step]
            .item_ids
            .iter()
            .map(|id| render_item(catalogue, &opts.item_text, &key.case, id))
            .collect::<Result<Vec<_>, _>>()?;
        let previous = curation.step_inputs(&key.case, &key.method, step)?;
        let kind = trace.steps[step].kind;
        let prompt = renderer.summarizer(&SummarizerPromptInput {
            kind,
            block_items: &block_items,
            previous: &previous,
            recurrent: key.method == crate::summarize::Method::Recurrent.name(),
        });
        let completion = curation.effective_text(&key)?.to_string();
        let kind_name = match key.target {
            Target::Final => "final",
            Target::Step(_) => kind.name(),
        };
        out.push(SftExample {
            prompt,
            completion,
            provenance: provenance(curation, &key, kind_name, step),
        });
        report.examples += 1;
    }
    Ok((out, report))
}

/// One example as its JSONL object.
pub fn sft_json(example: &SftExample, form: SftForm) -> Value {
    let mut m = Map::new();
    match form {
        SftForm::PromptCompletion => {
            m.insert("prompt".into(), example.prompt.clone().into());
            m.insert("completion".into(), example.completion.clone().into());
        }
        SftForm::Messages => {
            m.insert(
                "messages".into(),
                json!([
                    {"role": "user", "content": example.prompt},
                    {"role": "assistant", "content": example.completion},
                ]),
            );
        }
    }
    for (k, v) in &example.provenance {
        m.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(m)
}

/// Writes SFT examples as JSONL.
pub fn write_sft_jsonl(
    mut w: impl Write,
    examples: &[SftExample],
    form: SftForm,
) -> io::Result<()> {
    for ex in examples {
        serde_json::to_writer(&mut w, &sft_json(ex, form))?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

// ----- result tables ---------------------------------------------------------

/// A plain table: a header and rows of cells, rendered as aligned text,
/// Markdown or CSV.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// How a [`Table`] is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TableFormat {
    /// Aligned columns for a terminal.
    Table,
    /// A GitHub-flavoured Markdown table.
    Markdown,
    Csv,
}

impl Table {
    pub fn new(header: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self, format: TableFormat) -> String {
        match format {
            TableFormat::Table => self.to_text(),
            TableFormat::Markdown => self.to_markdown(),
            TableFormat::Csv => self.to_csv(),
        }
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                if i < w.len() {
                    w[i] = w[i].max(c.chars().count());
                } else {
                    w.push(c.chars().count());
                }
            }
        }
        w
    }

    /// Aligned text: first column left-aligned, the others right-aligned.
    pub fn to_text(&self) -> String {
        let w = self.widths();
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        format!("{c:<width$}", width = w[i])
                    } else {
                        format!("{c:>width$}", width = w[i])
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        let rule: Vec<String> = w.iter().map(|&n| "-".repeat(n)).collect();
        out.push_str(&rule.join("  "));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let esc = |c: &String| c.replace('|', "\\|").replace('\n', " ");
        let line = |cells: &[String]| {
            format!(
                "| {} |",
                cells.iter().map(esc).collect::<Vec<_>>().join(" | ")
            )
        };
        let mut out = line(&self.header);
        out.push('\n');
        let align: Vec<&str> = (0..self.header.len())
            .map(|i| if i == 0 { "---" } else { "---:" })
            .collect();
        out.push_str(&format!("| {} |\n", align.join(" | ")));
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }

    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        // Writing to a Vec cannot fail; a failure would only drop rows, never panic.
        let _ = w.write_record(&self.header);
        for row in &self.rows {
            let _ = w.write_record(row);
        }
        let bytes = w.into_inner().unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Scores as one row per candidate: case, scorer, candidate, label, score, rank
/// (1 = highest score; tied candidates share the best rank among them).
pub fn scores_table(records: &[ScoreRecord]) -> Table {
    let mut t = Table::new(["case", "scorer", "candidate", "label", "score", "rank"]);
    for r in records {
        for c in &r.candidates {
            let rank = 1 + r.candidates.iter().filter(|o| o.score > c.score).count();
            t.push(vec![
                r.case.clone(),
                r.scorer.clone(),
                c.id.clone(),
                c.label.to_string(),
                c.score.to_string(),
                rank.to_string(),
            ]);
        }
    }
    t
}

/// Writes score records as JSONL (the `scores.jsonl` format).
pub fn write_scores_jsonl(mut w: impl Write, records: &[ScoreRecord]) -> io::Result<()> {
    for r in records {
        serde_json::to_writer(&mut w, r)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// One summary row per (case, method) of a project's curation.
fn summary_rows(curation: &Curation) -> Vec<Map<String, Value>> {
    let mut rows = Vec::new();
    for (case, method, trace) in curation.traces() {
        let key = Key::final_of(case, method);
        let stale = curation
            .staleness(case, method)
            .map(|s| !s.is_fresh())
            .unwrap_or(false);
        let mut m = Map::new();
        m.insert("case".into(), case.into());
        m.insert("method".into(), method.into());
        m.insert(
            "model".into(),
            trace.model.clone().map(Value::from).unwrap_or(Value::Null),
        );
        m.insert("steps".into(), trace.steps.len().into());
        m.insert("status".into(), curation.status(&key).name().into());
        m.insert(
            "edited".into(),
            curation
                .annotation(&key)
                .is_some_and(|a| a.is_edited())
                .into(),
        );
        m.insert("stale".into(), stale.into());
        m.insert(
            "summary".into(),
            curation.final_text(case, method).unwrap_or_default().into(),
        );
        m.insert(
            "model_summary".into(),
            curation.model_text(&key).unwrap_or_default().into(),
        );
        rows.push(m);
    }
    rows
}

/// Final summaries as JSONL: case, method, model, steps, status, edited, stale,
/// summary (the text that stands), model_summary.
pub fn write_summaries_jsonl(mut w: impl Write, curation: &Curation) -> io::Result<()> {
    for row in summary_rows(curation) {
        serde_json::to_writer(&mut w, &row)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// Final summaries as a table (same columns as the JSONL).
pub fn summaries_table(curation: &Curation) -> Table {
    let rows = summary_rows(curation);
    let header = [
        "case",
        "method",
        "model",
        "steps",
        "status",
        "edited",
        "stale",
        "summary",
        "model_summary",
    ];
    let mut t = Table::new(header);
    for row in rows {
        t.push(
            header
                .iter()
                .map(|h| match row.get(*h) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(v) => v.to_string(),
                })
                .collect(),
        );
    }
    t
}

/// Metrics per scorer as a table: scorer, then `recall@K`, `mrr@K`, `ndcg@K` per K,
/// `auc`, `cases`. Values with 4 decimals; an undefined AUC is empty.
pub fn metrics_table(summaries: &[(String, crate::metrics::Summary)], ks: &[usize]) -> Table {
    let names = crate::metrics::metric_names(ks);
    let mut header = vec!["scorer".to_string()];
    header.extend(names.iter().cloned());
    header.push("cases".into());
    let mut t = Table {
        header,
        rows: Vec::new(),
    };
    for (scorer, s) in summaries {
        let mut row = vec![scorer.clone()];
        for n in &names {
            row.push(
                s.metrics
                    .get(n)
                    .map_or(String::new(), |v| format!("{v:.4}")),
            );
        }
        row.push(s.cases.to_string());
        t.push(row);
    }
    t
}

/// Metrics per scorer as one JSON object:
/// `{"<scorer>": {"recall@3": ..., "mrr@3": ..., "ndcg@3": ..., ..., "auc": ..., "cases": N}}`
/// (`auc` is null when no case had a negative).
pub fn metrics_json(summaries: &[(String, crate::metrics::Summary)], ks: &[usize]) -> Value {
    let mut all = Map::new();
    for (scorer, s) in summaries {
        let mut m = Map::new();
        for n in crate::metrics::metric_names(ks) {
            let v = s.metrics.get(&n).copied().map_or(Value::Null, Value::from);
            m.insert(n, v);
        }
        m.insert("cases".into(), s.cases.into());
        all.insert(scorer.clone(), Value::Object(m));
    }
    Value::Object(all)
}
