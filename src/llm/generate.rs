//! Generation, one token per step: sampling, stops, streaming text deltas.
//!
//! The logits of each step stay on the model's device (a GPU's memory in a CUDA build), and
//! sampling copies only what it needs to the host, because copying the whole vocabulary
//! (49,152 f32 for the default model, 128k for newer vocabularies) every token is a
//! device-to-host transfer and a sync per token that the sampler mostly does not need. What
//! one step copies ([`Sampler::sample_tensor`]; the reductions are candle operations, so the
//! same code runs on CUDA and on the CPU's generic path):
//! - greedy (temperature 0) without a repetition penalty: the argmax and the token's
//!   log-probability, found on the device: 8 bytes;
//! - top-k sampling (k > 0, any temperature and top-p; also greedy with a penalty, as k = 1):
//!   an exact superset of the top k found without sorting the vocabulary: the maximum of each
//!   chunk of the logits (about sqrt(vocab / k) wide), then the values of the best k + r
//!   chunks (r: the distinct tokens of the penalty window, whose logits are gathered too and
//!   penalized on the host), and the log-sum-exp: a few thousand floats. The host then runs
//!   the same top-k / top-p / temperature draw over those candidates as over the full vector;
//! - anything else (no top-k, e.g. top-p alone): the whole vector, as before.
//!
//! The draws are the same in every case (the same candidates in the same order, the same
//! arithmetic, the same random numbers): `tests/sampler_device.rs` checks that token by token
//! on the real model. Why the candidates suffice: a chunk holding one of the k largest values
//! has a maximum at least the k-th largest chunk maximum (the k best chunks hold k values at
//! least that large), so taking every chunk whose maximum reaches the k-th best keeps the top
//! k, ties included. The penalty only changes the window's r tokens, so the top k after it is
//! within the window plus the top k + r before it. One caveat, greedy only: on an exact tie
//! for the largest logit the CPU's argmax takes the lowest id, as the host does, but CUDA's
//! argmax kernel may take another of the tied ids (its threads scan strided slices).

use std::time::Instant;

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::KvCache;
use super::{Engine, LlmError};
use crate::lm::{Generated, SamplingParams, StopReason, TokenDelta};

/// Seeded sampler over a logits vector: repeat penalty, temperature, top-k, top-p.
#[derive(Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

