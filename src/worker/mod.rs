//! The background inference thread: owns the model, takes [`Request`]s, sends [`Event`]s.
//!
//! No egui here. The UI gives a wake closure at spawn (it calls `request_repaint`);
//! the worker calls it after sending events, batching token deltas so the UI redraws at
//! most every [`TOKEN_FLUSH_MS`] milliseconds while text streams. Events travel on a
//! bounded channel: a slow UI slows the worker down (back-pressure) but never deadlocks
//! it, because the UI side never blocks on the worker, and dropping the [`Worker`]
//! disconnects the channel before joining the thread.
//!
//! Cancellation: every job carries a [`CancelToken`] that the UI side sets directly
//! (no round trip through the request queue), and that generation checks per token.

pub mod dataset;
pub mod jobs;
pub mod train;

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::lm::{CancelToken, LanguageModel, ModelIdentity, TokenDelta};
use crate::metrics::ScoreRecord;

pub use jobs::{BatchJob, JobOutput, ScoreJob, SummarizeJob};
pub use train::TrainJob;

/// Identifies one job between UI and worker.
pub type JobId = u64;

/// Wakes the UI (the app passes `ctx.request_repaint()`); must be cheap.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Makes a model from a [`ModelSpec`]. The app passes the candle engine; tests of the
/// plumbing may pass a fake.
pub type Loader = Box<dyn FnMut(&ModelSpec) -> anyhow::Result<LoadedModel> + Send>;

/// Token deltas are sent at most this often (plus at the end of each step).
pub const TOKEN_FLUSH_MS: u64 = 16;

/// Capacity of the event channel.
pub const EVENT_CAPACITY: usize = 256;

/// Which model to load and how.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    /// `default`, a local file path (GGUF or safetensors), or a Hugging Face reference
    /// (`hf:owner/repo/file.gguf` or `owner/repo:file.gguf`).
    pub model: String,
    /// `auto`, `cpu`, `cuda:N` or `metal`.
    pub device: String,
    /// Use the paper's raw `### User:` form instead of the model's chat template.
    pub raw_prompt: bool,
    /// A PEFT LoRA adapter folder put on the model (a fine-tuned recommender).
    #[serde(default)]
    pub adapter: Option<std::path::PathBuf>,
    /// With a server URL as `model`: the served model (`None`: the server's first).
    #[serde(default)]
    pub server_model: Option<String>,
    /// With a server URL: the environment variable holding the API key (`None`:
    /// `TRSR_API_KEY`). The key itself is never stored.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The answer tokens: the vocabulary entries spelled exactly as the answer words
    /// (the reference's rule), not the first token of each word. The window sets it
    /// from its templates ([`crate::prompt::Templates::answer_by_vocab`]), as the CLI does.
    #[serde(default)]
    pub answer_by_vocab: bool,
    /// The answer words the recommender compares (the templates' `yes` / `no`).
    #[serde(default = "default_yes")]
    pub yes_word: String,
    #[serde(default = "default_no")]
    pub no_word: String,
}

fn default_yes() -> String {
    crate::llm::LoadOptions::default().yes_word
}

fn default_no() -> String {
    crate::llm::LoadOptions::default().no_word
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            model: "default".into(),
            device: "auto".into(),
            raw_prompt: false,
            adapter: None,
            server_model: None,
            api_key_env: None,
            answer_by_vocab: false,
            yes_word: default_yes(),
            no_word: default_no(),
        }
    }
}

/// What a loader returns: the model plus the device it ended up on.
pub struct LoadedModel {
    pub model: Box<dyn LanguageModel>,
    pub device: String,
}

/// Plain facts about the loaded model, for the status bar.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSummary {
    pub identity: ModelIdentity,
    pub device: String,
    pub load_ms: f64,
}

