//! Generation, one token per step: sampling, stops, streaming text deltas.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::model::KvCache;
use super::{Engine, LlmError};
use crate::lm::{Generated, SamplingParams, StopReason, TokenDelta};

/// Seeded sampler over a logits vector: repeat penalty, temperature, top-k, top-p.
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        Self {
            params: params.clone(),
            rng: ChaCha8Rng::seed_from_u64(params.seed),
        }
    }

    /// Picks the next token from raw `logits`, penalizing tokens in `recent`.
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        let p = &self.params;
        let mut l = logits.to_vec();
        if p.repeat_penalty != 1.0 && p.repeat_penalty > 0.0 {
            let start = recent.len().saturating_sub(p.repeat_last_n);
            let mut seen = std::collections::HashSet::new();
            for &t in &recent[start..] {
                if let Some(v) = l.get_mut(t as usize) {
                    if seen.insert(t) {
                        *v = if *v >= 0.0 {
                            *v / p.repeat_penalty
                        } else {
                            *v * p.repeat_penalty
                        };
                    }
                }
            }
        }
        if p.temperature <= 0.0 {
            return argmax(&l);
        }
        let t = p.temperature as f32;
        let mut idx: Vec<u32> = (0..l.len() as u32).collect();
        // Largest first, ties by id: a total order, so selecting the top k and sorting
        // only those gives exactly the full sort's first k (without sorting the vocabulary
        // on every token).
        let order = |a: &u32, b: &u32| l[*b as usize].total_cmp(&l[*a as usize]).then(a.cmp(b));
        match p.top_k.filter(|k| *k > 0 && *k < idx.len()) {
            Some(k) => {
                idx.select_nth_unstable_by(k - 1, order);
                idx.truncate(k);
                idx.sort_unstable_by(order);
            }
            None => idx.sort_unstable_by(order),
        }
        let max = l[idx[0] as usize];
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| ((l[i as usize] - max) / t).exp())
            .collect();
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
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, v) in l.iter().enumerate() {
        if *v > l[best] {
            best = i;
        }
    }
    best as u32
}

/// Natural-log probability of `token` under the softmax of `logits`.
pub fn logprob(logits: &[f32], token: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = logits.iter().map(|v| (v - max).exp()).sum::<f32>().ln() + max;
    logits
        .get(token as usize)
        .map(|v| v - lse)
        .unwrap_or(f32::NEG_INFINITY)
}

/// An ongoing generation (created by [`Engine::start`]).
pub struct Generation {
    cache: KvCache,
    params: SamplingParams,
    sampler: Sampler,
    /// Prompt then generated tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Logits for the next token.
    logits: Vec<f32>,
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

    /// The logits of the next token (over the vocabulary), as sampling sees them.
    pub fn next_logits(&self) -> &[f32] {
        &self.logits
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
        let logits = self.model.logits(&last)?.squeeze(0)?.to_vec1::<f32>()?;
        let prefill_ms = t0.elapsed().as_secs_f64() * 1000.0;
        Ok(Generation {
            cache,
            sampler: Sampler::new(params),
            params: params.clone(),
            prompt_len: ids.len(),
            tokens: ids,
            logits,
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
        let token = g.sampler.sample(&g.logits, &g.tokens);
        let lp = logprob(&g.logits, token);
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
            let logits = self.model.forward_one(token, &mut g.cache)?;
            g.logits = logits.to_vec1::<f32>()?;
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
