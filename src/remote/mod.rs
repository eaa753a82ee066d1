//! A model served over the OpenAI HTTP API (llama.cpp's `llama-server`, vLLM, SGLang):
//! the second implementation of [`LanguageModel`], so that every job that runs on the
//! in-process engine can run on a serving cluster instead.
//!
//! Why the details are as they are:
//! - Prompts are rendered here (the model's chat template from the server where it exposes
//!   it) and sent as token ids with BOS added explicitly, so the server sees exactly the
//!   text and tokens the in-process engine would, with no tokenizer drift.
//! - P(yes) is exact: the softmax over the yes/no log-probabilities at the last prompt
//!   position (the full-vocabulary normalizer cancels). When a label is outside the
//!   returned top-N the server-specific fallback reads its log-probability (llama.cpp: the
//!   whole vocabulary with `n_probs`; vLLM: `allowed_token_ids`); where no such way exists
//!   scoring stops with an error instead of approximating.
//! - The identity joins the URL, the served model name and the server's own metadata, so
//!   cached results of a server never mix with the in-process engine's or another server's.
//! - The API key comes from the environment only and is never formatted into anything.
//!
//! This module knows HTTP, not candle; it shares the chat-template renderer with `llm`.

pub mod http;
pub mod wire;

use std::io::BufReader;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use sha2::Digest;

use crate::llm::chat::{render_raw, ChatTemplate};
use crate::lm::{
    CancelToken, ChatMessage, Generated, LanguageModel, ModelIdentity, SamplingParams, StopReason,
    TokenDelta,
};
pub use http::{Client, RetryPolicy};
pub use wire::ServerKind;
use wire::{parse_completion, parse_models, Position, SseReader};

/// The top-N log-probabilities asked for first (vLLM's default `--max-logprobs` is 20).
pub const TOP_LOGPROBS: usize = 20;

/// The environment variable the API key is read from unless `--api-key-env` names another.
pub const API_KEY_ENV: &str = "TRSR_API_KEY";

/// Why training refuses a server model (the CLI's and the Train tab's message).
pub const TRAIN_IN_PROCESS: &str = "training runs in-process: load a local model (`default`, a GGUF or safetensors file) to train; a server model (http://…/v1) can summarize, score and evaluate, and the trained adapter can then be served (e.g. vLLM --lora-modules)";

/// What can go wrong with a server. Every message names the URL and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{url}: {what}")]
    BadUrl { url: String, what: String },
    #[error("{url}: cannot connect ({reason}); is the server running? start it or fix the address given to --model")]
    Unreachable { url: String, reason: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: {what}")]
    Protocol { url: String, what: String },
    #[error("{url}: {what}")]
    Unsupported { url: String, what: String },
    #[error("{url}: the connection broke mid-answer ({reason})")]
    Interrupted { url: String, reason: String },
    #[error("{0}")]
    Config(String),
}

impl RemoteError {
    /// True when the server did not answer at all (the case may succeed on a re-run).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable { .. } | RemoteError::Interrupted { .. }
        )
    }
}

/// True when `model` names one or more servers (`http(s)://…`) rather than a local model.
pub fn is_remote_ref(model: &str) -> bool {
    let t = model.trim().to_ascii_lowercase();
    t.starts_with("http://") || t.starts_with("https://")
}

/// Splits `URL1,URL2,…` and checks each: `http(s)://HOST[:PORT]/…/v1`. Returns them
/// without a trailing slash.
pub fn parse_urls(model: &str) -> Result<Vec<String>, RemoteError> {
    let mut out = Vec::new();
    for part in model.split(',') {
        let url = part.trim().trim_end_matches('/').to_string();
        if url.is_empty() {
            continue;
        }
        let lower = url.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"));
        let Some(rest) = rest else {
            return Err(RemoteError::BadUrl {
                url,
                what: "a server address must start with http:// or https://".into(),
            });
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(RemoteError::BadUrl {
                url,
                what: "the address has no host".into(),
            });
        }
        // Credentials in the address (`http://user:key@host/v1`) would travel with it into
        // the model identity, and so into traces, scores, caches, the project and messages.
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.contains('@') {
            return Err(RemoteError::BadUrl {
                url: "(an address with credentials, not repeated here)".into(),
                what: format!(
                    "a server address must not carry credentials (user:key@): they would be \
                     written into traces, caches and the project; put the key in ${API_KEY_ENV} \
                     (or the variable --api-key-env names) instead"
                ),
            });
        }
        if !lower.ends_with("/v1") {
            return Err(RemoteError::BadUrl {
                url,
                what: "a server address must end in /v1 (the OpenAI API root), e.g. http://127.0.0.1:8080/v1".into(),
            });
        }
        if !out.contains(&url) {
            out.push(url);
        }
    }
    if out.is_empty() {
        return Err(RemoteError::Config(
            "--model: no server address given".into(),
        ));
    }
    Ok(out)
}