/// UI -> worker.
pub enum Request {
    LoadModel(ModelSpec),
    Job {
        id: JobId,
        cancel: CancelToken,
        job: JobSpec,
    },
    /// Cancel a job (also done directly through its token; this covers queued jobs).
    Cancel(JobId),
    Shutdown,
}

/// The work a job does.
pub enum JobSpec {
    Summarize(Box<SummarizeJob>),
    Score(Box<ScoreJob>),
    BatchEvaluate(Box<BatchJob>),
    /// Token counts of texts with the loaded model's tokenizer.
    CountTokens(Vec<String>),
    /// LoRA fine-tuning of the recommender (needs the candle engine).
    Train(Box<TrainJob>),
}

impl JobSpec {
    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::Summarize(_) => JobKind::Summarize,
            JobSpec::Score(_) => JobKind::Score,
            JobSpec::BatchEvaluate(_) => JobKind::BatchEvaluate,
            JobSpec::CountTokens(_) => JobKind::CountTokens,
            JobSpec::Train(_) => JobKind::Train,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    Summarize,
    Score,
    BatchEvaluate,
    CountTokens,
    Train,
}

pub use crate::summarize::StepKind;

/// Worker -> UI.
#[derive(Clone, Debug)]
pub enum Event {
    ModelLoading {
        spec: ModelSpec,
    },
    ModelLoaded(ModelSummary),
    ModelFailed {
        spec: ModelSpec,
        error: String,
    },
    JobStarted {
        job: JobId,
        kind: JobKind,
    },
    StepStarted {
        job: JobId,
        step: usize,
        kind: StepKind,
        blocks: Vec<usize>,
        prompt: String,
        prompt_tokens: usize,
    },
    /// A batch of streamed tokens of one step, in order.
    Tokens {
        job: JobId,
        step: usize,
        deltas: Vec<TokenDelta>,
    },
    StepFinished {
        job: JobId,
        step: usize,
        output: String,
        output_tokens: usize,
        prompt_tokens: usize,
        ms: f64,
        /// Taken from the results cache, not generated now.
        cached: bool,
    },
    ScoresReady {
        job: JobId,
        record: ScoreRecord,
        /// The shared prompt prefix the scores were computed from.
        prompt: String,
    },
    Progress {
        job: JobId,
        done: usize,
        total: usize,
        message: String,
    },
    JobFinished {
        job: JobId,
        output: JobOutput,
        ms: f64,
    },
    JobCancelled {
        job: JobId,
    },
    /// Progress of a Train job.
    Train {
        job: JobId,
        event: crate::train::TrainEvent,
    },
    /// A Train job's report, sent when training returns (finished or cancelled).
    TrainReport {
        job: JobId,
        report: Box<crate::train::TrainReport>,
    },
    JobFailed {
        job: JobId,
        error: String,
    },
}

impl Event {
    /// The job an event belongs to, if any.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Event::ModelLoading { .. } | Event::ModelLoaded(_) | Event::ModelFailed { .. } => None,
            Event::JobStarted { job, .. }
            | Event::StepStarted { job, .. }
            | Event::Tokens { job, .. }
            | Event::StepFinished { job, .. }
            | Event::ScoresReady { job, .. }
            | Event::Progress { job, .. }
            | Event::JobFinished { job, .. }
            | Event::JobCancelled { job }
            | Event::Train { job, .. }
            | Event::TrainReport { job, .. }
            | Event::JobFailed { job, .. } => Some(*job),
        }
    }

    /// True for the last event of a job.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Event::JobFinished { .. } | Event::JobCancelled { .. } | Event::JobFailed { .. }
        )
    }
}

/// The receiving side of the UI went away; the worker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// Sends events from the worker thread: batches token deltas, wakes the UI.
pub struct Emitter {
    tx: Sender<Event>,
    wake: Wake,
    pending: Option<(JobId, usize, Vec<TokenDelta>)>,
    last_flush: Instant,
    flush_every: Duration,
    disconnected: bool,
}

