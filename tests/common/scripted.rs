//! One configurable scripted [`LanguageModel`] for the tests of plumbing (the worker, the
//! window, the batch commands) and the frame-time benchmark. It claims no model feature:
//! real behaviour is checked with the real default model and the tiny GGUF.
//!
//! A generation emits the words its `reply` gives (one token each), optionally repeated
//! until cancelled or until `max_new_tokens`, sleeping `per_token` between tokens and
//! checking the cancel token before each; scores come from `score`. Every prompt is
//! recorded, and calls are counted across clones.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use trsr::lm::{
    CancelToken, ChatMessage, Generated, LanguageModel, ModelIdentity, SamplingParams, StopReason,
    TokenDelta,
};
use trsr::worker::{LoadedModel, Loader, ModelSpec};

/// The words of one generation: `(prompt, sampling, call number)`, the call number
/// counting generate and score calls together (1-based, over all clones).
pub type ReplyFn = Arc<dyn Fn(&str, &SamplingParams, usize) -> Vec<String> + Send + Sync>;
/// P(yes) of one candidate: `(prefix, suffix, index in the batch, call number)`.
pub type ScoreFn = Arc<dyn Fn(&str, &str, usize, usize) -> f32 + Send + Sync>;

/// How messages become a prompt.
#[derive(Clone, Copy, Debug)]
pub enum Chat {
    /// The contents, concatenated.
    Concat,
    /// `<role>content` for each message, then `<assistant>`.
    Tagged,
    /// `<role>\ncontent\n` for each message, then `<assistant>\n`.
    TaggedLines,
}

/// How long a generation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// The reply's words once, then stop with `done`.
    Reply,
    /// The reply's words over and over until `max_new_tokens` (stop: max tokens).
    MaxNewTokens,
    /// The reply's words over and over until cancelled (at most 100,000 tokens).
    UntilCancelled,
}

#[derive(Clone)]
pub struct Scripted {
    pub name: String,
    pub context: usize,
    pub chat: Chat,
    pub reply: ReplyFn,
    pub length: Length,
    /// The stop reason of a generation that ran its course under [`Length::Reply`].
    pub done: StopReason,
    pub per_token: Duration,
    pub logprob: f32,
    pub score: ScoreFn,
    /// Token count of a text (whitespace words by default).
    pub count: fn(&str) -> usize,
    /// Panics when a prompt plus its `max_new_tokens` does not fit the context (the
    /// pipeline must never send one).
    pub check_fit: bool,
    /// Cancels this token when the n-th generate call (1-based, over all clones) starts.
    pub cancel_at: Option<(usize, CancelToken)>,
    pub generate_calls: Arc<AtomicUsize>,
    pub score_calls: Arc<AtomicUsize>,
    pub prompts: Arc<Mutex<Vec<String>>>,
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

impl Scripted {
    /// Replies `t0 t1 ...` (`tokens` words), scores 0.5, plain concatenated chat.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            context: 4096,
            chat: Chat::Concat,
            reply: Arc::new(|_, _, _| Vec::new()),
            length: Length::Reply,
            done: StopReason::Eos,
            per_token: Duration::ZERO,
            logprob: -1.0,
            score: Arc::new(|_, _, _, _| 0.5),
            count: words,
            check_fit: false,
            cancel_at: None,
            generate_calls: Arc::default(),
            score_calls: Arc::default(),
            prompts: Arc::default(),
        }
    }

    /// Streams `word` every `per_token` until cancelled (the cancel flows).
    pub fn streaming(name: &str, word: &'static str, per_token: Duration) -> Self {
        Self {
            reply: Arc::new(move |_, _, _| vec![word.to_string()]),
            length: Length::UntilCancelled,
            per_token,
            ..Self::new(name)
        }
    }

    /// Answers at once with `summary N` (N the call number); scores rotate with the calls.
    pub fn numbered(name: &str) -> Self {
        Self {
            reply: Arc::new(|_, _, n| vec![format!("summary {n}")]),
            score: Arc::new(|_, _, i, n| ((n + i) % 7) as f32 / 7.0),
            ..Self::new(name)
        }
    }

    /// `t0 t1 ...` (`tokens` words followed by a space each), `per_token` apart.
    pub fn counting(name: &str, tokens: usize, per_token: Duration) -> Self {
        Self {
            reply: Arc::new(move |_, _, _| (0..tokens).map(|i| format!("t{i} ")).collect()),
            done: StopReason::MaxTokens,
            per_token,
            ..Self::new(name)
        }
    }

    pub fn with_context(mut self, context: usize) -> Self {
        self.context = context;
        self
    }
    pub fn with_chat(mut self, chat: Chat) -> Self {
        self.chat = chat;
        self
    }
    pub fn with_score(
        mut self,
        f: impl Fn(&str, &str, usize, usize) -> f32 + Send + Sync + 'static,
    ) -> Self {
        self.score = Arc::new(f);
        self
    }
    pub fn with_logprob(mut self, logprob: f32) -> Self {
        self.logprob = logprob;
        self
    }

    pub fn boxed(&self) -> Box<dyn LanguageModel> {
        Box::new(self.clone())
    }

    /// A worker loader that hands out clones of this model (`missing` fails to load).
    pub fn loader(&self) -> Loader {
        let model = self.clone();
        Box::new(move |spec: &ModelSpec| {
            if spec.model == "missing" {
                anyhow::bail!("model file not found: missing");
            }
            Ok(LoadedModel {
                model: model.boxed(),
                device: "cpu".into(),
            })
        })
    }

    pub fn calls(&self) -> usize {
        self.generate_calls.load(Ordering::SeqCst)
    }

    fn call_number(&self) -> usize {
        self.generate_calls.load(Ordering::SeqCst) + self.score_calls.load(Ordering::SeqCst)
    }
}