/// The API key: `$TRSR_API_KEY`, or the variable `--api-key-env` names (then it must be
/// set). `None`: no key (local servers).
pub fn api_key_from_env(var: Option<&str>) -> Result<Option<String>, RemoteError> {
    match var {
        Some(v) => match std::env::var(v) {
            Ok(k) if !k.trim().is_empty() => Ok(Some(k.trim().to_string())),
            _ => Err(RemoteError::Config(format!(
                "--api-key-env {v}: the environment variable {v} is not set; export it with the server's API key"
            ))),
        },
        None => Ok(std::env::var(API_KEY_ENV)
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())),
    }
}

/// How to reach and use one server. Its `Debug` leaves the API key out.
#[derive(Clone)]
pub struct RemoteOptions {
    /// `http(s)://HOST:PORT/v1`.
    pub url: String,
    /// The served model; `None`: the first of `GET /v1/models`.
    pub server_model: Option<String>,
    pub api_key: Option<String>,
    /// Render prompts in the raw `### User:` form instead of the chat template.
    pub raw_prompt: bool,
    pub yes_word: String,
    pub no_word: String,
    pub retry: RetryPolicy,
    /// Requests of one case's candidates in flight at once (after the first warms the
    /// shared prefix).
    pub candidate_fanout: usize,
}

impl std::fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteOptions")
            .field("url", &self.url)
            .field("server_model", &self.server_model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("raw_prompt", &self.raw_prompt)
            .field("yes_word", &self.yes_word)
            .field("no_word", &self.no_word)
            .field("retry", &self.retry)
            .field("candidate_fanout", &self.candidate_fanout)
            .finish()
    }
}

impl RemoteOptions {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.trim().trim_end_matches('/').to_string(),
            server_model: None,
            api_key: None,
            raw_prompt: false,
            yes_word: "yes".into(),
            no_word: "no".into(),
            retry: RetryPolicy::default(),
            candidate_fanout: 21,
        }
    }
}

/// What the server told us once, shared by every instance on it.
struct Server {
    base: String,
    root: String,
    client: Client,
    kind: ServerKind,
    model: String,
    context_len: usize,
    slots: Option<usize>,
    chat: Option<ChatTemplate>,
    raw_prompt: bool,
    /// BOS id when the model wants one in front of every prompt.
    bos: Option<u32>,
    yes_id: u32,
    no_id: u32,
    n_vocab: Option<usize>,
    identity: ModelIdentity,
    notes: Vec<String>,
    fanout: usize,
}

/// A model on an OpenAI-compatible server. Clones share the connection pool and what
/// was learnt at connect; each may be driven from its own thread.
#[derive(Clone)]
pub struct RemoteModel {
    server: Arc<Server>,
}

/// The list of served model names at `url` (for the window's model picker).
pub fn served_models(url: &str, api_key: Option<String>) -> Result<Vec<String>, RemoteError> {
    let url = parse_urls(url)?.remove(0);
    let client = Client::new(api_key, quick_retry());
    let models = list_models(&client, &url)?;
    Ok(models.into_iter().map(|m| m.id).collect())
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 1,
        base_backoff_ms: 200,
        read_timeout_ms: 30_000,
        ..RetryPolicy::default()
    }
}

