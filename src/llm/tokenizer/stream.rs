//! Streaming detokenization that never splits a multi-byte character.

use super::Tokenizer;
use crate::llm::LlmError;

/// Streaming detokenizer: push ids, get text deltas that never split a multi-byte character;
/// `finish()` flushes the tail.
///
/// The concatenated deltas equal [`Tokenizer::decode`] of the pushed ids: special tokens come
/// out as their text (stop before pushing an end-of-turn id), and for SentencePiece
/// vocabularies with a space prefix the first token loses its leading space.
pub struct TokenStream<'a> {
    tok: &'a Tokenizer,
    pending: Vec<u8>,
    started: bool,
}

impl<'a> TokenStream<'a> {
    pub fn new(tok: &'a Tokenizer) -> Self {
        Self {
            tok,
            pending: Vec::new(),
            started: false,
        }
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String, LlmError> {
        let bytes = self.tok.piece_bytes(id)?;
        let bytes = if !self.started && self.tok.strip_leading_space {
            bytes.strip_prefix(b" ").unwrap_or(bytes)
        } else {
            bytes
        };
        self.started = true;
        self.pending.extend_from_slice(bytes);
        Ok(self.take_complete())
    }

    /// Flushes what is left (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> Result<String, LlmError> {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        Ok(out)
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix is valid UTF-8 by construction.
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // Incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Bytes that can never be valid: replace them and go on.
                        Some(bad) => {
                            out.push('\u{fffd}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }
}
