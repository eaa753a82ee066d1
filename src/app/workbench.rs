//! The window's long-lived runtime: worker handle, loaded dataset, and the views of jobs.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use super::background::{Background, TaskOutput};
use super::notices::Notice;
use super::{Command, Settings};
use crate::data::Case;
use crate::lm::TokenDelta;
use crate::metrics::ScoreRecord;
use crate::segment::{BlockParams, Segmentation};
use crate::worker::dataset::{spawn_load, DatasetLoad, LoadMsg, LoadedData};
use crate::worker::jobs::{
    segment_case, BatchJob, JobOutput, Method, RecommendOptions, ScoreJob, SummarizeJob,
    SummaryResult,
};
use crate::worker::{Event, JobId, JobSpec, ModelSpec, ModelSummary, StepKind, Wake, Worker};

/// Where the model stands.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelStatus {
    None,
    Loading(ModelSpec),
    Loaded(ModelSummary),
    Failed(String),
}

/// Where a step's text came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepSource {
    /// Generated now, streamed token by token.
    Live,
    /// Taken from the results cache (on disk, or the window's memory of earlier runs).
    Cache,
    /// Kept from the earlier run that a re-run of a later step resumes.
    Kept,
}

impl StepSource {
    /// How the step card names it.
    pub fn label(self) -> &'static str {
        match self {
            StepSource::Live => "live",
            StepSource::Cache => "from cache",
            StepSource::Kept => "kept from the earlier run",
        }
    }
}

/// One summarization step as it streams.
#[derive(Clone, Debug)]
pub struct StepView {
    pub kind: StepKind,
    pub blocks: Vec<usize>,
    pub prompt: String,
    pub prompt_tokens: usize,
    /// Streamed tokens: (text, logprob); empty for a step from the cache.
    pub tokens: Vec<(String, f32)>,
    /// Generated tokens as the trace counts them (also for a step from the cache).
    pub output_tokens: usize,
    pub source: StepSource,
    pub text: String,
    pub done: bool,
    pub ms: f64,
    pub started: Instant,
}

/// A summary run (live, finished, or taken from the cache of earlier runs).
#[derive(Clone, Debug)]
pub struct SummaryView {
    pub job: Option<JobId>,
    pub case: String,
    pub method: Method,
    pub block_params: BlockParams,
    pub steps: Vec<StepView>,
    pub result: Option<SummaryResult>,
    pub error: Option<String>,
    pub cancelled: bool,
    pub from_cache: bool,
    pub started: Instant,
    pub streamed_tokens: usize,
    /// When the first token arrived (decode speed is measured from here).
    pub first_token_at: Option<Instant>,
    pub finished_at: Option<Instant>,
}

impl SummaryView {
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// Decode speed over the run so far.
    pub fn tokens_per_sec(&self) -> Option<f64> {
        if self.streamed_tokens == 0 {
            return None;
        }
        let end = self.finished_at.unwrap_or_else(Instant::now);
        let secs = end
            .duration_since(self.first_token_at.unwrap_or(self.started))
            .as_secs_f64();
        (secs > 0.05).then(|| self.streamed_tokens as f64 / secs)
    }
}

/// A ranking of one case.
#[derive(Clone, Debug)]
pub struct RankView {
    pub job: Option<JobId>,
    pub case: String,
    pub options: RecommendOptions,
    pub used_summary: bool,
    pub record: Option<ScoreRecord>,
    pub prompt: String,
    pub error: Option<String>,
    /// The ranking before the last re-score of the same case (to show the change).
    pub previous: Option<(RecommendOptions, usize)>,
}

impl RankView {
    /// 1-based rank of the target (pessimistic ties), if scored.
    pub fn target_rank(&self) -> Option<usize> {
        self.record.as_ref().map(target_rank)
    }
}

/// 1-based rank of the positive in a record (a tied negative ranks above it).
pub fn target_rank(rec: &ScoreRecord) -> usize {
    let Some(t) = rec.candidates.iter().find(|c| c.label > 0) else {
        return rec.candidates.len();
    };
    1 + rec
        .candidates
        .iter()
        .filter(|c| c.label == 0 && c.score >= t.score)
        .count()
}