fn list_models(client: &Client, base: &str) -> Result<Vec<wire::ServedModel>, RemoteError> {
    let url = format!("{base}/models");
    let v = client.get_json(&url).map_err(|e| match e {
        RemoteError::Status { status: 404, .. } => RemoteError::Protocol {
            url: url.clone(),
            what: "HTTP 404: no OpenAI model list here; the address must be the server's /v1 root (e.g. http://127.0.0.1:8080/v1)".into(),
        },
        other => other,
    })?;
    let models = parse_models(&v).map_err(|what| RemoteError::Protocol {
        url: url.clone(),
        what: format!("not an OpenAI-compatible server: {what}"),
    })?;
    if models.is_empty() {
        return Err(RemoteError::Protocol {
            url,
            what: "the server lists no models; start it with a model loaded".into(),
        });
    }
    Ok(models)
}

impl RemoteModel {
    /// Connects: reads the served models, the server's properties, the context length,
    /// the BOS and answer tokens, and checks that exact scoring is possible. Every
    /// failure is one error naming the URL, before any work starts.
    pub fn connect(opts: &RemoteOptions) -> Result<RemoteModel, RemoteError> {
        let base = parse_urls(&opts.url)?.remove(0);
        let root = base[..base.len() - "/v1".len()].to_string();
        let probe = Client::new(opts.api_key.clone(), quick_retry());
        let models = list_models(&probe, &base)?;
        let served =
            match &opts.server_model {
                Some(name) => models.iter().find(|m| &m.id == name).ok_or_else(|| {
                    RemoteError::Config(format!(
                    "{base}: the server has no model `{name}`; it serves: {} (fix --server-model)",
                    models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", ")
                ))
                })?,
                None => &models[0],
            }
            .clone();
        let client = Client::new(opts.api_key.clone(), opts.retry.clone());
        let mut notes = Vec::new();

