//! The batch machinery behind `trsr summarize`, `trsr score` and `trsr sweep`:
//! resumable JSONL output, a pool of model instances working on cases in parallel,
//! Ctrl-C handling, progress bars, and the per-dataset choices (wording, item text).
//!
//! Parallelism: with `--threads N` the LLM commands load N model instances, one per
//! worker thread, and hand each case to the next free worker; the instances share
//! candle's process-wide CPU thread pool. The default is one instance per 4 cores (so
//! 1 on a 2-core machine), since a small model's single-token decode leaves cores idle
//! that a second instance can use only when there are many. Baselines always run on
//! all cores (rayon).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::data::{Case, Catalogue, ItemTextTemplate, Prepared};
use crate::lm::{CancelToken, LanguageModel, SamplingParams};
use crate::preset::{Preset, ReferenceWording};
use crate::prompt::{guess_wording, Templates, Wording};

/// The process-wide Ctrl-C token: the first Ctrl-C cancels (work stops after the
/// current token, finished lines stay in the output), a second one exits at once.
pub fn interrupt_token() -> CancelToken {
    static TOKEN: OnceLock<CancelToken> = OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let token = CancelToken::new();
            let t = token.clone();
            // Another handler may already be installed (e.g. by an embedding program);
            // then Ctrl-C keeps its default behaviour and only the token is missing.
            let _ = ctrlc::set_handler(move || {
                if t.is_cancelled() {
                    std::process::exit(130);
                }
                t.cancel();
                eprintln!(
                    "\ninterrupted: stopping; finished cases are kept (Ctrl-C again to quit now)"
                );
            });
            token
        })
        .clone()
}

/// An output JSONL file opened for appending after the lines it already holds.
pub struct JsonlOut {
    path: PathBuf,
    file: File,
}

