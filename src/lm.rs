//! The language-model interface the method needs, free of any inference library.
//!
//! `llm::Engine` implements it on candle; tests of plumbing may implement it with a
//! fake, but no feature is claimed on a fake.

use serde::{Deserialize, Serialize};

pub use crate::cancel::CancelToken;

/// Sampling settings. `temperature <= 0` means greedy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
    pub max_new_tokens: usize,
    /// Generation stops when the output ends with one of these (the stop string is removed).
    pub stop: Vec<String>,
    /// Prompt plus generation at most this many tokens (Hugging Face's `max_length`, as
    /// the reference's 30B runs use it); when set, it replaces `max_new_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
}

impl Default for SamplingParams {
    /// The workbench's generation settings: sampling at 0.7 / top-k 50 / top-p 0.9 with
    /// a repetition penalty of 1.1, 150 new tokens, seed 42. (The reference code's are
    /// [`crate::preset::reference_sampling`].)
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: Some(50),
            top_p: Some(0.9),
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: 42,
            max_new_tokens: 150,
            stop: Vec::new(),
            max_length: None,
        }
    }
}

impl SamplingParams {
    /// The new tokens a prompt of `prompt_tokens` may have: `max_new_tokens`, or what
    /// `max_length` leaves.
    pub fn new_tokens_for(&self, prompt_tokens: usize) -> usize {
        match self.max_length {
            Some(total) => total.saturating_sub(prompt_tokens),
            None => self.max_new_tokens,
        }
    }

    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repeat_penalty: 1.0,
            max_new_tokens,
            ..Self::default()
        }
    }
}

/// One generated token as streamed to callers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenDelta {
    pub token: u32,
    /// Text this token adds; never a split multi-byte character (may be empty while
    /// bytes are pending; the tail is flushed with the last delta).
    pub text: String,
    /// Natural-log probability of the token under the (unmodified) model distribution.
    pub logprob: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    Eos,
    StopString,
    MaxTokens,
    Cancelled,
}

/// A finished generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    pub text: String,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub stop: StopReason,
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

impl Generated {
    pub fn decode_tokens_per_sec(&self) -> f64 {
        if self.decode_ms <= 0.0 {
            0.0
        } else {
            self.new_tokens as f64 / (self.decode_ms / 1000.0)
        }
    }
}

/// What identifies a model for caches and traces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// Human-readable name, e.g. `SmolLM2-135M-Instruct.Q4_1.gguf`.
    pub name: String,
    /// SHA-256 of the weights file (hex), or of the adapter+base for fine-tuned ones.
    pub sha256: String,
    pub architecture: String,
    pub context_len: usize,
}

/// One chat message for chat-template rendering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// Refuses a cut of scored texts too short to leave a position to read P(yes) at
/// after the first token (the backends' `score_yes_no_truncated` share it).
pub fn check_score_cut(max_tokens: usize) -> anyhow::Result<()> {
    if max_tokens < 2 {
        anyhow::bail!("cannot cut scored texts at {max_tokens} tokens: give at least 2");
    }
    Ok(())
}

/// The operations LLM-TRSR needs from a model.
pub trait LanguageModel: Send {
    fn identity(&self) -> ModelIdentity;

    /// Tokens the model can attend to (prompt + generation).
    fn context_len(&self) -> usize;

    /// Number of tokens `text` encodes to (no special tokens added).
    fn count_tokens(&self, text: &str) -> anyhow::Result<usize>;

    /// Renders messages with the model's chat template (or the raw `### User:` /
    /// `### Assistant:` form when the model has none or raw mode is chosen), ending
    /// with the assistant turn opened.
    fn render_chat(&self, messages: &[ChatMessage]) -> anyhow::Result<String>;

    /// Generates from a fully rendered prompt, calling `on_token` for each token.
    /// Errors before any compute if the prompt does not fit the context.
    fn generate(
        &mut self,
        prompt: &str,
        params: &SamplingParams,
        cancel: &CancelToken,
        on_token: &mut dyn FnMut(&TokenDelta),
    ) -> anyhow::Result<Generated>;

    /// Tokens of each `prefix + suffix` as [`score_yes_no`](Self::score_yes_no) feeds
    /// them to the model: the prefix (with the model's start token where it adds one),
    /// then the suffix, before any cut. This default counts the texts without special
    /// tokens; backends that add a start token count it.
    fn scored_tokens(&self, prefix: &str, suffixes: &[String]) -> anyhow::Result<Vec<usize>> {
        let p = self.count_tokens(prefix)?;
        suffixes
            .iter()
            .map(|s| Ok(p + self.count_tokens(s)?))
            .collect()
    }

    /// P(yes) for each `prefix + suffix`: softmax over the yes/no logits at the last
    /// position. The prefix is computed once and reused for every suffix.
    fn score_yes_no(&mut self, prefix: &str, suffixes: &[String]) -> anyhow::Result<Vec<f32>>;

    /// [`score_yes_no`](Self::score_yes_no) on at most `max_tokens` tokens of each text
    /// (the shared prefix, then the candidate's suffix), cut at the end as Hugging
    /// Face's `truncation=True` cuts: P(yes) is read at the last kept position (the
    /// reference's test.py). This default cuts nothing: it scores texts that fit and
    /// refuses longer ones; backends that hold token ids cut them.
    fn score_yes_no_truncated(
        &mut self,
        prefix: &str,
        suffixes: &[String],
        max_tokens: usize,
    ) -> anyhow::Result<Vec<f32>> {
        let p = self.count_tokens(prefix)?;
        for s in suffixes {
            let n = p + self.count_tokens(s)?;
            if n > max_tokens {
                anyhow::bail!(
                    "{}: a scored text has {n} tokens, over the cut at {max_tokens}, and this \
                     backend cannot cut token ids",
                    self.identity().name
                );
            }
        }
        self.score_yes_no(prefix, suffixes)
    }

    /// A tag for the engine's arithmetic where it differs from its reference path (e.g.
    /// 8-bit activations in the int8 kernels), so that cached results of the two stay
    /// apart; `""` for the reference.
    fn numerics(&self) -> String {
        String::new()
    }

    /// The concrete model, for the work that needs more than this interface (training
    /// needs the candle engine: the worker downcasts). `None`: not offered.
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }
}