        // llama.cpp's /props: chat template, BOS/EOS texts, slots, build.
        let props = if served.kind == ServerKind::LlamaCpp {
            probe.get_json(&format!("{root}/props")).ok()
        } else {
            None
        };
        let prop_str = |k: &str| {
            props
                .as_ref()
                .and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let chat = match prop_str("chat_template") {
            t if t.trim().is_empty() => None,
            t => Some(
                ChatTemplate::from_str(&t, &prop_str("bos_token"), &prop_str("eos_token"))
                    .map_err(|e| RemoteError::Protocol {
                        url: format!("{root}/props"),
                        what: format!("the server's chat template does not compile here: {e}"),
                    })?
                    .with_origin(format!("{root}/props (`chat_template`)")),
            ),
        };
        let slots = props
            .as_ref()
            .and_then(|p| p.get("total_slots"))
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        let context_len = served
            .context_len
            .or_else(|| {
                props
                    .as_ref()
                    .and_then(|p| p.pointer("/default_generation_settings/n_ctx"))
                    .and_then(Value::as_u64)
                    .map(|n| n as usize)
            })
            .ok_or_else(|| RemoteError::Unsupported {
                url: format!("{base}/models"),
                what: "the server does not report its context length (max_model_len or meta.n_ctx)"
                    .into(),
            })?;
        let n_vocab = served
            .metadata
            .pointer("/meta/n_vocab")
            .and_then(Value::as_u64)
            .map(|n| n as usize);

        let mut server = Server {
            base: base.clone(),
            root,
            client,
            kind: served.kind.clone(),
            model: served.id.clone(),
            context_len,
            slots,
            chat,
            raw_prompt: opts.raw_prompt,
            bos: None,
            yes_id: 0,
            no_id: 0,
            n_vocab,
            identity: ModelIdentity {
                name: String::new(),
                sha256: String::new(),
                architecture: String::new(),
                context_len,
            },
            notes: Vec::new(),
            fanout: opts.candidate_fanout.max(1),
        };
        if !server.raw_prompt && server.chat.is_none() && server.kind != ServerKind::Vllm {
            return Err(RemoteError::Unsupported {
                url: base,
                what: "the server does not expose the model's chat template; pass --raw-prompt to use the plain `### User:` form".into(),
            });
        }

        // BOS: what the server's tokenizer adds with special tokens on.
        let with = server.tokenize("a", true)?;
        let without = server.tokenize("a", false)?;
        if with.len() == without.len() + 1 && with[1..] == without[..] {
            server.bos = Some(with[0]);
        }
        // The answer tokens, as the engine picks them: the first token of each word.
        let mut answer = |word: &str| -> Result<u32, RemoteError> {
            let ids = server.tokenize(word, false)?;
            let first = *ids.first().ok_or_else(|| {
                RemoteError::Config(format!(
                    "{}: the answer word `{word}` encodes to no tokens",
                    server.base
                ))
            })?;
            if ids.len() > 1 {
                notes.push(format!(
                    "answer word `{word}` is not a single token; scoring uses its first token"
                ));
            }
            Ok(first)
        };
        let yes_id = answer(&opts.yes_word)?;
        let no_id = answer(&opts.no_word)?;
        if yes_id == no_id {
            return Err(RemoteError::Config(format!(
                "{}: the answer words `{}` and `{}` start with the same token",
                server.base, opts.yes_word, opts.no_word
            )));
        }
        server.yes_id = yes_id;
        server.no_id = no_id;
        server.notes = notes;

        let build = prop_str("build_info");
        let identity_doc = json!({
            "url": server.base,
            "served_model": server.model,
            "server": server.kind.tag(),
            "metadata": served.metadata,
            "build": build,
        });
        server.identity = ModelIdentity {
            // The served name's last path part (llama.cpp serves the GGUF path); the full
            // name is in the hash.
            name: format!(
                "{} @ {}",
                server.model.rsplit('/').next().unwrap_or(&server.model),
                server.base
            ),
            sha256: hex::encode(sha2::Sha256::digest(identity_doc.to_string().as_bytes())),
            architecture: format!("remote {}", server.kind.tag()),
            context_len,
        };

        // Exact scoring needs token ids with the log-probabilities, and the top-N asked for.
        let probe_ids = server.encode("Hello")?;
        let answer = server.complete_one(&probe_ids, TOP_LOGPROBS, &json!({})).map_err(|e| match e {
            RemoteError::Status { url, status: 400, body } => RemoteError::Unsupported {
                url,
                what: format!(
                    "the server refused {TOP_LOGPROBS} log-probabilities per token (HTTP 400: {body}); exact scoring needs them: start it allowing at least {TOP_LOGPROBS} (vLLM: --max-logprobs {TOP_LOGPROBS})"
                ),
            },
            other => other,
        })?;
        let pos = answer.first().cloned().unwrap_or_default();
        if pos.top.is_empty() || pos.top.iter().any(|t| t.id.is_none()) {
            return Err(RemoteError::Unsupported {
                url: format!("{}/completions", server.base),
                what: "the server returns no token ids with its log-probabilities; exact P(yes) needs them (llama.cpp, or vLLM with return_tokens_as_token_ids)".into(),
            });
        }
        if pos.top.len() < TOP_LOGPROBS.min(2) {
            return Err(RemoteError::Unsupported {
                url: format!("{}/completions", server.base),
                what: format!(
                    "the server returned {} log-probabilities per token where {TOP_LOGPROBS} were asked; exact scoring needs them",
                    pos.top.len()
                ),
            });
        }
        Ok(RemoteModel {
            server: Arc::new(server),
        })
    }

    /// The server's API root (`…/v1`).
    pub fn url(&self) -> &str {
        &self.server.base
    }

    pub fn served_model(&self) -> &str {
        &self.server.model
    }

    pub fn kind(&self) -> &ServerKind {
        &self.server.kind
    }

    /// Parallel slots the server reports (llama.cpp `total_slots`), if any.
    pub fn slots(&self) -> Option<usize> {
        self.server.slots
    }

    /// Notes for the user (e.g. a multi-token answer word).
    pub fn notes(&self) -> &[String] {
        &self.server.notes
    }

    /// True once the server stopped answering during this run.
    pub fn is_down(&self) -> bool {
        self.server.client.is_down()
    }

    /// Token ids of a prompt as sent: the server's tokenization, BOS in front when the
    /// model wants one.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, RemoteError> {
        self.server.encode(prompt)
    }

    /// P(yes) of one full prompt given as token ids (exact; see the module docs).
    pub fn score_ids(&self, ids: &[u32]) -> Result<f32, RemoteError> {
        self.server.score_ids(ids)
    }
}