/// A batch evaluation run from the window.
#[derive(Clone, Debug, Default)]
pub struct BatchView {
    pub job: Option<JobId>,
    pub done: usize,
    pub total: usize,
    pub message: String,
    pub records: Vec<ScoreRecord>,
    pub error: Option<String>,
    /// Set when a cancelled run kept the cases it finished (its records are those).
    pub partial: Option<String>,
}

/// The window's runtime.
pub struct Workbench {
    pub worker: Worker,
    pub wake: Wake,
    pub model: ModelStatus,
    pub data: Option<LoadedData>,
    pub loading: Option<DatasetLoad>,
    pub load_progress: (String, f32),
    pub load_error: Option<String>,
    pub selected: Option<usize>,
    pub summary: Option<SummaryView>,
    /// Finished summaries by (case, method, block params), reused instead of recomputed.
    pub traces: HashMap<(String, Method, String), SummaryResult>,
    pub rank: Option<RankView>,
    pub batch: BatchView,
    /// Token counts with the loaded model's tokenizer.
    pub token_counts: HashMap<String, usize>,
    counts_requested: HashSet<String>,
    count_jobs: HashSet<JobId>,
    /// Messages to the user, newest last (the status bar shows the last).
    pub notices: Vec<Notice>,
    /// Work off the UI thread other than inference: exports, project saves, plot
    /// PNGs, results files (drained each frame by the app).
    pub tasks: Background<TaskOutput>,
    /// Bumped whenever data that plots derive from changes.
    pub revision: u64,
    /// The open project (curation), if any.
    pub project: Option<super::ProjectSession>,
    /// The last training run started from the Train tab (live or finished).
    pub train: Option<super::train::TrainRun>,
    /// The spec of the loaded model (its adapter, if any).
    pub loaded_spec: Option<ModelSpec>,
    /// The results cache summaries are looked up in and stored to (shared with the CLI);
    /// `None`: none.
    pub cache_dir: Option<std::path::PathBuf>,
}

fn params_key(p: &BlockParams) -> String {
    format!("{p:?}")
}

impl Workbench {
    pub fn new(worker: Worker, wake: Wake, cache_dir: Option<std::path::PathBuf>) -> Self {
        Self {
            cache_dir,
            worker,
            tasks: Background::new(wake.clone()),
            wake,
            model: ModelStatus::None,
            data: None,
            loading: None,
            load_progress: (String::new(), 0.0),
            load_error: None,
            selected: None,
            summary: None,
            traces: HashMap::new(),
            rank: None,
            batch: BatchView::default(),
            token_counts: HashMap::new(),
            counts_requested: HashSet::new(),
            count_jobs: HashSet::new(),
            notices: Vec::new(),
            revision: 0,
            project: None,
            train: None,
            loaded_spec: None,
        }
    }

    pub fn notify(&mut self, notice: Notice) {
        self.notices.push(notice);
        if self.notices.len() > 50 {
            self.notices.remove(0);
        }
    }

    pub fn selected_case(&self) -> Option<&Case> {
        let data = self.data.as_ref()?;
        data.cases.get(self.selected?)
    }

    /// Token count with the model's tokenizer when known, else an estimate (4 chars a token).
    pub fn count_tokens(&self, text: &str) -> (usize, bool) {
        if let Some(&n) = self.token_counts.get(text) {
            return (n, true);
        }
        // Joined texts: the sum of their known lines plus one per newline.
        let mut total = 0;
        let mut exact = true;
        for (i, line) in text.split('\n').enumerate() {
            match self.token_counts.get(line) {
                Some(&n) => total += n,
                None => {
                    exact = false;
                    total += line.len().div_ceil(4);
                }
            }
            if i > 0 {
                total += 1;
            }
        }
        (total, exact)
    }