/// One sampling step's result, from [`Sampler::sample_tensor`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pick {
    pub token: u32,
    /// Natural-log probability of `token` under the softmax of the raw logits.
    pub logprob: f32,
    /// Bytes copied from the logits' device to the host for this step.
    pub copied_bytes: usize,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        Self {
            params: params.clone(),
            rng: ChaCha8Rng::seed_from_u64(params.seed),
        }
    }

    fn penalty_on(&self) -> bool {
        self.params.repeat_penalty != 1.0 && self.params.repeat_penalty > 0.0
    }

    /// The distinct tokens of the penalty window (the last `repeat_last_n` of `recent`)
    /// below `vocab`, in first-seen order; empty without a penalty.
    fn penalized_ids(&self, recent: &[u32], vocab: usize) -> Vec<u32> {
        if !self.penalty_on() {
            return Vec::new();
        }
        let start = recent.len().saturating_sub(self.params.repeat_last_n);
        let mut seen = std::collections::HashSet::new();
        recent[start..]
            .iter()
            .copied()
            .filter(|t| (*t as usize) < vocab && seen.insert(*t))
            .collect()
    }

    fn penalize(&self, v: f32) -> f32 {
        let p = self.params.repeat_penalty;
        if v >= 0.0 {
            v / p
        } else {
            v * p
        }
    }

    /// Picks the next token from raw `logits` (all of them, on the host), penalizing
    /// tokens in `recent`.
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        let mut l = logits.to_vec();
        for t in self.penalized_ids(recent, l.len()) {
            l[t as usize] = self.penalize(l[t as usize]);
        }
        self.choose(l.len(), |i| l[i as usize])
    }

    /// The draw over `n` candidates, given by position in ascending token order with their
    /// (penalized) logits `l`: argmax at temperature 0, else top-k, temperature, top-p.
    /// Returns a position. With every token as a candidate this is the full sampler; with
    /// a superset of the top k (in the same order) it draws the same token.
    fn choose(&mut self, n: usize, l: impl Fn(u32) -> f32) -> u32 {
        let p = &self.params;
        if p.temperature <= 0.0 {
            let mut best = 0u32;
            for i in 1..n as u32 {
                if l(i) > l(best) {
                    best = i;
                }
            }
            return best;
        }
        let t = p.temperature as f32;
        let mut idx: Vec<u32> = (0..n as u32).collect();
        // Largest first, ties by id: a total order, so selecting the top k and sorting
        // only those gives exactly the full sort's first k (without sorting the vocabulary
        // on every token).
        let order = |a: &u32, b: &u32| l(*b).total_cmp(&l(*a)).then(a.cmp(b));
        match p.top_k.filter(|k| *k > 0 && *k < idx.len()) {
            Some(k) => {
                idx.select_nth_unstable_by(k - 1, order);
                idx.truncate(k);
                idx.sort_unstable_by(order);
            }
            None => idx.sort_unstable_by(order),
        }
        let max = l(idx[0]);
        let mut probs: Vec<f32> = idx.iter().map(|&i| ((l(i) - max) / t).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        if let Some(top_p) = p.top_p.filter(|q| *q > 0.0 && *q < 1.0) {
            let mut acc = 0.0f32;
            let mut keep = probs.len();
            for (i, q) in probs.iter().enumerate() {
                acc += q;
                if acc >= top_p as f32 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, q) in probs.iter().enumerate() {
            r -= q;
            if r <= 0.0 {
                return idx[i];
            }
        }
        idx[probs.len() - 1]
    }

    /// How many of the best values the candidates must hold to draw exactly on the device:
    /// `None` where sampling needs the whole vector (no top-k).
    fn device_top(&self, vocab: usize, penalized: usize) -> Option<usize> {
        let p = &self.params;
        let k = if p.temperature <= 0.0 {
            1
        } else {
            p.top_k.filter(|k| *k > 0 && *k < vocab)?
        };
        Some(k + penalized)
    }

    /// Picks the next token from `logits` `[vocab]` where they are (a GPU's memory, or the
    /// CPU), copying only what the draw needs (see the module doc); `full_copy` copies the
    /// whole vector whatever the settings (the reference for tests and measurements). Draws
    /// the same token as [`Sampler::sample`] over the copied vector.
    pub fn sample_tensor(
        &mut self,
        logits: &Tensor,
        recent: &[u32],
        full_copy: bool,
    ) -> candle_core::Result<Pick> {
        let logits = logits.flatten_all()?.to_dtype(DType::F32)?;
        let vocab = logits.dim(0)?;
        let penalized = self.penalized_ids(recent, vocab);
        if !full_copy && self.params.temperature <= 0.0 && penalized.is_empty() {
            let id = logits.argmax_keepdim(0)?;
            let lp = (logits.index_select(&id, 0)? - log_sum_exp(&logits)?)?;
            // Ids are below 2^24, so exact as f32: one copy of two floats.
            let v = Tensor::cat(&[id.to_dtype(DType::F32)?, lp], 0)?.to_vec1::<f32>()?;
            return Ok(Pick {
                token: v[0] as u32,
                logprob: v[1],
                copied_bytes: 8,
            });
        }
        let found = match self.device_top(vocab, penalized.len()) {
            Some(top) if !full_copy => Candidates::find(&logits, top, &penalized)?,
            _ => None,
        };
        let c = match found {
            Some(c) => c,
            None => Candidates::all(&logits)?,
        };
        let mut vals = c.raw.clone();
        for t in &penalized {
            if let Ok(pos) = c.ids.binary_search(t) {
                vals[pos] = self.penalize(vals[pos]);
            }
        }
        let pos = self.choose(c.ids.len(), |i| vals[i as usize]) as usize;
        Ok(Pick {
            token: c.ids[pos],
            logprob: c.raw[pos] - c.lse,
            copied_bytes: c.copied_bytes,
        })
    }
}

/// `log(sum(exp(logits)))` of `[vocab]` logits, on their device: `[1]`.
fn log_sum_exp(logits: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(0)?;
    logits.broadcast_sub(&max)?.exp()?.sum_keepdim(0)?.log()? + max
}

/// Tokens that may be drawn, copied to the host: ascending ids with their raw logits.
#[derive(Debug)]
pub struct Candidates {
    pub ids: Vec<u32>,
    pub raw: Vec<f32>,
    /// Log-sum-exp of all the logits (for log-probabilities).
    pub lse: f32,
    pub copied_bytes: usize,
}

impl Candidates {
    /// Every token: the whole vector copied.
    pub fn all(logits: &Tensor) -> candle_core::Result<Self> {
        let raw = logits.to_vec1::<f32>()?;
        Ok(Self {
            ids: (0..raw.len() as u32).collect(),
            copied_bytes: raw.len() * 4,
            lse: log_sum_exp_host(&raw),
            raw,
        })
    }

    /// A superset of the `top` largest of `logits` `[vocab]` (ties included), plus the
    /// tokens `extra`, found on the logits' device with two small copies (module doc).
    /// `None` when the vocabulary is too small for chunks to save anything.
    pub fn find(logits: &Tensor, top: usize, extra: &[u32]) -> candle_core::Result<Option<Self>> {
        let vocab = logits.dim(0)?;
        // Chunks of `width`: `vocab / width` maxima plus `top * width` values copied, least
        // near width = sqrt(vocab / top).
        let width = ((vocab as f64 / top.max(1) as f64).sqrt().round() as usize).max(8);
        let n_chunks = vocab / width;
        if top == 0 || top >= n_chunks {
            return Ok(None);
        }
        let dev = logits.device();
        let main = logits
            .narrow(0, 0, n_chunks * width)?
            .reshape((n_chunks, width))?;
        // The extra tokens and the tail past the last whole chunk are always candidates.
        let mut extra_ids: Vec<u32> = extra.to_vec();
        extra_ids.extend((n_chunks * width) as u32..vocab as u32);
        let mut parts = vec![main.max(1)?, log_sum_exp(logits)?];
        if !extra_ids.is_empty() {
            parts.push(logits.index_select(&Tensor::new(extra_ids.as_slice(), dev)?, 0)?);
        }
        let first = Tensor::cat(&parts, 0)?.to_vec1::<f32>()?;
        let (maxima, rest) = first.split_at(n_chunks);
        let lse = rest[0];
        let extra_vals = &rest[1..];
        // Every chunk whose maximum reaches the top-th best maximum.
        let mut sorted = maxima.to_vec();
        sorted.select_nth_unstable_by(top - 1, |a, b| b.total_cmp(a));
        let threshold = sorted[top - 1];
        let chunks: Vec<u32> = (0..n_chunks as u32)
            .filter(|&i| maxima[i as usize] >= threshold)
            .collect();
        if chunks.len() < top {
            // NaN logits defeat the comparisons: leave them to the whole-vector path.
            return Ok(None);
        }
        let vals = main
            .index_select(&Tensor::new(chunks.as_slice(), dev)?, 0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut pairs: Vec<(u32, f32)> = chunks
            .iter()
            .flat_map(|&c| (0..width as u32).map(move |j| c * width as u32 + j))
            .zip(vals.iter().copied())
            .chain(extra_ids.iter().copied().zip(extra_vals.iter().copied()))
            .collect();
        pairs.sort_unstable_by_key(|p| p.0);
        pairs.dedup_by_key(|p| p.0);
        Ok(Some(Self {
            ids: pairs.iter().map(|p| p.0).collect(),
            raw: pairs.iter().map(|p| p.1).collect(),
            lse,
            copied_bytes: 4 * (first.len() + vals.len()),
        }))
    }
}

/// Natural-log probability of `token` under the softmax of `logits`.
pub fn logprob(logits: &[f32], token: u32) -> f32 {
    logits
        .get(token as usize)
        .map(|v| v - log_sum_exp_host(logits))
        .unwrap_or(f32::NEG_INFINITY)
}

fn log_sum_exp_host(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    logits.iter().map(|v| (v - max).exp()).sum::<f32>().ln() + max
}

/// An ongoing generation (created by [`Engine::start`]).
pub struct Generation {
    cache: KvCache,
    params: SamplingParams,
    sampler: Sampler,
    /// Prompt then generated tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Logits for the next token `[vocab]`, on the model's device.
    logits: Tensor,
    /// Copy the whole logits every step (the reference the reduced copies are checked
    /// against; see [`Generation::set_full_copy`]).
    full_copy: bool,
    /// Bytes the sampling steps copied from the device so far.
    copied_bytes: usize,
    /// Text of the generated tokens decoded so far (stop string removed at the end).
    text: String,
    /// Bytes of `text` already handed out.
    emitted: usize,
    stop: Option<StopReason>,
    prefill_ms: f64,
    decode_started: Instant,
    decode_ms: f64,
}

impl Generation {
    /// Marks the generation cancelled; the next step returns `None`.
    pub fn cancel(&mut self) {
        if self.stop.is_none() {
            self.stop = Some(StopReason::Cancelled);
        }
    }
    pub fn is_done(&self) -> bool {
        self.stop.is_some()
    }
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_len
    }
    pub fn new_tokens(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }
    /// Generated token ids so far.
    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// Prompt then generated tokens (the penalty window is the end of this).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The raw logits of the next token over the vocabulary, copied whole to the host (a
    /// diagnostic: sampling copies only what it needs).
    pub fn next_logits(&self) -> candle_core::Result<Vec<f32>> {
        self.logits.to_dtype(DType::F32)?.to_vec1::<f32>()
    }

    /// The sampler as it stands before the next token (a clone draws what the next step
    /// will draw).
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Copy the whole logits to the host every step instead of the reduced copies (the
    /// same tokens; for comparisons and measurements).
    pub fn set_full_copy(&mut self, on: bool) {
        self.full_copy = on;
    }

    /// Bytes copied from the device for sampling so far.
    pub fn copied_bytes(&self) -> usize {
        self.copied_bytes
    }
}

impl Engine {
    /// Tokenizes and prefills `prompt`. Errors before any compute if the prompt plus the
    /// requested new tokens do not fit the context.
    pub fn start(&mut self, prompt: &str, params: &SamplingParams) -> anyhow::Result<Generation> {
        let ids = self.encode_prompt(prompt)?;
        self.start_ids(ids, params)
    }

    /// [`Engine::start`] from token ids.
    pub fn start_ids(
        &mut self,
        ids: Vec<u32>,
        params: &SamplingParams,
    ) -> anyhow::Result<Generation> {
        let ctx = self.model.config.context_len;
        if ids.is_empty() {
            anyhow::bail!("the prompt is empty");
        }
        if ids.len() + params.max_new_tokens > ctx {
            return Err(LlmError::PromptTooLong {
                prompt_tokens: ids.len(),
                context_len: ctx,
                max_new_tokens: params.max_new_tokens,
            }
            .into());
        }
        let t0 = Instant::now();
        let mut cache = self.model.new_cache(ids.len() + params.max_new_tokens)?;
        let last = self.model.prefill(&ids, &mut cache)?;
        let logits = self.model.logits(&last)?.squeeze(0)?;
        let prefill_ms = t0.elapsed().as_secs_f64() * 1000.0;
        Ok(Generation {
            cache,
            sampler: Sampler::new(params),
            params: params.clone(),
            prompt_len: ids.len(),
            tokens: ids,
            logits,
            full_copy: false,
            copied_bytes: 0,
            text: String::new(),
            emitted: 0,
            stop: if params.max_new_tokens == 0 {
                Some(StopReason::MaxTokens)
            } else {
                None
            },
            prefill_ms,
            decode_started: Instant::now(),
            decode_ms: 0.0,
        })
    }

    /// Samples one token, feeds it to the model and returns its delta; `None` once done.
    pub fn next_token(&mut self, g: &mut Generation) -> anyhow::Result<Option<TokenDelta>> {
        if g.stop.is_some() {
            return Ok(None);
        }
        let t0 = Instant::now();
        let pick = g.sampler.sample_tensor(&g.logits, &g.tokens, g.full_copy)?;
        g.copied_bytes += pick.copied_bytes;
        let (token, lp) = (pick.token, pick.logprob);
        g.tokens.push(token);
        let n_new = g.new_tokens();
        let is_eos = self.tokenizer.eos_ids().contains(&token);
        if is_eos {
            g.stop = Some(StopReason::Eos);
        } else {
            let full = self.tokenizer.decode(&g.tokens[g.prompt_len..])?;
            g.text = full;
            if let Some(cut) = find_stop(&g.text, &g.params.stop, g.emitted) {
                g.text.truncate(cut);
                g.stop = Some(StopReason::StopString);
            } else if n_new >= g.params.max_new_tokens {
                g.stop = Some(StopReason::MaxTokens);
            }
        }
        // Hand out the text that is safe: complete characters, and not a possible start of
        // a stop string, unless this is the last step.
        let end = if g.stop.is_some() {
            g.text.len()
        } else {
            safe_end(&g.text, &g.params.stop)
        };
        let text = if end > g.emitted
            && g.text.is_char_boundary(end)
            && g.text.is_char_boundary(g.emitted)
        {
            let s = g.text[g.emitted..end].to_string();
            g.emitted = end;
            s
        } else {
            String::new()
        };
        if g.stop.is_none() {
            g.logits = self.model.forward_one(token, &mut g.cache)?;
        }
        g.decode_ms += t0.elapsed().as_secs_f64() * 1000.0;
        Ok(Some(TokenDelta {
            token,
            text,
            logprob: lp,
        }))
    }

    /// Ends a generation and returns its summary.
    pub fn finish(&mut self, g: Generation) -> Generated {
        let _ = g.decode_started;
        // The text handed out: on cancellation, what was streamed so far.
        let text = if g.stop == Some(StopReason::Cancelled) {
            g.text[..g.emitted.min(g.text.len())].to_string()
        } else {
            g.text
        };
        Generated {
            text,
            prompt_tokens: g.prompt_len,
            new_tokens: g.tokens.len() - g.prompt_len,
            stop: g.stop.unwrap_or(StopReason::Cancelled),
            prefill_ms: g.prefill_ms,
            decode_ms: g.decode_ms,
        }
    }
}

/// Byte offset of the first stop string in `text` (searching from a little before `from`).
fn find_stop(text: &str, stops: &[String], from: usize) -> Option<usize> {
    let longest = stops.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut start = from.saturating_sub(longest);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text[start..].find(s.as_str()).map(|i| start + i))
        .min()
}

/// End of the text that can be handed out now: before a trailing replacement character
/// (an incomplete multi-byte character) and before any suffix that could begin a stop string.
fn safe_end(text: &str, stops: &[String]) -> usize {
    let mut end = text.len();
    if text.ends_with('\u{fffd}') {
        end = text.trim_end_matches('\u{fffd}').len();
    }
    let mut hold = 0;
    for s in stops {
        for k in (1..s.len()).rev() {
            if k <= end && s.is_char_boundary(k) && text[..end].ends_with(&s[..k]) {
                hold = hold.max(k);
                break;
            }
        }
    }
    end - hold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_sampler_takes_the_largest_logit() {
        let mut s = Sampler::new(&SamplingParams::greedy(5));
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.9], &[]), 1);
    }

    #[test]
    fn same_seed_same_samples() {
        let params = SamplingParams {
            temperature: 1.0,
            ..SamplingParams::default()
        };
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = || {
            let mut s = Sampler::new(&params);
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        let mut other = Sampler::new(&SamplingParams {
            seed: 7,
            ..params.clone()
        });
        let b: Vec<u32> = (0..20).map(|_| other.sample(&logits, &[])).collect();
        assert_ne!(run(), b);
    }

    /// Selecting the top k gives the same draws as sorting everything and truncating.
    #[test]
    fn top_k_selection_equals_full_sort() {
        let logits: Vec<f32> = (0..5000)
            .map(|i| ((i * 7919) % 613) as f32 * 0.01)
            .collect();
        for k in [1, 2, 50, 4999] {
            let params = SamplingParams {
                temperature: 0.8,
                top_k: Some(k),
                top_p: Some(0.95),
                ..SamplingParams::default()
            };
            let mut sorted: Vec<u32> = (0..logits.len() as u32).collect();
            sorted.sort_by(|&a, &b| {
                logits[b as usize]
                    .total_cmp(&logits[a as usize])
                    .then(a.cmp(&b))
            });
            sorted.truncate(k);
            let top: Vec<f32> = sorted.iter().map(|&i| logits[i as usize]).collect();
            let mut a = Sampler::new(&params);
            let mut b = Sampler::new(&SamplingParams {
                top_k: None,
                ..params.clone()
            });
            for _ in 0..50 {
                // The same draw over the k best (b sees only them, in sorted order).
                let x = a.sample(&logits, &[]);
                let y = sorted[b.sample(&top, &[]) as usize];
                assert_eq!(x, y, "k {k}");
            }
        }
    }

    #[test]
    fn top_k_one_is_greedy() {
        let params = SamplingParams {
            temperature: 1.0,
            top_k: Some(1),
            ..SamplingParams::default()
        };
        let mut s = Sampler::new(&params);
        for _ in 0..10 {
            assert_eq!(s.sample(&[0.0, 0.5, 3.0, 2.9], &[]), 2);
        }
    }

    #[test]
    fn repeat_penalty_lowers_seen_tokens() {
        let mut params = SamplingParams::greedy(5);
        params.repeat_penalty = 2.0;
        let mut s = Sampler::new(&params);
        assert_eq!(s.sample(&[1.0, 1.5], &[1]), 0);
    }

    /// Random logits with many ties (a few levels), as a CPU tensor and a vector.
    fn tied_logits(rng: &mut ChaCha8Rng, n: usize, levels: u32) -> Vec<f32> {
        (0..n)
            .map(|_| (rng.random_range(0..levels) as f32 - levels as f32 / 2.0) * 0.25)
            .collect()
    }

    /// The chunked search keeps every one of the `top` best values (by the sampler's total
    /// order: value, then id), ties included, plus the extra ids, and copies far less.
    #[test]
    fn device_top_k_candidates_hold_the_exact_top_k_with_ties() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (n, levels, top) in [
            (49_152, 7, 50),
            (49_152, 1000, 114),
            (1000, 3, 10),
            (5003, 50_000, 1),
            (5003, 2, 40),
        ] {
            let l = tied_logits(&mut rng, n, levels);
            let extra: Vec<u32> = [7u32, 4999, 3]
                .into_iter()
                .filter(|i| (*i as usize) < n)
                .collect();
            let t = Tensor::new(l.as_slice(), &candle_core::Device::Cpu).unwrap();
            let c = Candidates::find(&t, top, &extra).unwrap().unwrap();
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.sort_by(|&a, &b| l[b as usize].total_cmp(&l[a as usize]).then(a.cmp(&b)));
            for id in order[..top].iter().chain(&extra) {
                let pos = c.ids.binary_search(id);
                assert!(pos.is_ok(), "n {n} levels {levels} top {top}: {id} missing");
                assert_eq!(c.raw[pos.unwrap()], l[*id as usize]);
            }
            assert!(c.ids.windows(2).all(|w| w[0] < w[1]));
            assert!((c.lse - log_sum_exp_host(&l)).abs() < 1e-3 * c.lse.abs().max(1.0));
            if levels > 100 {
                assert!(c.copied_bytes * 5 < n * 4, "{} bytes", c.copied_bytes);
            }
        }
        // Too small a vocabulary for chunks: no search (the caller copies everything).
        let t = Tensor::new(&[1f32, 2.0, 3.0][..], &candle_core::Device::Cpu).unwrap();
        assert!(Candidates::find(&t, 2, &[]).unwrap().is_none());
    }

    /// The reduced copies draw exactly what the full copy draws, step after step (the same
    /// random numbers), for greedy, top-k with and without top-p, and a repetition penalty.
    #[test]
    fn reduced_copies_draw_what_the_full_copy_draws() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let cases = [
            SamplingParams::greedy(5),
            SamplingParams {
                repeat_penalty: 1.3,
                ..SamplingParams::greedy(5)
            },
            crate::preset::reference_sampling(),
            SamplingParams::default(),
            SamplingParams {
                repeat_penalty: 0.7,
                temperature: 2.0,
                top_k: Some(200),
                ..SamplingParams::default()
            },
            // No top-k: the whole vector is copied.
            SamplingParams {
                top_k: None,
                ..SamplingParams::default()
            },
        ];
        for params in cases {
            let mut reduced = Sampler::new(&params);
            let mut full = Sampler::new(&params);
            let mut recent: Vec<u32> = (0..80).map(|_| rng.random_range(0..200)).collect();
            for step in 0..40 {
                let l = tied_logits(&mut rng, 20_000, if step % 2 == 0 { 5 } else { 5000 });
                let t = Tensor::new(l.as_slice(), &candle_core::Device::Cpu).unwrap();
                let want = full.sample(&l, &recent);
                let got = reduced.sample_tensor(&t, &recent, false).unwrap();
                assert_eq!(got.token, want, "{params:?} step {step}");
                let lp = logprob(&l, want);
                assert!((got.logprob - lp).abs() < 1e-3, "{} vs {lp}", got.logprob);
                if params.top_k.is_none() && params.temperature > 0.0 {
                    assert_eq!(got.copied_bytes, l.len() * 4);
                } else if step % 2 == 1 {
                    // Few ties: a small part copied (with many, the tied chunks all come).
                    assert!(got.copied_bytes * 4 < l.len() * 4, "{params:?}");
                }
                recent.push(want);
            }
        }
    }

    /// NaN logits (a broken model) give a token, as the whole-vector sampler does, not a panic.
    #[test]
    fn nan_logits_do_not_panic() {
        let mut l: Vec<f32> = (0..10_000).map(|i| (i % 97) as f32 * 0.01).collect();
        l[17] = f32::NAN;
        let t = Tensor::new(l.as_slice(), &candle_core::Device::Cpu).unwrap();
        for params in [SamplingParams::default(), SamplingParams::greedy(1)] {
            let pick = Sampler::new(&params).sample_tensor(&t, &[3, 4], false);
            assert!((pick.unwrap().token as usize) < l.len());
        }
    }

    #[test]
    fn logprob_matches_softmax() {
        let lp = logprob(&[0.0, 0.0], 1);
        assert!((lp - 0.5f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn stop_strings_are_held_back_until_decided() {
        let stops = vec!["###".to_string()];
        assert_eq!(safe_end("hello #", &stops), 6);
        assert_eq!(safe_end("hello ##", &stops), 6);
        assert_eq!(safe_end("hello", &stops), 5);
        assert_eq!(find_stop("ab### c", &stops, 0), Some(2));
        assert_eq!(find_stop("abc", &stops, 0), None);
    }
}