impl Emitter {
    pub fn new(tx: Sender<Event>, wake: Wake) -> Self {
        Self {
            tx,
            wake,
            pending: None,
            last_flush: Instant::now(),
            flush_every: Duration::from_millis(TOKEN_FLUSH_MS),
            disconnected: false,
        }
    }

    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }

    fn send_raw(&mut self, ev: Event) -> Result<(), Disconnected> {
        if self.disconnected {
            return Err(Disconnected);
        }
        // Blocks while the channel is full: back-pressure from a slow UI.
        if self.tx.send(ev).is_err() {
            self.disconnected = true;
            return Err(Disconnected);
        }
        Ok(())
    }

    /// Sends pending token deltas (if any) and wakes the UI.
    pub fn flush(&mut self) -> Result<(), Disconnected> {
        if let Some((job, step, deltas)) = self.pending.take() {
            if !deltas.is_empty() {
                self.send_raw(Event::Tokens { job, step, deltas })?;
            }
        }
        self.last_flush = Instant::now();
        (self.wake)();
        Ok(())
    }

    /// Queues one token; sends the batch when [`TOKEN_FLUSH_MS`] have passed.
    pub fn token(
        &mut self,
        job: JobId,
        step: usize,
        delta: TokenDelta,
    ) -> Result<(), Disconnected> {
        match &mut self.pending {
            Some((j, s, deltas)) if *j == job && *s == step => deltas.push(delta),
            _ => {
                self.flush()?;
                self.pending = Some((job, step, vec![delta]));
            }
        }
        if self.last_flush.elapsed() >= self.flush_every {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends an event at once (after any pending tokens) and wakes the UI.
    pub fn send(&mut self, ev: Event) -> Result<(), Disconnected> {
        if let Some((job, step, deltas)) = self.pending.take() {
            if !deltas.is_empty() {
                self.send_raw(Event::Tokens { job, step, deltas })?;
            }
        }
        self.send_raw(ev)?;
        self.last_flush = Instant::now();
        (self.wake)();
        Ok(())
    }
}

/// The UI's handle on the worker thread. Dropping it shuts the worker down.
pub struct Worker {
    tx: Sender<Request>,
    rx: Option<Receiver<Event>>,
    thread: Option<JoinHandle<()>>,
    next_job: JobId,
    cancels: HashMap<JobId, CancelToken>,
}

impl Worker {
    /// Starts the worker thread (named `trsr-worker`).
    pub fn spawn(loader: Loader, wake: Wake) -> std::io::Result<Self> {
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(EVENT_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("trsr-worker".into())
            .spawn(move || run(loader, req_rx, Emitter::new(ev_tx, wake)))?;
        Ok(Self {
            tx: req_tx,
            rx: Some(ev_rx),
            thread: Some(thread),
            next_job: 1,
            cancels: HashMap::new(),
        })
    }

    /// Asks the worker to load a model (replacing the current one).
    pub fn load_model(&self, spec: ModelSpec) {
        // A send fails only when the worker thread has ended; drain then reports nothing more.
        let _ = self.tx.send(Request::LoadModel(spec));
    }

    /// Queues a job; returns its id.
    pub fn submit(&mut self, job: JobSpec) -> JobId {
        let id = self.next_job;
        self.next_job += 1;
        let cancel = CancelToken::new();
        self.cancels.insert(id, cancel.clone());
        let _ = self.tx.send(Request::Job { id, cancel, job });
        id
    }

    /// Cancels a running or queued job. The worker answers with `JobCancelled`.
    pub fn cancel(&self, job: JobId) {
        if let Some(c) = self.cancels.get(&job) {
            c.cancel();
        }
        let _ = self.tx.send(Request::Cancel(job));
    }

    /// Cancels every job not yet finished.
    pub fn cancel_all(&self) {
        for (&job, c) in &self.cancels {
            c.cancel();
            let _ = self.tx.send(Request::Cancel(job));
        }
    }

    /// Jobs submitted and not yet reported finished, cancelled or failed.
    pub fn open_jobs(&self) -> usize {
        self.cancels.len()
    }

    /// Takes the next event without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        let rx = self.rx.as_ref()?;
        match rx.try_recv() {
            Ok(ev) => {
                if ev.is_terminal() {
                    if let Some(job) = ev.job() {
                        self.cancels.remove(&job);
                    }
                }
                Some(ev)
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }

    /// Takes events until none is waiting or `budget` has passed (the UI's per-frame drain).
    pub fn drain(&mut self, budget: Duration) -> Vec<Event> {
        let start = Instant::now();
        let mut out = Vec::new();
        while let Some(ev) = self.try_recv() {
            out.push(ev);
            if start.elapsed() >= budget {
                break;
            }
        }
        out
    }

    /// True when events are still waiting (the UI should repaint again soon).
    pub fn has_pending(&self) -> bool {
        self.rx.as_ref().is_some_and(|rx| !rx.is_empty())
    }

    /// Waits for the next event up to `timeout` (for tests and headless use, never the UI).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Event> {
        let ev = self.rx.as_ref()?.recv_timeout(timeout).ok()?;
        if ev.is_terminal() {
            if let Some(job) = ev.job() {
                self.cancels.remove(&job);
            }
        }
        Some(ev)
    }

    /// Stops the worker: cancels all jobs, disconnects the event channel, joins the thread.
    pub fn shutdown(&mut self) {
        for c in self.cancels.values() {
            c.cancel();
        }
        let _ = self.tx.send(Request::Shutdown);
        // Drop the receiver first so a worker blocked on a full channel wakes up.
        self.rx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The worker thread's loop.
fn run(mut loader: Loader, rx: Receiver<Request>, mut em: Emitter) {
    let mut model: Option<Box<dyn LanguageModel>> = None;
    let mut queue: std::collections::VecDeque<(JobId, CancelToken, JobSpec)> = Default::default();
    loop {
        // Take everything waiting, so cancels of queued jobs are seen before they start.
        let next = if queue.is_empty() {
            match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(r) => Some(r),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        };
        if let Some(req) = next {
            match req {
                Request::Shutdown => return,
                Request::Cancel(id) => {
                    if let Some(pos) = queue.iter().position(|(j, _, _)| *j == id) {
                        queue.remove(pos);
                        if em.send(Event::JobCancelled { job: id }).is_err() {
                            return;
                        }
                    }
                }
                Request::LoadModel(spec) => {
                    if em.send(Event::ModelLoading { spec: spec.clone() }).is_err() {
                        return;
                    }
                    let start = Instant::now();
                    // Free the old model first: two big models may not fit in memory.
                    model = None;
                    // A panic while loading (a GPU driver call, say) fails this load
                    // only: the worker stays up, and the model can be loaded again (on
                    // the CPU, for instance).
                    let loaded =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loader(&spec)))
                            .unwrap_or_else(|p| {
                                let why = p
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_else(|| "unknown cause".into());
                                Err(anyhow::anyhow!("loading the model panicked: {why}"))
                            });
                    let ev = match loaded {
                        Ok(loaded) => {
                            let summary = ModelSummary {
                                identity: loaded.model.identity(),
                                device: loaded.device,
                                load_ms: start.elapsed().as_secs_f64() * 1000.0,
                            };
                            model = Some(loaded.model);
                            Event::ModelLoaded(summary)
                        }
                        Err(e) => Event::ModelFailed {
                            spec,
                            error: format!("{e:#}"),
                        },
                    };
                    if em.send(ev).is_err() {
                        return;
                    }
                }
                Request::Job { id, cancel, job } => queue.push_back((id, cancel, job)),
            }
            continue;
        }
        let Some((id, cancel, job)) = queue.pop_front() else {
            continue;
        };
        let ev = if cancel.is_cancelled() {
            Event::JobCancelled { job: id }
        } else if let Some(lm) = model.as_deref_mut() {
            if em
                .send(Event::JobStarted {
                    job: id,
                    kind: job.kind(),
                })
                .is_err()
            {
                return;
            }
            let start = Instant::now();
            let result = jobs::run_job(lm, id, job, &cancel, &mut em);
            if em.is_disconnected() {
                return;
            }
            match result {
                // A cancelled evaluation still delivers the cases it finished; the
                // window shows them as a partial result.
                Ok(output @ JobOutput::Batch { .. }) => Event::JobFinished {
                    job: id,
                    output,
                    ms: start.elapsed().as_secs_f64() * 1000.0,
                },
                _ if cancel.is_cancelled() => Event::JobCancelled { job: id },
                Ok(output) => Event::JobFinished {
                    job: id,
                    output,
                    ms: start.elapsed().as_secs_f64() * 1000.0,
                },
                Err(e) => Event::JobFailed {
                    job: id,
                    error: format!("{e:#}"),
                },
            }
        } else {
            Event::JobFailed {
                job: id,
                error: "no model is loaded: pick one under Model & settings and press Load".into(),
            }
        };
        if em.send(ev).is_err() {
            return;
        }
    }
}

/// The real loader: the candle engine (`llm::Engine`).
pub fn engine_loader() -> Loader {
    Box::new(|spec: &ModelSpec| {
        if crate::remote::is_remote_ref(&spec.model) {
            return remote_load(spec);
        }
        let model: crate::llm::source::ModelRef = spec
            .model
            .parse()
            .map_err(|e| anyhow::anyhow!("model `{}`: {e}", spec.model))?;
        let opts = crate::llm::LoadOptions {
            device: spec.device.parse()?,
            raw_prompt: spec.raw_prompt,
            adapter: spec.adapter.clone(),
            yes_word: spec.yes_word.clone(),
            no_word: spec.no_word.clone(),
            answer_by_vocab: spec.answer_by_vocab,
            ..crate::llm::LoadOptions::default()
        };
        let engine = crate::llm::Engine::load(&model, &opts)?;
        let device = engine.info().device.clone();
        Ok(LoadedModel {
            model: Box::new(engine),
            device,
        })
    })
}

pub use crate::remote::{is_remote_ref as is_server_ref, API_KEY_ENV};

/// The CUDA GPUs this build can use, as `(device name, "GPU name, memory")` for the
/// window's device list (empty without the `cuda` feature or a driver).
pub fn cuda_devices() -> &'static [(String, String)] {
    crate::llm::device::cuda_devices()
}

/// The models a server serves (the window's connection test), with the API key from
/// `api_key_env` (default `TRSR_API_KEY`).
pub fn served_models(url: &str, api_key_env: Option<&str>) -> anyhow::Result<Vec<String>> {
    let key = crate::remote::api_key_from_env(api_key_env)?;
    Ok(crate::remote::served_models(url, key)?)
}

/// A server model (`spec.model` is `http(s)://…/v1`; the first of a comma-separated list).
fn remote_load(spec: &ModelSpec) -> anyhow::Result<LoadedModel> {
    if spec.adapter.is_some() {
        anyhow::bail!("an adapter applies to a local model, not to a server model");
    }
    let url = crate::remote::parse_urls(&spec.model)?.remove(0);
    let opts = crate::remote::RemoteOptions {
        server_model: spec.server_model.clone(),
        api_key: crate::remote::api_key_from_env(spec.api_key_env.as_deref())?,
        raw_prompt: spec.raw_prompt,
        yes_word: spec.yes_word.clone(),
        no_word: spec.no_word.clone(),
        ..crate::remote::RemoteOptions::new(&url)
    };
    let model = crate::remote::RemoteModel::connect(&opts)?;
    let device = format!("server {} ({})", model.url(), model.kind().tag());
    Ok(LoadedModel {
        model: Box::new(model),
        device,
    })
}