    /// The selected case's blocks with the current settings.
    pub fn segmentation(&self, settings: &Settings) -> Option<Segmentation> {
        let data = self.data.as_ref()?;
        let case = self.selected_case()?;
        Some(segment_case(
            case,
            &data.catalogue,
            &settings.text_template,
            &settings.blocks.params(),
            &|t| self.count_tokens(t).0,
        ))
    }

    pub fn context_len(&self) -> Option<usize> {
        match &self.model {
            ModelStatus::Loaded(m) => Some(m.identity.context_len),
            _ => None,
        }
    }

    pub fn open_dataset(&mut self, dir: PathBuf, settings: &mut Settings) {
        settings.remember_dir(&dir);
        self.load_error = None;
        self.load_progress = (format!("opening {}", dir.display()), 0.0);
        match spawn_load(dir, self.wake.clone()) {
            Ok(l) => self.loading = Some(l),
            Err(e) => self.load_error = Some(format!("could not start loading: {e}")),
        }
    }

    /// Takes the dataset loader's messages; may return a follow-up command.
    pub fn poll_dataset(&mut self, settings: &mut Settings) -> Option<Command> {
        let mut follow = None;
        while let Some(load) = &self.loading {
            let Some(msg) = load.poll() else { break };
            match msg {
                LoadMsg::Progress { stage, fraction } => self.load_progress = (stage, fraction),
                LoadMsg::Done(data) => {
                    self.loading = None;
                    if settings.preset == crate::preset::Preset::Workbench {
                        settings.text_template = data.text_template.clone();
                    }
                    self.data = Some(*data);
                    self.selected = None;
                    self.summary = None;
                    self.rank = None;
                    self.batch = BatchView::default();
                    self.revision += 1;
                    if self.data.as_ref().is_some_and(|d| !d.cases.is_empty()) {
                        follow = Some(Command::SelectCase(0));
                    }
                }
                LoadMsg::Failed(e) => {
                    self.loading = None;
                    self.load_error = Some(e);
                }
            }
        }
        follow
    }

    pub fn select_case(&mut self, i: usize) {
        let Some(data) = &self.data else { return };
        if i >= data.cases.len() {
            return;
        }
        self.selected = Some(i);
        let case = &data.cases[i];
        // A cached trace of this case shows at once; otherwise the summary view clears.
        if self
            .summary
            .as_ref()
            .is_some_and(|s| s.case != case.case && !s.is_running())
        {
            self.summary = None;
        }
        if self
            .rank
            .as_ref()
            .is_some_and(|r| r.case != case.case && r.job.is_none())
        {
            self.rank = None;
        }
    }

    pub fn load_model(&mut self, settings: &Settings) {
        self.worker.cancel_all();
        let spec = settings.model_spec();
        self.model = ModelStatus::Loading(spec.clone());
        self.token_counts.clear();
        self.counts_requested.clear();
        self.worker.load_model(spec);
    }

    pub fn request_token_counts(&mut self, texts: Vec<String>) {
        if !matches!(self.model, ModelStatus::Loaded(_)) {
            return;
        }
        let new: Vec<String> = texts
            .into_iter()
            .filter(|t| {
                !self.token_counts.contains_key(t) && self.counts_requested.insert(t.clone())
            })
            .collect();
        if !new.is_empty() {
            let id = self.worker.submit(JobSpec::CountTokens(new));
            self.count_jobs.insert(id);
        }
    }

    fn cached_trace(
        &self,
        case: &str,
        method: Method,
        params: &BlockParams,
    ) -> Option<&SummaryResult> {
        self.traces
            .get(&(case.to_string(), method, params_key(params)))
    }