impl Server {
    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, RemoteError> {
        let url = format!("{}/tokenize", self.root);
        let body = match self.kind {
            ServerKind::LlamaCpp => {
                json!({"content": text, "add_special": add_special, "parse_special": true})
            }
            _ => json!({"model": self.model, "prompt": text, "add_special_tokens": add_special}),
        };
        let v = self.client.post_json(&url, &body).map_err(|e| match e {
            RemoteError::Status { status: 404, .. } => RemoteError::Unsupported {
                url: url.clone(),
                what:
                    "the server has no /tokenize; exact token counts and token-id prompts need it"
                        .into(),
            },
            other => other,
        })?;
        v.get("tokens")
            .and_then(Value::as_array)
            .ok_or_else(|| RemoteError::Protocol {
                url: url.clone(),
                what: "the answer has no `tokens` list".into(),
            })?
            .iter()
            .map(|t| {
                t.as_u64()
                    .or_else(|| t.get("id").and_then(Value::as_u64))
                    .map(|n| n as u32)
                    .ok_or_else(|| RemoteError::Protocol {
                        url: url.clone(),
                        what: format!("a token is not an id: {t}"),
                    })
            })
            .collect()
    }

    fn encode(&self, prompt: &str) -> Result<Vec<u32>, RemoteError> {
        let mut ids = Vec::new();
        if let Some(b) = self.bos {
            ids.push(b);
        }
        ids.extend(self.tokenize(prompt, false)?);
        Ok(ids)
    }

    /// The request fields every completion gets on this server.
    fn completion_body(&self, ids: &[u32], max_tokens: usize, top_n: usize) -> Value {
        let mut b = json!({
            "model": self.model,
            "prompt": ids,
            "max_tokens": max_tokens,
            "temperature": 0.0,
        });
        if top_n > 0 {
            b["logprobs"] = json!(top_n);
        }
        match self.kind {
            ServerKind::LlamaCpp => {
                b["cache_prompt"] = json!(true);
                if top_n > 0 {
                    b["n_probs"] = json!(top_n);
                }
            }
            ServerKind::Vllm | ServerKind::Sglang => {
                b["return_tokens_as_token_ids"] = json!(true);
            }
            ServerKind::Other(_) => {}
        }
        b
    }

    /// A non-streamed one-token completion with `top_n` log-probabilities (plus `extra`
    /// fields); returns its positions.
    fn complete_one(
        &self,
        ids: &[u32],
        top_n: usize,
        extra: &Value,
    ) -> Result<Vec<Position>, RemoteError> {
        let url = format!("{}/completions", self.base);
        let mut body = self.completion_body(ids, 1, top_n);
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let v = self.client.post_json(&url, &body)?;
        let chunk = parse_completion(&v).map_err(|what| RemoteError::Protocol {
            url: url.clone(),
            what,
        })?;
        Ok(chunk.positions)
    }

    fn check_fits(&self, prompt_tokens: usize, new_tokens: usize) -> Result<(), RemoteError> {
        if prompt_tokens + new_tokens > self.context_len {
            return Err(RemoteError::Config(format!(
                "{}: the prompt has {prompt_tokens} tokens but the server's context is {} (with {new_tokens} new tokens requested); shorten the prompt or start the server with a longer context (llama-server -c, vLLM --max-model-len)",
                self.base, self.context_len
            )));
        }
        Ok(())
    }