impl JsonlOut {
    /// Opens `path` for resuming: reads its complete lines (returned), drops a
    /// trailing partial line left by a crash, and positions writes at the end.
    /// A broken line elsewhere is an error naming the file and line.
    pub fn resume<T: DeserializeOwned>(path: &Path) -> anyhow::Result<(Vec<T>, Self)> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("could not create folder {}", parent.display()))?;
            }
        }
        let mut rows = Vec::new();
        let mut good_len = 0u64;
        if path.exists() {
            let f =
                File::open(path).with_context(|| format!("could not read {}", path.display()))?;
            let mut reader = BufReader::new(f);
            // Bytes, not text: a write cut short can end inside a multi-byte character.
            let mut line = Vec::new();
            let mut line_no = 0u64;
            loop {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .with_context(|| format!("could not read {}", path.display()))?;
                if n == 0 {
                    break;
                }
                line_no += 1;
                if !line.ends_with(b"\n") {
                    // The last line, cut short by an interrupted write: dropped.
                    break;
                }
                if line.trim_ascii().is_empty() {
                    good_len += n as u64;
                    continue;
                }
                match serde_json::from_slice::<T>(line.trim_ascii_end()) {
                    Ok(v) => {
                        rows.push(v);
                        good_len += n as u64;
                    }
                    Err(e) => anyhow::bail!(
                        "{}:{line_no}: not a valid output line ({e}); fix or remove the file to start over",
                        path.display()
                    ),
                }
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("could not open {} for writing", path.display()))?;
        file.set_len(good_len)
            .with_context(|| format!("could not write {}", path.display()))?;
        file.seek(SeekFrom::Start(good_len))
            .with_context(|| format!("could not write {}", path.display()))?;
        Ok((
            rows,
            Self {
                path: path.to_path_buf(),
                file,
            },
        ))
    }

    /// Appends one line and flushes it, so the file is valid JSONL after every case.
    pub fn write<T: Serialize>(&mut self, row: &T) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(row).context("could not encode an output line")?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.flush())
            .with_context(|| format!("could not write {}", self.path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads all lines of a JSONL file of `T`, naming file and line on a bad one.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let f = File::open(path).with_context(|| format!("could not read {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(f).split(b'\n').enumerate() {
        let line = line.with_context(|| format!("could not read {}", path.display()))?;
        if line.trim_ascii().is_empty() {
            continue;
        }
        rows.push(
            serde_json::from_slice(&line)
                .with_context(|| format!("{}:{}: not a valid line", path.display(), i + 1))?,
        );
    }
    Ok(rows)
}

/// Runs `work` on every job over the given model instances (one worker thread
/// each), passing each result to `on_result` on the calling thread in job order (results
/// that finish early wait for the ones before them, so outputs are in case order).
/// Stops handing out jobs once `cancel` is set or `on_result` fails. A worker whose
/// server stopped answering ([`is_server_down`]) takes no more jobs; if jobs are left
/// over because of that, the result is an error saying so (the finished ones have been
/// passed on).
pub fn run_pool<J: Sync, R: Send>(
    models: &mut [Box<dyn LanguageModel>],
    jobs: &[J],
    cancel: &CancelToken,
    work: &(dyn Fn(&mut dyn LanguageModel, &J) -> anyhow::Result<R> + Sync),
    on_result: &mut dyn FnMut(usize, anyhow::Result<R>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if models.is_empty() {
        anyhow::bail!("no model instance to run on");
    }
    let left_over = |handed: usize, down: &Option<String>| -> anyhow::Result<()> {
        match down {
            Some(e) if handed < jobs.len() && !cancel.is_cancelled() => anyhow::bail!(
                "{} case(s) not started: {e}; the finished cases are saved; run the same \
                 command again to continue",
                jobs.len() - handed
            ),
            _ => Ok(()),
        }
    };
    if models.len() == 1 || jobs.len() <= 1 {
        let lm = &mut models[0];
        let mut handed = 0;
        let mut down = None;
        for (i, j) in jobs.iter().enumerate() {
            if cancel.is_cancelled() {
                break;
            }
            handed += 1;
            let r = work(lm.as_mut(), j);
            if let Err(e) = &r {
                if is_server_down(e) {
                    down = Some(format!("{e:#}"));
                }
            }
            on_result(i, r)?;
            if down.is_some() {
                break;
            }
        }
        return left_over(handed, &down);
    }
    let next = AtomicUsize::new(0);
    let stop = CancelToken::new();
    let down: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, anyhow::Result<R>)>();
    std::thread::scope(|s| -> anyhow::Result<()> {
        for lm in models.iter_mut() {
            let tx = tx.clone();
            let next = &next;
            let stop = &stop;
            let down = &down;
            std::thread::Builder::new()
                .name("trsr-case-worker".into())
                .spawn_scoped(s, move || loop {
                    if cancel.is_cancelled() || stop.is_cancelled() {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(j) = jobs.get(i) else { break };
                    let r = work(lm.as_mut(), j);
                    let server_down = match &r {
                        Err(e) if is_server_down(e) => {
                            if let Ok(mut d) = down.lock() {
                                d.get_or_insert_with(|| format!("{e:#}"));
                            }
                            true
                        }
                        _ => false,
                    };
                    if tx.send((i, r)).is_err() || server_down {
                        break;
                    }
                })
                .context("could not start a worker thread")?;
        }
        drop(tx);
        let mut first_err = None;
        let mut waiting: std::collections::BTreeMap<usize, anyhow::Result<R>> =
            std::collections::BTreeMap::new();
        let mut next_out = 0usize;
        for (i, r) in rx {
            if first_err.is_some() {
                continue;
            }
            waiting.insert(i, r);
            while let Some(r) = waiting.remove(&next_out) {
                if let Err(e) = on_result(next_out, r) {
                    stop.cancel();
                    first_err = Some(e);
                    break;
                }
                next_out += 1;
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        // Jobs after one that was never handed out (a worker stopped) cannot be waiting:
        // each worker takes the next index, so every index below the highest taken was
        // taken and reported. Anything left here is passed on in order regardless.
        for (i, r) in std::mem::take(&mut waiting) {
            on_result(i, r)?;
        }
        let handed = next.load(Ordering::SeqCst).min(jobs.len());
        let down = down.lock().ok().and_then(|d| d.clone());
        left_over(handed, &down)
    })
}

/// A progress bar on stderr with ETA and a throughput message; hidden when `show`
/// is false (tests) or stderr is not a terminal.
pub fn progress(len: usize, what: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {what} (ETA {{eta}}) {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Throughput counter for the progress message.
pub struct Throughput {
    start: Instant,
    tokens: u64,
}

impl Default for Throughput {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            tokens: 0,
        }
    }
}

impl Throughput {
    pub fn add(&mut self, tokens: usize) {
        self.tokens += tokens as u64;
    }
    pub fn per_sec(&self) -> f64 {
        let s = self.start.elapsed().as_secs_f64();
        if s > 0.0 {
            self.tokens as f64 / s
        } else {
            0.0
        }
    }
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// What a batch run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchReport {
    /// Lines written by this run.
    pub written: usize,
    /// Of those, served from the cache.
    pub cached: usize,
    /// Cases skipped because the output already held them (resume).
    pub already_done: usize,
    /// Cases that failed: (case, error message).
    pub failed: Vec<(String, String)>,
    /// True when the run stopped on cancel before finishing.
    pub cancelled: bool,
    /// Generated (summaries) or scored (scores) tokens of the computed cases.
    pub tokens: u64,
    pub elapsed_secs: f64,
}

impl BatchReport {
    /// Turns the end state into the command's result: an error when cancelled or
    /// when cases failed, with what to do next.
    pub fn finish(&self, out: &Path) -> anyhow::Result<()> {
        if self.cancelled {
            anyhow::bail!(
                "cancelled: {} line(s) written to {}; run the same command again to continue",
                self.written + self.already_done,
                out.display()
            );
        }
        if !self.failed.is_empty() {
            for (case, e) in self.failed.iter().take(10) {
                eprintln!("case {case}: {e}");
            }
            anyhow::bail!(
                "{} case(s) failed (first ones listed above); the others are in {}; run the same \
                 command again to retry the failed ones",
                self.failed.len(),
                out.display()
            );
        }
        Ok(())
    }
}

/// Options shared by the batch commands: data selection, wording, item text, cache,
/// parallelism.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// Only cases of this split (e.g. `test`); default: all cases.
    #[arg(long)]
    pub split: Option<String>,
    /// Prompt templates file (RON); default: the wording's built-in templates.
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// Wording of the built-in templates; default: guessed from the item fields.
    #[arg(long, value_enum)]
    pub wording: Option<Wording>,
    /// Item fields in the prompts, comma-separated (default: the paper's fields for
    /// news or products, else all fields).
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
    /// Cut each field to this many characters.
    #[arg(long)]
    pub max_field_chars: Option<usize>,
    /// Recompute even when the cache has the result (the new result is stored).
    #[arg(long)]
    pub no_cache: bool,
    /// Cache folder (default: $TRSR_CACHE_DIR or ~/.cache/trsr/results).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Parallel workers: model instances for the LLM, each working on its own cases.
    /// Default: one per 4 cores, at least 1.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// `workbench` (our wording and settings) or `reference` (the LLM-TRSR reference
    /// code's prompts, item text and generation, byte for byte; MIND and Amazon-M2).
    #[arg(long, value_enum, default_value_t = Preset::Workbench)]
    pub preset: Preset,
    /// With `--preset reference`: which dataset's reference wording to use (needed for
    /// folders not prepared from MIND or Amazon-M2).
    #[arg(long, value_enum)]
    pub reference_wording: Option<ReferenceWording>,
    /// The reference wording [`CommonArgs::resolve_preset`] found.
    #[arg(skip)]
    pub resolved_wording: Option<ReferenceWording>,
}

/// The paper's item fields for news (MIND).
pub const NEWS_FIELDS: &[&str] = crate::data::MIND_FIELDS;
/// The paper's item fields for products (Amazon-M2).
pub const PRODUCT_FIELDS: &[&str] = crate::data::AMAZON_M2_FIELDS;

impl CommonArgs {
    /// Under `--preset reference`, finds which reference wording the prepared folder
    /// `data` takes: `--reference-wording`, else the format in its `prepare.json`
    /// (MIND or Amazon-M2); anything else is an error. Call before [`Self::templates`].
    pub fn resolve_preset(&mut self, data: &Path) -> anyhow::Result<()> {
        if self.preset != Preset::Reference {
            return Ok(());
        }
        if let Some(w) = self.reference_wording {
            self.resolved_wording = Some(w);
            return Ok(());
        }
        let meta = crate::preset::PrepareMeta::read(data)?;
        match meta.as_ref().and_then(|m| m.reference_wording()) {
            Some(w) => {
                self.resolved_wording = Some(w);
                Ok(())
            }
            None => Err(crate::preset::no_reference_wording(&match meta {
                Some(m) => format!("{} was prepared from a {} folder", data.display(), m.format),
                None => format!(
                    "{} has no {} saying which dataset it was prepared from",
                    data.display(),
                    crate::preset::PREPARE_META_FILE
                ),
            })),
        }
    }

    /// The reference wording in force (`None` under the workbench preset).
    pub fn reference(&self) -> anyhow::Result<Option<ReferenceWording>> {
        match self.preset {
            Preset::Workbench => Ok(None),
            Preset::Reference => self
                .resolved_wording
                .or(self.reference_wording)
                .map(Some)
                .ok_or_else(|| crate::preset::no_reference_wording("none was found")),
        }
    }

    /// The templates: from `--templates`, else the preset's and wording's defaults.
    pub fn templates(&self, catalogue: &Catalogue) -> anyhow::Result<Templates> {
        if let (None, Some(w)) = (&self.templates, self.reference()?) {
            return Ok(Templates::reference(w));
        }
        match &self.templates {
            Some(p) => Templates::load(p),
            None => Ok(Templates::for_wording(
                self.wording
                    .or_else(|| guess_wording(catalogue))
                    .unwrap_or(Wording::News),
            )),
        }
    }

    /// The item-text template: `--fields`, else the paper's fields for the kind.
    pub fn text_template(&self, catalogue: &Catalogue) -> ItemTextTemplate {
        if let (true, Ok(Some(w))) = (self.fields.is_empty(), self.reference()) {
            return ItemTextTemplate::reference(w);
        }
        let guessed = guess_wording(catalogue);
        let mut t = if !self.fields.is_empty() {
            ItemTextTemplate {
                fields: self.fields.clone(),
                ..ItemTextTemplate::default()
            }
        } else {
            match (guessed, self.wording.or(guessed)) {
                (Some(_), Some(Wording::News)) => ItemTextTemplate::with_fields(NEWS_FIELDS),
                (Some(_), Some(Wording::Products)) => ItemTextTemplate::with_fields(PRODUCT_FIELDS),
                _ => ItemTextTemplate::default(),
            }
        };
        t.max_field_chars = self.max_field_chars;
        t
    }

    /// The cache, unless the folder cannot be made (then a warning and no cache).
    pub fn cache(&self) -> Option<crate::cache::Cache> {
        let dir = self
            .cache_dir
            .clone()
            .unwrap_or_else(crate::cache::Cache::default_dir);
        match crate::cache::Cache::open(&dir) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("warning: working without a cache: {e:#}");
                None
            }
        }
    }

    /// The number of worker model instances.
    pub fn workers(&self) -> usize {
        self.threads.unwrap_or_else(default_workers).max(1)
    }
}

/// One worker per 4 cores, at least one.
pub fn default_workers() -> usize {
    (cores() / 4).max(1)
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The cases to run: the split filter, then the first `limit`.
pub fn select_cases<'a>(
    data: &'a Prepared,
    split: Option<&str>,
    limit: Option<usize>,
) -> Vec<&'a Case> {
    data.cases
        .iter()
        .filter(|c| split.is_none_or(|s| c.split.as_deref() == Some(s)))
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

/// Sampling flags of the summarizer. Unset ones take the preset's value
/// ([`Preset::sampling`]).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SamplingArgs {
    /// Sampling seed (step i of a summary uses seed + i) [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sampling temperature; 0 means greedy [default: 0.7; reference: 1.0].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Keep the K most likely tokens; 0 keeps all [default: 50].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling: keep the most likely tokens up to this mass [default: 0.9;
    /// reference: 1.0].
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Repetition penalty on the last --repeat-last-n tokens; 1 is none [default: 1.1;
    /// reference: 1.0].
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    /// How many of the last tokens the repetition penalty looks at [default: 64].
    #[arg(long)]
    pub repeat_last_n: Option<usize>,
    /// At most this many new tokens per step [default: 150].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Prompt plus generation at most this many tokens (the reference's 30B runs'
    /// `max_length=2048`); replaces --max-new-tokens.
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Greedy decoding (same as --temperature 0).
    #[arg(long)]
    pub greedy: bool,
}

impl SamplingArgs {
    /// The sampling settings: the preset's, with the flags given put over them.
    pub fn params(&self, preset: Preset) -> SamplingParams {
        let mut p = preset.sampling();
        if let Some(v) = self.temperature {
            p.temperature = v;
        }
        if let Some(v) = self.top_k {
            p.top_k = (v > 0).then_some(v);
        }
        if let Some(v) = self.top_p {
            p.top_p = Some(v);
        }
        if let Some(v) = self.repeat_penalty {
            p.repeat_penalty = v;
        }
        if let Some(v) = self.repeat_last_n {
            p.repeat_last_n = v;
        }
        if let Some(v) = self.max_new_tokens {
            p.max_new_tokens = v;
        }
        if let Some(v) = self.seed {
            p.seed = v;
        }
        if self.greedy || p.temperature <= 0.0 {
            let seed = p.seed;
            p = SamplingParams {
                seed,
                ..SamplingParams::greedy(p.max_new_tokens)
            };
        }
        p.max_length = self.max_length;
        p
    }
}

/// Model flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: `default` (SmolLM2-135M-Instruct Q4_1), a GGUF path, `hf:owner/repo/file.gguf`,
    /// `owner/repo:file.gguf`, or OpenAI-compatible server(s): `http://HOST:PORT/v1[,URL2,…]`
    /// (llama.cpp server, vLLM, SGLang; see --server-model, --concurrency).
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Device: auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Use the plain `### User:` / `### Assistant:` prompt form instead of the model's
    /// chat template.
    #[arg(long)]
    pub raw_prompt: bool,
    /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to put
    /// on the model, e.g. one written by `trsr train`.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<std::path::PathBuf>,
    /// Accept an adapter whose config names another base model (shapes are still checked).
    #[arg(long)]
    pub ignore_adapter_base: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

impl Default for ModelArgs {
    fn default() -> Self {
        Self {
            model: "default".into(),
            device: "auto".into(),
            raw_prompt: false,
            adapter: None,
            ignore_adapter_base: false,
            remote: RemoteArgs::default(),
        }
    }
}

/// Flags for a model on OpenAI-compatible servers (`--model http://HOST:PORT/v1[,URL2,…]`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// The served model to use on the server(s) (default: the first of GET /v1/models).
    #[arg(long, value_name = "NAME")]
    pub server_model: Option<String>,
    /// Read the servers' API key from this environment variable (default: TRSR_API_KEY).
    /// The key itself is never taken from a flag, logged or stored.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Cases in flight at once on the server(s) (default: the servers' slots where they
    /// say, else 8). Local models use --threads.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Retries of a request on connection errors, 429 and 503 (with backoff and jitter).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub retries: u32,
}

impl RemoteArgs {
    /// Connects to every server of `model` (a comma-separated URL list), checking each
    /// before any work starts.
    pub fn connect(
        &self,
        model: &str,
        raw_prompt: bool,
        yes_word: &str,
        no_word: &str,
    ) -> anyhow::Result<Vec<crate::remote::RemoteModel>> {
        let urls = crate::remote::parse_urls(model)?;
        let api_key = crate::remote::api_key_from_env(self.api_key_env.as_deref())?;
        let mut servers = Vec::with_capacity(urls.len());
        for url in &urls {
            let opts = crate::remote::RemoteOptions {
                server_model: self.server_model.clone(),
                api_key: api_key.clone(),
                raw_prompt,
                yes_word: yes_word.to_string(),
                no_word: no_word.to_string(),
                retry: crate::remote::RetryPolicy {
                    max_retries: self.retries,
                    ..crate::remote::RetryPolicy::default()
                },
                ..crate::remote::RemoteOptions::new(url)
            };
            servers.push(crate::remote::RemoteModel::connect(&opts)?);
        }
        Ok(servers)
    }
}

/// Loads `workers` instances of the model, answering with the templates' yes/no
/// words. Candle's CPU thread pool is process-wide: all instances share the cores.
pub fn load_models(
    args: &ModelArgs,
    templates: &Templates,
    workers: usize,
) -> anyhow::Result<Vec<Box<dyn LanguageModel>>> {
    if crate::remote::is_remote_ref(&args.model) {
        return load_remote(args, templates);
    }
    let model: crate::llm::source::ModelRef = args.model.parse()?;
    let opts = crate::llm::LoadOptions {
        device: args.device.parse().context("--device")?,
        threads: None,
        raw_prompt: args.raw_prompt,
        yes_word: templates.yes.clone(),
        no_word: templates.no.clone(),
        adapter: args.adapter.clone(),
        ignore_adapter_base: args.ignore_adapter_base,
        answer_by_vocab: templates.answer_by_vocab(),
        generic_kernels: false,
    };
    let path = model
        .resolve()
        .with_context(|| format!("finding the model `{}`", args.model))?;
    let mut out: Vec<Box<dyn LanguageModel>> = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let engine = crate::llm::Engine::load_path(&path, &opts)
            .with_context(|| format!("loading the model {}", path.display()))?;
        out.push(Box::new(engine));
    }
    if let Some(first) = out.first() {
        let id = first.identity();
        eprintln!(
            "model {} ({}, context {} tokens, sha256 {}), {} instance(s)",
            id.name,
            id.architecture,
            id.context_len,
            &id.sha256[..id.sha256.len().min(12)],
            out.len()
        );
    }
    Ok(out)
}