    /// Starts a summary of the selected case (or re-runs step `rerun` of the current one).
    pub fn run_summary(&mut self, settings: &Settings, rerun: Option<usize>) {
        let (Some(catalogue), Some(case)) = (
            self.data.as_ref().map(|d| d.catalogue.clone()),
            self.selected_case().cloned(),
        ) else {
            self.notify(Notice::warning("select a user first"));
            return;
        };
        let params = settings.blocks.params();
        if self.summary.as_ref().is_some_and(|s| s.is_running()) {
            self.notify(Notice::warning(
                "a summary is already running; cancel it first (Esc)",
            ));
            return;
        }
        let resume = match rerun {
            Some(step) => match self.summary.as_ref().and_then(|s| s.result.clone()) {
                Some(r) if r.case == case.case => Some((r, step)),
                _ => {
                    self.notify(Notice::warning(
                        "nothing to re-run: run the whole summary first",
                    ));
                    return;
                }
            },
            None => {
                if let Some(t) = self
                    .cached_trace(&case.case, settings.method, &params)
                    .cloned()
                {
                    self.summary = Some(view_from_trace(&t, params, true));
                    self.notify(Notice::info(format!(
                        "summary of {} reused from earlier run",
                        case.case
                    )));
                    return;
                }
                None
            }
        };
        let job = SummarizeJob {
            case: case.clone(),
            catalogue,
            text_template: settings.text_template.clone(),
            block_params: params.clone(),
            method: settings.method,
            sampling: settings.sampling.clone(),
            templates: settings.templates.clone(),
            resume: resume.clone(),
            cache: self.cache_dir.clone(),
        };
        let id = self.worker.submit(JobSpec::Summarize(Box::new(job)));
        let mut view = SummaryView {
            job: Some(id),
            case: case.case.clone(),
            method: settings.method,
            block_params: params.clone(),
            steps: Vec::new(),
            result: None,
            error: None,
            cancelled: false,
            from_cache: false,
            started: Instant::now(),
            streamed_tokens: 0,
            first_token_at: None,
            finished_at: None,
        };
        if let Some((prior, from)) = &resume {
            // Keep the steps before the re-run one on screen.
            let kept = view_from_trace(prior, params, false);
            view.steps = kept.steps.into_iter().take(*from).collect();
        }
        self.summary = Some(view);
    }

    pub fn run_score(&mut self, settings: &Settings) {
        let (Some(catalogue), Some(case)) = (
            self.data.as_ref().map(|d| d.catalogue.clone()),
            self.selected_case().cloned(),
        ) else {
            self.notify(Notice::warning("select a user first"));
            return;
        };
        let summary = self
            .summary
            .as_ref()
            .filter(|s| s.case == case.case)
            .and_then(|s| s.result.as_ref())
            .map(|r| r.final_summary.clone());
        let used_summary = summary.is_some() && settings.recommend.use_summary;
        let previous = self
            .rank
            .as_ref()
            .filter(|r| r.case == case.case)
            .and_then(|r| Some((r.options.clone(), r.target_rank()?)));
        if let Some(r) = &self.rank {
            if let Some(j) = r.job {
                self.worker.cancel(j);
            }
        }
        let job = ScoreJob {
            case: case.clone(),
            catalogue,
            text_template: settings.text_template.clone(),
            templates: settings.templates.clone(),
            summary,
            options: settings.recommend.clone(),
        };
        let id = self.worker.submit(JobSpec::Score(Box::new(job)));
        self.rank = Some(RankView {
            job: Some(id),
            case: case.case,
            options: settings.recommend.clone(),
            used_summary,
            record: None,
            prompt: String::new(),
            error: None,
            previous,
        });
    }

    pub fn run_batch(&mut self, settings: &Settings) {
        let Some(data) = &self.data else {
            self.notify(Notice::warning("open a dataset first"));
            return;
        };
        if let Some(j) = self.batch.job {
            self.worker.cancel(j);
        }
        let n = settings.batch_cases.max(1).min(data.cases.len());
        let job = BatchJob {
            cases: data.cases[..n].to_vec(),
            catalogue: data.catalogue.clone(),
            text_template: settings.text_template.clone(),
            block_params: settings.blocks.params(),
            method: settings.method,
            sampling: settings.sampling.clone(),
            templates: settings.templates.clone(),
            summarize: settings.batch_summarize,
            cache: self.cache_dir.clone(),
            options: RecommendOptions {
                use_summary: settings.batch_summarize,
                ..settings.recommend.clone()
            },
        };
        let id = self.worker.submit(JobSpec::BatchEvaluate(Box::new(job)));
        self.batch = BatchView {
            job: Some(id),
            total: n,
            message: "queued".into(),
            ..BatchView::default()
        };
    }