    fn score_ids(&self, ids: &[u32]) -> Result<f32, RemoteError> {
        self.check_fits(ids.len(), 1)?;
        let url = format!("{}/completions", self.base);
        let pos = self
            .complete_one(ids, TOP_LOGPROBS, &json!({}))?
            .into_iter()
            .next()
            .ok_or_else(|| RemoteError::Protocol {
                url: url.clone(),
                what: "the answer has no log-probabilities for the answer position".into(),
            })?;
        let find =
            |p: &Position, id: u32| p.top.iter().find(|t| t.id == Some(id)).map(|t| t.logprob);
        let mut yes = find(&pos, self.yes_id);
        let mut no = find(&pos, self.no_id);
        if yes.is_none() || no.is_none() {
            match &self.kind {
                ServerKind::LlamaCpp => {
                    // llama.cpp's probabilities are the softmax of the raw logits over the
                    // whole vocabulary: asking for all of them finds any label.
                    let n = self.n_vocab.ok_or_else(|| RemoteError::Unsupported {
                        url: url.clone(),
                        what: "an answer label is outside the top log-probabilities and the server does not report its vocabulary size (meta.n_vocab) to ask for all".into(),
                    })?;
                    let all = self.complete_one(ids, n, &json!({}))?;
                    if let Some(p) = all.first() {
                        yes = yes.or_else(|| find(p, self.yes_id));
                        no = no.or_else(|| find(p, self.no_id));
                    }
                }
                ServerKind::Vllm => {
                    // vLLM returns the raw log-probability of the sampled token; allowing
                    // only the label makes the label the sampled token.
                    let min_top = pos.top.iter().map(|t| t.logprob).fold(f64::INFINITY, f64::min);
                    for (slot, id) in [(&mut yes, self.yes_id), (&mut no, self.no_id)] {
                        if slot.is_some() {
                            continue;
                        }
                        let p = self.complete_one(ids, 1, &json!({"allowed_token_ids": [id]}))?;
                        let lp = p
                            .first()
                            .filter(|p| p.id == Some(id))
                            .and_then(|p| p.logprob)
                            .ok_or_else(|| RemoteError::Protocol {
                                url: url.clone(),
                                what: format!("allowed_token_ids [{id}] did not return that token's log-probability"),
                            })?;
                        if lp > min_top {
                            return Err(RemoteError::Unsupported {
                                url: url.clone(),
                                what: "the server's log-probabilities are after its sampling steps, so a label's true value cannot be read; start vLLM with --logprobs-mode raw_logprobs".into(),
                            });
                        }
                        *slot = Some(lp);
                    }
                }
                other => {
                    return Err(RemoteError::Unsupported {
                        url,
                        what: format!(
                            "an answer label is outside the top {TOP_LOGPROBS} log-probabilities and this server ({}) offers no way to read a given token's log-probability; exact scores cannot be had (use llama.cpp or vLLM)",
                            other.tag()
                        ),
                    })
                }
            }
        }
        match (yes, no) {
            (Some(y), Some(n)) => Ok((1.0 / (1.0 + (n - y).exp())) as f32),
            _ => Err(RemoteError::Unsupported {
                url,
                what: "the server did not return the log-probability of an answer label; exact scores cannot be had".into(),
            }),
        }
    }

    fn render(&self, messages: &[ChatMessage]) -> Result<String, RemoteError> {
        if self.raw_prompt {
            return Ok(render_raw(messages));
        }
        if let Some(t) = &self.chat {
            return t.render(messages, true).map_err(|e| RemoteError::Protocol {
                url: format!("{}/props", self.root),
                what: format!("rendering the server's chat template: {e}"),
            });
        }
        // vLLM: its /tokenize renders the chat template; /detokenize gives the text back.
        let url = format!("{}/tokenize", self.root);
        let v = self.client.post_json(
            &url,
            &json!({"model": self.model, "messages": messages, "add_generation_prompt": true, "add_special_tokens": false}),
        )?;
        let tokens = v
            .get("tokens")
            .cloned()
            .ok_or_else(|| RemoteError::Protocol {
                url: url.clone(),
                what: "the answer has no `tokens` list".into(),
            })?;
        let url = format!("{}/detokenize", self.root);
        let v = self
            .client
            .post_json(&url, &json!({"model": self.model, "tokens": tokens}))?;
        v.get("prompt")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| RemoteError::Protocol {
                url,
                what: "the answer has no `prompt` text".into(),
            })
    }
}

impl RemoteModel {
    /// The token ids scoring sends for each `prefix + suffix`: the prefix as a prompt
    /// (with the start token where the model adds one), then the suffix.
    fn scored_ids(&self, prefix: &str, suffixes: &[String]) -> anyhow::Result<Vec<Vec<u32>>> {
        let s = &*self.server;
        let prefix_ids = s.encode(prefix)?;
        suffixes
            .iter()
            .map(|suf| {
                let mut ids = prefix_ids.clone();
                ids.extend(s.tokenize(suf, false)?);
                Ok(ids)
            })
            .collect()
    }

