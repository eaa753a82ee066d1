//! Inference on candle: model loading, tokenizer, generation, yes/no scoring. Only this module knows candle.
//!
//! [`Engine`] owns the weights ([`model::Model`]), the tokenizer, the chat template and the
//! explicit KV caches. Generation is a step API ([`Engine::start`], [`Engine::next_token`],
//! [`Engine::finish`]); scoring computes a user's shared prefix once and evaluates the
//! candidate suffixes from it in batches ([`Engine::score_yes_no`]).

/// `unroll!(N, |i| body)`: the body for `i = 0..N` (N <= 8, a constant), written out so
/// that the accumulator arrays indexed by `i` stay in registers.
#[cfg(target_arch = "x86_64")]
macro_rules! unroll {
    ($n:expr, |$i:ident| $body:block) => {
        unroll!(@ $n, $i, $body, 0, 1, 2, 3, 4, 5, 6, 7)
    };
    (@ $n:expr, $i:ident, $body:block, $($k:literal),*) => {
        $(
            if $k < $n {
                let $i: usize = $k;
                $body
            }
        )*
    };
}

pub mod chat;
pub mod config;
pub mod cpu;
pub mod device;
pub mod error;
pub mod fetch;
pub mod finetune;
pub mod full;
pub mod generate;
pub mod gguf;
pub mod lora;
pub mod model;
pub mod score;
pub mod source;
pub mod tokenizer;
pub mod train;
pub(crate) mod weights;

pub use cpu::par;

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use candle_core::Tensor;

pub use error::LlmError;
pub use generate::Generation;