    pub fn cancel_all(&mut self) {
        self.worker.cancel_all();
    }

    /// One line about the jobs, for the status bar.
    pub fn job_state_text(&self) -> String {
        if let Some(s) = self.summary.as_ref().filter(|s| s.is_running()) {
            let step = s.steps.len();
            return format!("summarizing {} · step {step}", s.case);
        }
        if self.rank.as_ref().is_some_and(|r| r.job.is_some()) {
            return "ranking candidates".into();
        }
        if self.batch.job.is_some() {
            return format!("evaluating {}/{}", self.batch.done, self.batch.total);
        }
        if let Some(t) = self.train.as_ref().filter(|t| t.is_running()) {
            return t.state_text();
        }
        if self.loading.is_some() {
            return format!("loading data: {}", self.load_progress.0);
        }
        "idle".into()
    }

    /// Applies one worker event to the views; events of jobs no longer shown are ignored.
    pub fn apply_event(&mut self, ev: Event, settings: &Settings) {
        let _ = settings;
        match ev {
            Event::ModelLoading { spec } => self.model = ModelStatus::Loading(spec),
            Event::ModelLoaded(m) => {
                self.notify(Notice::info(format!(
                    "loaded {} on {} in {:.0} ms",
                    m.identity.name, m.device, m.load_ms
                )));
                self.loaded_spec = match &self.model {
                    ModelStatus::Loading(spec) => Some(spec.clone()),
                    _ => None,
                };
                self.model = ModelStatus::Loaded(m);
            }
            Event::ModelFailed { spec, error } => {
                self.notify(Notice::error(format!(
                    "could not load {}: {error}",
                    spec.model
                )));
                self.model = ModelStatus::Failed(error);
                self.loaded_spec = None;
            }
            // The Train tab takes its job's events first (train::observe_events).
            Event::JobStarted { .. } | Event::Train { .. } | Event::TrainReport { .. } => {}
            Event::StepStarted {
                job,
                step,
                kind,
                blocks,
                prompt,
                prompt_tokens,
            } => {
                if let Some(s) = self.summary_for(job) {
                    let view = StepView {
                        kind,
                        blocks,
                        prompt,
                        prompt_tokens,
                        tokens: Vec::new(),
                        output_tokens: 0,
                        source: StepSource::Live,
                        text: String::new(),
                        done: false,
                        ms: 0.0,
                        started: Instant::now(),
                    };
                    if step < s.steps.len() {
                        s.steps[step] = view;
                    } else {
                        s.steps.push(view);
                    }
                }
            }
            Event::Tokens { job, step, deltas } => {
                if let Some(s) = self.summary_for(job) {
                    s.first_token_at.get_or_insert_with(Instant::now);
                    s.streamed_tokens += deltas.len();
                    if let Some(v) = s.steps.get_mut(step) {
                        for TokenDelta { text, logprob, .. } in deltas {
                            v.text.push_str(&text);
                            v.tokens.push((text, logprob));
                        }
                        v.output_tokens = v.tokens.len();
                    }
                }
            }
            Event::StepFinished {
                job,
                step,
                output,
                output_tokens,
                ms,
                prompt_tokens,
                cached,
            } => {
                if let Some(s) = self.summary_for(job) {
                    if let Some(v) = s.steps.get_mut(step) {
                        v.done = true;
                        v.ms = ms;
                        v.text = output;
                        v.prompt_tokens = prompt_tokens;
                        v.output_tokens = output_tokens;
                        if cached {
                            v.source = StepSource::Cache;
                        }
                    }
                    // A job answered from the results cache is a reused summary.
                    s.from_cache |= cached;
                }
            }
            Event::ScoresReady {
                job,
                record,
                prompt,
            } => {
                if let Some(r) = self.rank.as_mut().filter(|r| r.job == Some(job)) {
                    r.record = Some(record);
                    r.prompt = prompt;
                }
            }
            Event::Progress {
                job,
                done,
                total,
                message,
            } => {
                if self.batch.job == Some(job) {
                    self.batch.done = done;
                    self.batch.total = total;
                    self.batch.message = message;
                }
            }
            Event::JobFinished { job, output, .. } => self.finish_job(job, output),
            Event::JobCancelled { job } => {
                if let Some(s) = self.summary_for(job) {
                    s.job = None;
                    s.cancelled = true;
                    s.finished_at = Some(Instant::now());
                }
                self.end_other_jobs(job, None);
            }
            Event::JobFailed { job, error } => {
                if let Some(s) = self.summary_for(job) {
                    s.job = None;
                    s.error = Some(error.clone());
                    s.finished_at = Some(Instant::now());
                }
                self.end_other_jobs(job, Some(error));
            }
        }
    }