    /// P(yes) per candidate, each text cut to `max_tokens` ids when given.
    fn score_cut(
        &mut self,
        prefix: &str,
        suffixes: &[String],
        max_tokens: Option<usize>,
    ) -> anyhow::Result<Vec<f32>> {
        let s = &*self.server;
        let mut prompts = self.scored_ids(prefix, suffixes)?;
        for ids in &mut prompts {
            if let Some(m) = max_tokens {
                ids.truncate(m);
            }
            s.check_fits(ids.len(), 1)?;
        }
        let Some((first, rest)) = prompts.split_first() else {
            return Ok(Vec::new());
        };
        // The first request warms the server's cache with the shared prefix; the rest go
        // together.
        let mut out = vec![s.score_ids(first)?];
        let mut results: Vec<Option<Result<f32, RemoteError>>> =
            (0..rest.len()).map(|_| None).collect();
        for (chunk_ids, chunk_out) in rest.chunks(s.fanout).zip(results.chunks_mut(s.fanout)) {
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunk_ids
                    .iter()
                    .map(|ids| scope.spawn(move || s.score_ids(ids)))
                    .collect();
                for (h, slot) in handles.into_iter().zip(chunk_out.iter_mut()) {
                    *slot = Some(h.join().unwrap_or_else(|_| {
                        Err(RemoteError::Config("a scoring thread panicked".into()))
                    }));
                }
            });
        }
        for r in results {
            out.push(r.ok_or_else(|| anyhow::anyhow!("a candidate was not scored"))??);
        }
        Ok(out)
    }
}

impl LanguageModel for RemoteModel {
    fn identity(&self) -> ModelIdentity {
        self.server.identity.clone()
    }

    fn context_len(&self) -> usize {
        self.server.context_len
    }

    fn count_tokens(&self, text: &str) -> anyhow::Result<usize> {
        Ok(self.server.tokenize(text, false)?.len())
    }

    fn render_chat(&self, messages: &[ChatMessage]) -> anyhow::Result<String> {
        Ok(self.server.render(messages)?)
    }