impl LanguageModel for Scripted {
    fn identity(&self) -> ModelIdentity {
        ModelIdentity {
            name: self.name.clone(),
            sha256: format!("{}-sha", self.name),
            architecture: "scripted".into(),
            context_len: self.context,
        }
    }
    fn context_len(&self) -> usize {
        self.context
    }
    fn count_tokens(&self, text: &str) -> anyhow::Result<usize> {
        Ok((self.count)(text))
    }
    fn render_chat(&self, messages: &[ChatMessage]) -> anyhow::Result<String> {
        Ok(match self.chat {
            Chat::Concat => messages.iter().map(|m| m.content.as_str()).collect(),
            Chat::Tagged => {
                let mut s: String = messages
                    .iter()
                    .map(|m| format!("<{}>{}", m.role, m.content))
                    .collect();
                s.push_str("<assistant>");
                s
            }
            Chat::TaggedLines => {
                let mut s: String = messages
                    .iter()
                    .map(|m| format!("<{}>\n{}\n", m.role, m.content))
                    .collect();
                s.push_str("<assistant>\n");
                s
            }
        })
    }
    fn generate(
        &mut self,
        prompt: &str,
        params: &SamplingParams,
        cancel: &CancelToken,
        on_token: &mut dyn FnMut(&TokenDelta),
    ) -> anyhow::Result<Generated> {
        let n = self.generate_calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some((at, token)) = &self.cancel_at {
            if n >= *at {
                token.cancel();
            }
        }
        let prompt_tokens = (self.count)(prompt);
        if self.check_fit {
            assert!(
                prompt_tokens + params.max_new_tokens <= self.context,
                "the pipeline sent a prompt that does not fit: {prompt_tokens} + {}",
                params.max_new_tokens
            );
        }
        self.prompts.lock().unwrap().push(prompt.to_string());
        let reply = (self.reply)(prompt, params, self.call_number());
        let limit = match self.length {
            Length::Reply => reply.len(),
            Length::MaxNewTokens => params.max_new_tokens,
            Length::UntilCancelled => 100_000,
        };
        let mut text = String::new();
        let mut new_tokens = 0;
        let mut stop = if self.length == Length::Reply {
            self.done
        } else {
            StopReason::MaxTokens
        };
        for i in 0..limit {
            if cancel.is_cancelled() {
                stop = StopReason::Cancelled;
                break;
            }
            if reply.is_empty() {
                break;
            }
            if !self.per_token.is_zero() {
                std::thread::sleep(self.per_token);
            }
            let delta = TokenDelta {
                token: i as u32,
                text: reply[i % reply.len()].clone(),
                logprob: self.logprob,
            };
            text.push_str(&delta.text);
            new_tokens += 1;
            on_token(&delta);
        }
        if self.length == Length::UntilCancelled && cancel.is_cancelled() {
            stop = StopReason::Cancelled;
        }
        Ok(Generated {
            text,
            prompt_tokens,
            new_tokens,
            stop,
            prefill_ms: 0.0,
            decode_ms: (new_tokens as f64 * self.per_token.as_secs_f64() * 1000.0).max(1.0),
        })
    }
    fn score_yes_no(&mut self, prefix: &str, suffixes: &[String]) -> anyhow::Result<Vec<f32>> {
        self.score_calls.fetch_add(1, Ordering::SeqCst);
        let n = self.call_number();
        Ok(suffixes
            .iter()
            .enumerate()
            .map(|(i, s)| (self.score)(prefix, s, i, n))
            .collect())
    }
}