use crate::lm::{
    CancelToken, ChatMessage, Generated, LanguageModel, ModelIdentity, SamplingParams, TokenDelta,
};

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DevicePref {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
    Metal,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LoadOptions {
    pub device: DevicePref,
    /// CPU threads for candle's kernels (process-wide; `None`: all cores).
    pub threads: Option<usize>,
    /// Render prompts in the paper's raw `### User:` form instead of the chat template.
    pub raw_prompt: bool,
    pub yes_word: String,
    pub no_word: String,
    /// A PEFT LoRA adapter folder to put on the model (merged into dense weights).
    #[serde(default)]
    pub adapter: Option<std::path::PathBuf>,
    /// Accept an adapter whose `base_model_name_or_path` names another model (shapes
    /// are still checked).
    #[serde(default)]
    pub ignore_adapter_base: bool,
    /// Take the answer tokens as the vocabulary entries spelled exactly `yes_word` /
    /// `no_word`, as the reference's `tokenizer.convert_tokens_to_ids('yes')` does (on a
    /// SentencePiece vocabulary that is the piece without the `▁` word mark), instead of
    /// the first token the word encodes to.
    #[serde(default)]
    pub answer_by_vocab: bool,
    /// Run the generic path (candle's operations, the code a GPU runs) on the CPU too,
    /// instead of the engine's CPU kernels: for comparing the two here. Also switched on
    /// by `TRSR_GENERIC_KERNELS=1`. No effect on a GPU.
    #[serde(default)]
    pub generic_kernels: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DevicePref::Auto,
            threads: None,
            raw_prompt: false,
            yes_word: "yes".into(),
            no_word: "no".into(),
            adapter: None,
            ignore_adapter_base: false,
            answer_by_vocab: false,
            generic_kernels: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub identity: ModelIdentity,
    pub device: String,
    pub n_params: u64,
    pub weight_form: String,
    pub load_ms: f64,
}

/// The yes/no answer tokens and their rows of the output matrix.
pub(crate) struct AnswerHead {
    pub yes_id: u32,
    pub no_id: u32,
    /// `[2, hidden]`: row 0 yes, row 1 no.
    pub rows: Tensor,
    /// Notes for the user (e.g. a word that is not a single token).
    pub notes: Vec<String>,
}

pub struct Engine {
    pub(crate) model: model::Model,
    pub(crate) tokenizer: tokenizer::Tokenizer,
    pub(crate) chat: Option<chat::ChatTemplate>,
    pub(crate) info: ModelInfo,
    pub(crate) opts: LoadOptions,
    pub(crate) add_bos: bool,
    pub(crate) answer: AnswerHead,
    /// The last scoring prefix (token ids) and its keys/values.
    pub(crate) prefix: Option<(Vec<u32>, model::KvCache)>,
    /// SHA-256 of the base weights (without any adapter).
    pub(crate) base_sha256: String,
    /// The file (or Hugging Face folder) the weights came from.
    pub(crate) source: std::path::PathBuf,
}

/// What a model file gives the engine before the options apply.
struct Parts {
    model: model::Model,
    tokenizer: tokenizer::Tokenizer,
    chat: Option<chat::ChatTemplate>,
    /// Whether prompts start with the BOS token.
    add_bos: bool,
    /// SHA-256 of the weights (hex).
    sha256: String,
}

impl Engine {
    /// Loads the model a reference names (resolving `default` and hub references first).
    pub fn load(model: &source::ModelRef, opts: &LoadOptions) -> anyhow::Result<Engine> {
        let path = model.resolve()?;
        Self::load_path(&path, opts)
    }

    /// Loads a GGUF file, or Hugging Face weights: a folder (or a `.safetensors` file in
    /// it) with `config.json`, `tokenizer.json` and optionally `tokenizer_config.json`.
    /// A folder without `config.json` but with a `model.gguf` (what `trsr train --full`
    /// writes from a GGUF base) loads that file, named after the folder.
    pub fn load_path(path: &Path, opts: &LoadOptions) -> anyhow::Result<Engine> {
        let t0 = Instant::now();
        par::init(opts.threads);
        let device = device::select(&opts.device)?;
        let generic = opts.generic_kernels || cpu::generic_forced_by_env();
        cpu::with_generic(generic && device.is_cpu(), || {
            Self::load_on(path, opts, &device, t0)
        })
        .map_err(|e| device::explain_oom(e, &format!("loading {}", path.display()), &device))
    }

    /// [`Engine::load_path`] on `device`, inside the kernel choice's scope.
    fn load_on(
        path: &Path,
        opts: &LoadOptions,
        device: &candle_core::Device,
        t0: Instant,
    ) -> anyhow::Result<Engine> {
        let gguf_in_dir = path.join(full::GGUF_FILE);
        let folder_gguf =
            path.is_dir() && !path.join("config.json").is_file() && gguf_in_dir.is_file();
        let source = if folder_gguf {
            gguf_in_dir.clone()
        } else {
            path.to_path_buf()
        };
        let is_st =
            !folder_gguf && (path.is_dir() || path.extension().is_some_and(|e| e == "safetensors"));
        let Parts {
            mut model,
            tokenizer,
            chat,
            add_bos,
            mut sha256,
        } = if is_st {
            let dir = if path.is_dir() {
                path
            } else {
                path.parent().unwrap_or(Path::new("."))
            };
            Self::parts_safetensors(dir, device)?
        } else {
            Self::parts_gguf(&source, device)?
        };
        let mut name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let base_sha256 = sha256.clone();
        if let Some(dir) = &opts.adapter {
            let adapter = lora::Adapter::load(dir)?;
            if !opts.ignore_adapter_base {
                if let Some(msg) = lora::base_name_mismatch(&adapter, &name) {
                    anyhow::bail!(
                        "{}: {msg}; use a matching base model, or accept it with \
                         --ignore-adapter-base",
                        dir.display()
                    );
                }
            }
            lora::apply(&mut model, Some(&adapter), true)?;
            (name, sha256) = with_adapter_identity(&name, &sha256, dir)?;
        }
        let answer = answer_head(
            &model,
            &tokenizer,
            &opts.yes_word,
            &opts.no_word,
            opts.answer_by_vocab,
        )?;
        let info = ModelInfo {
            identity: ModelIdentity {
                name,
                sha256,
                architecture: model.config.arch.name().to_string(),
                context_len: model.config.context_len,
            },
            device: if model.generic {
                format!("{} generic path", device::describe(model.device()))
            } else if model.flash_attention() {
                format!("{}, flash attention", device::describe(model.device()))
            } else {
                device::describe(model.device())
            },
            n_params: model.n_params,
            weight_form: model.describe_form(),
            load_ms: t0.elapsed().as_secs_f64() * 1000.0,
        };
        Ok(Engine {
            model,
            tokenizer,
            chat,
            info,
            opts: opts.clone(),
            add_bos,
            answer,
            prefix: None,
            base_sha256,
            source,
        })
    }

    fn parts_gguf(path: &Path, device: &candle_core::Device) -> anyhow::Result<Parts> {
        let (content, mut file) = model::read_gguf(path)?;
        let model = model::Model::from_gguf(&content, &mut file, path, device)?;
        let tokenizer = tokenizer::Tokenizer::from_gguf(&content)
            .with_context(|| format!("building the tokenizer of {}", path.display()))?;
        let chat = chat::ChatTemplate::from_gguf(&content, &tokenizer)
            .with_context(|| format!("reading the chat template of {}", path.display()))?
            .map(|t| t.with_origin(format!("{} (`tokenizer.chat_template`)", path.display())));
        let tok_model = content
            .metadata
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let add_bos = content
            .metadata
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(tok_model == "llama");
        let sha256 =
            source::file_sha256(path).with_context(|| format!("hashing {}", path.display()))?;
        Ok(Parts {
            model,
            tokenizer,
            chat,
            add_bos,
            sha256,
        })
    }

    fn parts_safetensors(dir: &Path, device: &candle_core::Device) -> anyhow::Result<Parts> {
        let model = model::Model::from_safetensors(dir, device)?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = tokenizer::Tokenizer::from_file(&tok_path)
            .with_context(|| format!("reading {}", tok_path.display()))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
            Ok(t) => serde_json::from_str(&t)
                .with_context(|| format!("{}: invalid JSON", cfg_path.display()))?,
            Err(_) => serde_json::Value::Null,
        };
        let special = |k: &str| -> String {
            match cfg.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v
                    .get("content")
                    .and_then(|c| c.as_str())
                    .unwrap_or("")
                    .to_string(),
                None => String::new(),
            }
        };
        let chat = match cfg.get("chat_template").and_then(|v| v.as_str()) {
            Some(t) => Some(
                chat::ChatTemplate::from_str(t, &special("bos_token"), &special("eos_token"))
                    .with_context(|| format!("chat template in {}", cfg_path.display()))?
                    .with_origin(format!("{} (`chat_template`)", cfg_path.display())),
            ),
            None => None,
        };
        let add_bos = cfg
            .get("add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(model.config.arch == model::Arch::Llama);
        let mut hashes = String::new();
        let mut files: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "safetensors" || x == "json")
            })
            .collect();
        files.sort();
        for f in files {
            hashes.push_str(
                &source::file_sha256(&f).with_context(|| format!("hashing {}", f.display()))?,
            );
        }
        let sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(hashes.as_bytes()))
        };
        Ok(Parts {
            model,
            tokenizer,
            chat,
            add_bos,
            sha256,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The file (or Hugging Face folder) the weights were loaded from.
    pub fn source_path(&self) -> &Path {
        &self.source
    }

    pub fn tokenizer(&self) -> &tokenizer::Tokenizer {
        &self.tokenizer
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &model::Config {
        &self.model.config
    }

    /// Notes about the answer words (e.g. "`yes` is not a single token; using its first").
    pub fn answer_notes(&self) -> &[String] {
        &self.answer.notes
    }

    /// The yes and no token ids scoring compares.
    pub fn answer_ids(&self) -> (u32, u32) {
        (self.answer.yes_id, self.answer.no_id)
    }

    /// Puts a LoRA adapter on the model at run time (not merged), or takes it off with
    /// `None`: used to score with the weights of a training run. The identity names the
    /// adapter's folder when it has one. Fails if an adapter was merged at load.
    pub fn set_adapter(
        &mut self,
        adapter: Option<&lora::Adapter>,
        label: Option<&str>,
    ) -> anyhow::Result<()> {
        lora::apply(&mut self.model, adapter, false)?;
        self.prefix = None;
        let base = self
            .info
            .identity
            .name
            .split('+')
            .next()
            .unwrap_or_default()
            .to_string();
        let base_sha = self.base_sha256.clone();
        match (adapter, label) {
            (Some(a), label) => {
                let label = label.map(str::to_string).unwrap_or_else(|| "lora".into());
                self.info.identity.name = format!("{base}+{label}");
                let mut h = sha2::Sha256::new();
                use sha2::Digest;
                h.update(base_sha.as_bytes());
                for p in a.modules.values() {
                    for t in [&p.a, &p.b] {
                        for v in t.flatten_all()?.to_vec1::<f32>()? {
                            h.update(v.to_le_bytes());
                        }
                    }
                }
                self.info.identity.sha256 = hex::encode(h.finalize());
            }
            (None, _) => {
                self.info.identity.name = base;
                self.info.identity.sha256 = base_sha;
            }
        }
        Ok(())
    }

    /// The loaded model (for training).
    pub fn model(&self) -> &model::Model {
        &self.model
    }

    /// Drops the held scoring prefix (its keys and values).
    pub fn clear_prefix_cache(&mut self) {
        self.prefix = None;
    }

    /// Token ids of a prompt as the engine feeds it (BOS added when the model wants it).
    pub fn encode_prompt(&self, prompt: &str) -> anyhow::Result<Vec<u32>> {
        Ok(self.tokenizer.encode(prompt, self.add_bos)?)
    }
}

/// The identity of a model with an adapter: `model+adapter-folder`, and a SHA-256 over
/// the base's and the adapter files'.
fn with_adapter_identity(name: &str, sha256: &str, dir: &Path) -> anyhow::Result<(String, String)> {
    use sha2::Digest;
    let label = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "lora".into());
    let adapter_sha = lora::Adapter::files_sha256(dir)?;
    let sha = hex::encode(sha2::Sha256::digest(
        format!("{sha256}{adapter_sha}").as_bytes(),
    ));
    Ok((format!("{name}+{label}"), sha))
}

fn answer_head(
    model: &model::Model,
    tok: &tokenizer::Tokenizer,
    yes: &str,
    no: &str,
    by_vocab: bool,
) -> anyhow::Result<AnswerHead> {
    let mut notes = Vec::new();
    let mut id = |word: &str| -> anyhow::Result<u32> {
        if by_vocab {
            return tok.token_id(word).ok_or_else(|| {
                anyhow::anyhow!(
                    "the vocabulary has no token spelled exactly `{word}` (the reference's \
                     convert_tokens_to_ids would give the unknown token)"
                )
            });
        }
        let (id, single) = tok
            .answer_token(word)
            .with_context(|| format!("tokenizing the answer word `{word}`"))?;
        if !single {
            notes.push(format!(
                "answer word `{word}` is not a single token; scoring uses its first token"
            ));
        }
        Ok(id)
    };
    let yes_id = id(yes)?;
    let no_id = id(no)?;
    if yes_id == no_id {
        anyhow::bail!("the answer words `{yes}` and `{no}` start with the same token");
    }
    let rows = model.head_rows(&[yes_id, no_id])?;
    Ok(AnswerHead {
        yes_id,
        no_id,
        rows,
        notes,
    })
}

impl Engine {
    /// P(yes) per candidate, each text (prefix, then suffix) cut at `max_tokens` ids when
    /// given; the one scoring path of [`LanguageModel::score_yes_no`] and its truncated form.
    /// The token ids scoring feeds the model: the prefix as a prompt (with the start token
    /// where the model adds one), each suffix without special tokens.
    fn encode_scored(
        &self,
        prefix: &str,
        suffixes: &[String],
    ) -> anyhow::Result<(Vec<u32>, Vec<Vec<u32>>)> {
        let suffix_ids = suffixes
            .iter()
            .map(|s| self.tokenizer.encode(s, false))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((self.encode_prompt(prefix)?, suffix_ids))
    }

    fn score_cut(
        &mut self,
        prefix: &str,
        suffixes: &[String],
        max_tokens: Option<usize>,
    ) -> anyhow::Result<Vec<f32>> {
        let (mut prefix_ids, mut suffix_ids) = self.encode_scored(prefix, suffixes)?;
        if let Some(max_tokens) = max_tokens {
            if prefix_ids.len() >= max_tokens {
                // The cut falls inside the shared prefix: every candidate reads the same
                // position, so every candidate gets the same score (as in test.py).
                prefix_ids.truncate(max_tokens);
                let last = prefix_ids.pop().unwrap_or_default();
                suffix_ids = vec![vec![last]; suffixes.len()];
            } else {
                let room = max_tokens - prefix_ids.len();
                for ids in &mut suffix_ids {
                    ids.truncate(room);
                }
            }
        }
        self.score_ids(&prefix_ids, &suffix_ids)
            .map_err(|e| device::explain_oom(e, "scoring", self.model.device()))
    }
}

impl LanguageModel for Engine {
    fn numerics(&self) -> String {
        self.model.numerics_tag().to_string()
    }

    fn identity(&self) -> ModelIdentity {
        self.info.identity.clone()
    }

    fn context_len(&self) -> usize {
        self.model.config.context_len
    }

    fn count_tokens(&self, text: &str) -> anyhow::Result<usize> {
        Ok(self.tokenizer.encode(text, false)?.len())
    }

    fn render_chat(&self, messages: &[ChatMessage]) -> anyhow::Result<String> {
        match (&self.chat, self.opts.raw_prompt) {
            (Some(t), false) => Ok(t.render(messages, true)?),
            _ => Ok(chat::render_raw(messages)),
        }
    }

    fn generate(
        &mut self,
        prompt: &str,
        params: &SamplingParams,
        cancel: &CancelToken,
        on_token: &mut dyn FnMut(&TokenDelta),
    ) -> anyhow::Result<Generated> {
        let device = self.model.device().clone();
        let oom = |e| device::explain_oom(e, "generating", &device);
        let mut g = self.start(prompt, params).map_err(oom)?;
        loop {
            if cancel.is_cancelled() {
                g.cancel();
                break;
            }
            match self.next_token(&mut g).map_err(oom)? {
                Some(d) => on_token(&d),
                None => break,
            }
        }
        Ok(self.finish(g))
    }

    fn scored_tokens(&self, prefix: &str, suffixes: &[String]) -> anyhow::Result<Vec<usize>> {
        let (prefix_ids, suffix_ids) = self.encode_scored(prefix, suffixes)?;
        Ok(suffix_ids
            .iter()
            .map(|s| prefix_ids.len() + s.len())
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

    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}