    fn summary_for(&mut self, job: JobId) -> Option<&mut SummaryView> {
        self.summary.as_mut().filter(|s| s.job == Some(job))
    }

    fn end_other_jobs(&mut self, job: JobId, error: Option<String>) {
        if let Some(r) = self.rank.as_mut().filter(|r| r.job == Some(job)) {
            r.job = None;
            r.error = error.clone().or(Some("cancelled".into()));
        }
        if self.batch.job == Some(job) {
            self.batch.job = None;
            self.batch.error = error.clone().or(Some("cancelled".into()));
        }
        if self.count_jobs.remove(&job) {
            self.counts_requested.clear();
            if let Some(e) = error {
                self.notify(Notice::error(format!("token counting failed: {e}")));
            }
        }
    }

    fn finish_job(&mut self, job: JobId, output: JobOutput) {
        match output {
            JobOutput::Summary(result) => {
                let result = *result;
                let key = self.summary_for(job).map(|s| {
                    s.job = None;
                    s.finished_at = Some(Instant::now());
                    s.result = Some(result.clone());
                    (
                        result.case.clone(),
                        result.method,
                        params_key(&s.block_params),
                    )
                });
                if let Some(key) = key {
                    self.traces.insert(key, result);
                }
            }
            JobOutput::Scores(record) => {
                if let Some(r) = self.rank.as_mut().filter(|r| r.job == Some(job)) {
                    r.job = None;
                    r.record = Some(record);
                }
            }
            JobOutput::Batch { records, .. } => {
                if self.batch.job == Some(job) {
                    self.batch.job = None;
                    if records.len() < self.batch.total {
                        self.batch.partial = Some(format!(
                            "cancelled after {} of {} cases; the results below are those {}",
                            records.len(),
                            self.batch.total,
                            records.len()
                        ));
                    }
                    self.batch.done = records.len();
                    self.batch.records = records;
                    self.revision += 1;
                }
            }
            JobOutput::Train(_) => {}
            JobOutput::TokenCounts(counts) => {
                self.count_jobs.remove(&job);
                for (t, n) in counts {
                    self.counts_requested.remove(&t);
                    self.token_counts.insert(t, n);
                }
            }
        }
    }
}

/// A summary view of a finished trace (a cached one, or the kept steps of a re-run).
pub fn view_from_trace(t: &SummaryResult, params: BlockParams, from_cache: bool) -> SummaryView {
    let now = Instant::now();
    let source = if from_cache {
        StepSource::Cache
    } else {
        StepSource::Kept
    };
    SummaryView {
        job: None,
        case: t.case.clone(),
        method: t.method,
        block_params: params,
        steps: t
            .steps
            .iter()
            .map(|s| StepView {
                kind: s.kind,
                blocks: s.blocks.clone(),
                prompt: s.prompt.clone(),
                prompt_tokens: s.prompt_tokens,
                tokens: Vec::new(),
                output_tokens: s.output_tokens,
                source,
                text: s.output.clone(),
                done: true,
                ms: s.ms,
                started: now,
            })
            .collect(),
        result: Some(t.clone()),
        error: None,
        cancelled: false,
        from_cache,
        started: now,
        streamed_tokens: 0,
        first_token_at: None,
        finished_at: Some(now),
    }
}