/// Instances on the servers of `--model URL1,URL2,…`: `--concurrency` of them (default:
/// the servers' slots, else 8), spread round-robin, so that each case (run by one
/// instance) sends all its requests to one server.
fn load_remote(
    args: &ModelArgs,
    templates: &Templates,
) -> anyhow::Result<Vec<Box<dyn LanguageModel>>> {
    if args.adapter.is_some() {
        anyhow::bail!(
            "--adapter applies to a local model; a server model's adapters are the server's (e.g. vLLM --lora-modules, then --server-model NAME)"
        );
    }
    let servers =
        args.remote
            .connect(&args.model, args.raw_prompt, &templates.yes, &templates.no)?;
    let slots: Option<usize> = servers.iter().map(|s| s.slots()).sum();
    let n = args
        .remote
        .concurrency
        .or(slots)
        .unwrap_or(DEFAULT_REMOTE_CONCURRENCY)
        .max(1);
    for s in &servers {
        let id = s.identity();
        eprintln!(
            "server {} ({}): model {}, context {} tokens, {} slot(s)",
            s.url(),
            s.kind().tag(),
            s.served_model(),
            id.context_len,
            s.slots().map_or("?".to_string(), |n| n.to_string())
        );
        for note in s.notes() {
            eprintln!("note: {note}");
        }
    }
    eprintln!("{n} case(s) in flight at once");
    Ok((0..n)
        .map(|i| Box::new(servers[i % servers.len()].clone()) as Box<dyn LanguageModel>)
        .collect())
}

/// Cases in flight on servers that do not say how many slots they have.
pub const DEFAULT_REMOTE_CONCURRENCY: usize = 8;

/// True when `e` says a server stopped answering (its worker takes no more cases).
pub fn is_server_down(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::remote::RemoteError>()
            .is_some_and(|r| matches!(r, crate::remote::RemoteError::Unreachable { .. }))
    })
}

/// Item ids already present in an output (by a key function), for resuming.
pub fn done_keys<T>(rows: &[T], key: impl Fn(&T) -> String) -> HashSet<String> {
    rows.iter().map(key).collect()
}
