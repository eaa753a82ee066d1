//! Yes/no scoring with prefix reuse: P(yes) = softmax over the yes and no logits at the
//! last position of `prefix + suffix`.
//!
//! The prefix's keys and values are computed once (and kept for the next call with the
//! same prefix); tokens that every suffix starts with are moved into the prefix; the
//! suffixes are then run in padded batches, each attending to the shared prefix and
//! causally to itself, and only the last real position of each suffix reaches the output
//! layer, and there only the two answer rows.

use candle_core::{Tensor, D};

use super::{Engine, LlmError};

/// Upper bound on `batch * padded_len` rows per forward pass.
const MAX_BATCH_ROWS: usize = 2048;
/// Spare room kept in the prefix cache for tokens shared by all suffixes.
const PREFIX_SLACK: usize = 64;

impl Engine {
    /// P(yes) for each `prefix + suffix` given as token ids (the prefix as the engine feeds
    /// it, i.e. with BOS when the model wants one).
    pub fn score_ids(&mut self, prefix: &[u32], suffixes: &[Vec<u32>]) -> anyhow::Result<Vec<f32>> {
        if suffixes.is_empty() {
            return Ok(Vec::new());
        }
        if suffixes.iter().any(|s| s.is_empty()) && prefix.is_empty() {
            anyhow::bail!("nothing to score: empty prefix and empty suffix");
        }
        let ctx = self.model.config.context_len;
        let longest = suffixes.iter().map(|s| s.len()).max().unwrap_or(0);
        if prefix.len() + longest > ctx {
            return Err(LlmError::PromptTooLong {
                prompt_tokens: prefix.len() + longest,
                context_len: ctx,
                max_new_tokens: 0,
            }
            .into());
        }
        // Tokens all suffixes share go into the prefix (each suffix keeps at least one).
        let shortest = suffixes.iter().map(|s| s.len()).min().unwrap_or(0);
        let mut common = 0;
        if suffixes.len() > 1 {
            while common + 1 < shortest && suffixes.iter().all(|s| s[common] == suffixes[0][common])
            {
                common += 1;
            }
        }
        let mut full_prefix = prefix.to_vec();
        full_prefix.extend_from_slice(&suffixes[0][..common]);
        let mut out = vec![0f32; suffixes.len()];
        // An empty suffix is scored at the prefix's own last position.
        let mut rest = Vec::with_capacity(suffixes.len());
        for (i, s) in suffixes.iter().enumerate() {
            if s.is_empty() {
                out[i] = self.score_full_recompute(prefix, &[])?;
            } else {
                rest.push(i);
            }
        }
        if rest.is_empty() {
            return Ok(out);
        }
        self.ensure_prefix(&full_prefix)?;
        let result = self.score_from_prefix(suffixes, common, rest, &mut out);
        // Keep only the caller's prefix for the next call (drop the shared suffix start).
        if let Some((ids, cache)) = self.prefix.as_mut() {
            cache.truncate(prefix.len());
            ids.truncate(prefix.len());
        }
        result?;
        Ok(out)
    }

    fn score_from_prefix(
        &mut self,
        suffixes: &[Vec<u32>],
        common: usize,
        mut order: Vec<usize>,
        out: &mut [f32],
    ) -> anyhow::Result<()> {
        let pad = self.tokenizer.eos_ids().first().copied().unwrap_or(0);
        let Some((_, cache)) = self.prefix.as_mut() else {
            anyhow::bail!("scoring prefix missing");
        };
        // Longest first, so batches hold similar lengths.
        order.sort_by_key(|&i| std::cmp::Reverse(suffixes[i].len()));
        // Batches of even size, each within MAX_BATCH_ROWS padded rows.
        let longest = suffixes[order[0]].len() - common;
        let per_batch = (MAX_BATCH_ROWS / longest).max(1);
        let n_batches = order.len().div_ceil(per_batch);
        let even = order.len().div_ceil(n_batches);
        let mut at = 0;
        while at < order.len() {
            let l = suffixes[order[at]].len() - common;
            let b = even.min(order.len() - at);
            let batch = &order[at..at + b];
            let mut tokens = Vec::with_capacity(b * l);
            let mut last_rows = Vec::with_capacity(b);
            for (k, &i) in batch.iter().enumerate() {
                let s = &suffixes[i][common..];
                tokens.extend_from_slice(s);
                tokens.extend(std::iter::repeat_n(pad, l - s.len()));
                last_rows.push((k * l + s.len() - 1) as u32);
            }
            let hidden = self.model.forward_batch(&tokens, b, l, cache, false)?;
            let idx = Tensor::new(last_rows.as_slice(), hidden.device())?;
            let last = hidden.index_select(&idx, 0)?;
            let probs = p_yes(&last, &self.answer.rows)?;
            for (k, &i) in batch.iter().enumerate() {
                out[i] = probs[k];
            }
            at += b;
        }
        Ok(())
    }

    /// Makes `self.prefix` hold exactly `ids`, keeping the longest part it already holds.
    fn ensure_prefix(&mut self, ids: &[u32]) -> anyhow::Result<()> {
        let chunk = self.model.prefill_chunk();
        let keep = match &self.prefix {
            Some((held, cache)) if ids.len() <= cache.capacity() => {
                // Kept up to a prefill chunk boundary, so that what is computed next
                // is computed exactly as a fresh prefill would (see `Model::prefill`).
                let same = held.iter().zip(ids).take_while(|(a, b)| a == b).count();
                same / chunk * chunk
            }
            _ => 0,
        };
        if keep == 0 {
            let cache = self.model.new_cache(ids.len() + PREFIX_SLACK)?;
            self.prefix = Some((Vec::new(), cache));
        }
        let Some((held, cache)) = self.prefix.as_mut() else {
            anyhow::bail!("scoring prefix missing");
        };
        held.truncate(keep);
        cache.truncate(keep);
        if ids.len() > keep {
            self.model.prefill(&ids[keep..], cache)?;
            held.extend_from_slice(&ids[keep..]);
        }
        Ok(())
    }

    /// P(yes) for `prefix + suffix` computed from scratch, with no cache reuse
    /// (the reference the batched path is tested against).
    pub fn score_full_recompute(&mut self, prefix: &[u32], suffix: &[u32]) -> anyhow::Result<f32> {
        let mut ids = prefix.to_vec();
        ids.extend_from_slice(suffix);
        let mut cache = self.model.new_cache(ids.len())?;
        let last = self.model.prefill(&ids, &mut cache)?;
        Ok(p_yes(&last, &self.answer.rows)?[0])
    }
}

/// P(yes) per row of `hidden` `[n, hidden]` given the answer rows `[2, hidden]`.
fn p_yes(hidden: &Tensor, rows: &Tensor) -> candle_core::Result<Vec<f32>> {
    let logits = hidden.matmul(&rows.t()?)?; // [n, 2]
    let probs = candle_nn::ops::softmax(&logits, D::Minus1)?;
    probs.narrow(1, 0, 1)?.squeeze(1)?.to_vec1::<f32>()
}