    fn generate(
        &mut self,
        prompt: &str,
        params: &SamplingParams,
        cancel: &CancelToken,
        on_token: &mut dyn FnMut(&TokenDelta),
    ) -> anyhow::Result<Generated> {
        let s = &*self.server;
        let ids = s.encode(prompt)?;
        if ids.is_empty() {
            anyhow::bail!("the prompt is empty");
        }
        s.check_fits(ids.len(), params.max_new_tokens)?;
        let t0 = Instant::now();
        let mut out = Generated {
            text: String::new(),
            prompt_tokens: ids.len(),
            new_tokens: 0,
            stop: StopReason::MaxTokens,
            prefill_ms: 0.0,
            decode_ms: 0.0,
        };
        if params.max_new_tokens == 0 {
            return Ok(out);
        }
        let mut body = s.completion_body(&ids, params.max_new_tokens, 1);
        body["stream"] = json!(true);
        body["seed"] = json!(params.seed & 0xffff_ffff);
        if !params.stop.is_empty() {
            body["stop"] = json!(params.stop);
        }
        if params.temperature > 0.0 {
            body["temperature"] = json!(params.temperature);
            if let Some(p) = params.top_p {
                body["top_p"] = json!(p);
            }
            if let Some(k) = params.top_k {
                body["top_k"] = json!(k);
            }
        } else if s.kind == ServerKind::LlamaCpp {
            body["top_k"] = json!(1);
        }
        match s.kind {
            ServerKind::LlamaCpp => {
                body["repeat_penalty"] = json!(params.repeat_penalty);
                body["repeat_last_n"] = json!(params.repeat_last_n);
            }
            ServerKind::Vllm | ServerKind::Sglang => {
                body["repetition_penalty"] = json!(params.repeat_penalty);
            }
            ServerKind::Other(_) => {}
        }
        let url = format!("{}/completions", s.base);
        let resp = s.client.post_stream(&url, &body)?;
        let mut first_at: Option<Instant> = None;
        let mut finish: Option<String> = None;
        for event in SseReader::new(BufReader::new(resp.into_reader())) {
            if cancel.is_cancelled() {
                // Dropping the stream closes the connection; the server stops generating.
                out.stop = StopReason::Cancelled;
                break;
            }
            let data = event.map_err(|e| RemoteError::Interrupted {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            let v: Value = serde_json::from_str(&data).map_err(|e| RemoteError::Protocol {
                url: url.clone(),
                what: format!("a streamed event is not JSON ({e})"),
            })?;
            let chunk = parse_completion(&v).map_err(|what| RemoteError::Protocol {
                url: url.clone(),
                what,
            })?;
            if !chunk.positions.is_empty() || !chunk.text.is_empty() {
                first_at.get_or_insert_with(Instant::now);
            }
            let n = chunk.positions.len();
            if n == 0 && !chunk.text.is_empty() {
                out.new_tokens += 1;
                on_token(&TokenDelta {
                    token: 0,
                    text: chunk.text.clone(),
                    logprob: f32::NAN,
                });
            }
            for (i, p) in chunk.positions.iter().enumerate() {
                out.new_tokens += 1;
                on_token(&TokenDelta {
                    token: p.id.unwrap_or(0),
                    text: if i + 1 == n {
                        chunk.text.clone()
                    } else {
                        String::new()
                    },
                    logprob: p.logprob.map_or(f32::NAN, |l| l as f32),
                });
            }
            out.text.push_str(&chunk.text);
            if chunk.finish_reason.is_some() {
                finish = chunk.finish_reason;
            }
        }
        if out.stop != StopReason::Cancelled {
            out.stop = match finish.as_deref() {
                Some("length") => StopReason::MaxTokens,
                Some(_) => StopReason::Eos,
                None => {
                    return Err(RemoteError::Interrupted {
                        url,
                        reason: "the stream ended without a finish reason".into(),
                    }
                    .into())
                }
            };
        }
        let end = Instant::now();
        let first = first_at.unwrap_or(end);
        out.prefill_ms = (first - t0).as_secs_f64() * 1000.0;
        out.decode_ms = (end - first).as_secs_f64() * 1000.0;
        Ok(out)
    }

    fn scored_tokens(&self, prefix: &str, suffixes: &[String]) -> anyhow::Result<Vec<usize>> {
        Ok(self
            .scored_ids(prefix, suffixes)?
            .iter()
            .map(Vec::len)
            .collect())
    }

    fn score_yes_no(&mut self, prefix: &str, suffixes: &[String]) -> anyhow::Result<Vec<f32>> {
        self.score_cut(prefix, suffixes, None)
    }

    fn score_yes_no_truncated(
        &mut self,
        prefix: &str,
        suffixes: &[String],
        max_tokens: usize,
    ) -> anyhow::Result<Vec<f32>> {
        crate::lm::check_score_cut(max_tokens)?;
        self.score_cut(prefix, suffixes, Some(max_tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_split() {
        assert!(is_remote_ref("http://127.0.0.1:8080/v1"));
        assert!(is_remote_ref(" HTTPS://x/v1"));
        assert!(!is_remote_ref("default"));
        assert!(!is_remote_ref("models/http.gguf"));
        assert_eq!(
            parse_urls("http://a:1/v1/, https://b/v1,http://a:1/v1").unwrap(),
            vec!["http://a:1/v1".to_string(), "https://b/v1".to_string()]
        );
        let e = parse_urls("http://a:1/api").unwrap_err().to_string();
        assert!(
            e.contains("http://a:1/api") && e.contains("must end in /v1"),
            "{e}"
        );
        assert!(parse_urls("ftp://a/v1").is_err());
        assert!(parse_urls("http:///v1").is_err());
        assert!(parse_urls(" , ").is_err());
    }

    #[test]
    fn credentials_in_the_address_are_refused_without_repeating_them() {
        for url in [
            "http://user:sk-secret-1@host:8080/v1",
            "https://sk-secret-1@host/v1",
        ] {
            let e = parse_urls(url).unwrap_err().to_string();
            assert!(!e.contains("sk-secret-1"), "{e}");
            assert!(e.contains(API_KEY_ENV), "{e}");
        }
        // An `@` later in the path is not in the authority.
        assert!(parse_urls("http://host/x@y/v1").is_ok());
    }

    #[test]
    fn remote_options_debug_leaves_the_key_out() {
        let opts = RemoteOptions {
            api_key: Some("sk-secret-2".into()),
            ..RemoteOptions::new("http://h/v1")
        };
        let d = format!("{opts:?}");
        assert!(!d.contains("sk-secret-2") && d.contains("<set>"), "{d}");
    }

    #[test]
    fn an_api_key_variable_that_is_not_set_is_an_error() {
        let e = api_key_from_env(Some("TRSR_TEST_SURELY_UNSET_VAR_1234"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("TRSR_TEST_SURELY_UNSET_VAR_1234"), "{e}");
    }
}
