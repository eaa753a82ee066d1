// placeholder: replaced by engine-io's version at merge
//! Tokenizer built from GGUF metadata (GPT-2 style byte-level BPE only in this placeholder).

use candle_core::quantized::gguf_file;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use super::LlmError;

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Vec<u32>,
}

fn tok_err(e: impl std::fmt::Display) -> LlmError {
    LlmError::Tokenizer(e.to_string())
}

impl Tokenizer {
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self, LlmError> {
        let md = &content.metadata;
        let model = md
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if model != "gpt2" {
            return Err(LlmError::Tokenizer(format!(
                "tokenizer.ggml.model `{model}` is not supported (only gpt2)"
            )));
        }
        let tokens = md
            .get("tokenizer.ggml.tokens")
            .ok_or_else(|| tok_err("missing tokenizer.ggml.tokens"))?
            .to_vec()?;
        let tokens: Vec<String> = tokens
            .iter()
            .map(|t| t.to_string().cloned())
            .collect::<Result<_, _>>()?;
        let merges: Vec<(String, String)> = match md.get("tokenizer.ggml.merges") {
            Some(m) => m
                .to_vec()?
                .iter()
                .map(|v| {
                    let s = v.to_string()?;
                    let (a, b) = s
                        .split_once(' ')
                        .ok_or_else(|| tok_err(format!("bad merge `{s}`")))?;
                    Ok((a.to_string(), b.to_string()))
                })
                .collect::<Result<_, LlmError>>()?,
            None => Vec::new(),
        };
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(t) => t
                .to_vec()?
                .iter()
                .map(|v| v.to_i32())
                .collect::<Result<_, _>>()?,
            None => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tok_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevel::default()));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(types.iter())
            .filter(|(_, &ty)| ty == 3 || ty == 4)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        inner.add_special_tokens(special).map_err(tok_err)?;
        let get_id = |k: &str| md.get(k).and_then(|v| v.to_u32().ok());
        let bos = get_id("tokenizer.ggml.bos_token_id");
        let mut eos = Vec::new();
        if let Some(e) = get_id("tokenizer.ggml.eos_token_id") {
            eos.push(e);
        }
        for name in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>"] {
            if let Some(id) = inner.token_to_id(name) {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        Ok(Self { inner, bos, eos })
    }

    pub fn from_file(tokenizer_json: &std::path::Path) -> Result<Self, LlmError> {
        let inner = tokenizers::Tokenizer::from_file(tokenizer_json).map_err(tok_err)?;
        let mut eos = Vec::new();
        for name in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>"] {
            if let Some(id) = inner.token_to_id(name) {
                eos.push(id);
            }
        }
        let bos = ["<s>", "<|begin_of_text|>"]
            .iter()
            .find_map(|t| inner.token_to_id(t));
        Ok(Self { inner, bos, eos })
    }

    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, LlmError> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_bos {
            if let Some(b) = self.bos {
                ids.push(b);
            }
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn answer_token(&self, word: &str) -> Result<(u32, bool), LlmError> {
        let ids = self.encode(word, false)?;
        let first = *ids
            .first()
            .ok_or_else(|| LlmError::Tokenizer(format!("`{word}` encodes to no token")))?;
        Ok((first, ids.len() == 1))
    }
}

/// Streaming detokenizer that never splits a multi-byte character.
pub struct TokenStream<'a> {
    tok: &'a Tokenizer,
    ids: Vec<u32>,
    emitted: usize,
}

impl<'a> TokenStream<'a> {
    pub fn new(tok: &'a Tokenizer) -> Self {
        Self {
            tok,
            ids: Vec::new(),
            emitted: 0,
        }
    }

    pub fn push(&mut self, id: u32) -> Result<String, LlmError> {
        self.ids.push(id);
        let text = self.tok.decode(&self.ids)?;
        if text.ends_with('\u{fffd}') || text.len() < self.emitted {
            return Ok(String::new());
        }
        let delta = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(delta)
    }

    pub fn finish(&mut self) -> Result<String, LlmError> {
        let text = self.tok.decode(&self.ids)?;
        if text.len() <= self.emitted || !text.is_char_boundary(self.emitted) {
            return Ok(String::new());
        }
        let delta = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(delta)
    }
}
