//! Tokenizer: built from GGUF metadata (`tokenizer.ggml.*`) or read from `tokenizer.json`,
//! encoding through the `tokenizers` crate the way llama.cpp does for the same file.
//!
//! Two GGUF vocabulary kinds are supported:
//! - `gpt2`: byte-level BPE (SmolLM2, Qwen2, Llama 3): tokens + merges, and the pre-tokenizer
//!   regexes llama.cpp uses for the file's `tokenizer.ggml.pre`.
//! - `llama`: SentencePiece-style BPE (TinyLlama, Llama 2, Mistral): merges implied by the token
//!   scores, `▁` for spaces, a space prefix, byte fallback through `<0xNN>` tokens.
//!
//! Control, unknown and user-defined tokens written in the text (`<|im_start|>`) are matched
//! as single tokens, as llama.cpp does with `parse_special`.
//!
//! Decoding is done here from each token's raw bytes (not through the `tokenizers` decoder),
//! so that [`TokenStream`] can emit text without ever splitting a multi-byte character.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::LlmError;

mod meta;
mod stream;

use meta::*;
pub use stream::TokenStream;

/// The space marker of SentencePiece vocabularies (U+2581).
const SPM_SPACE: char = '\u{2581}';

/// GGUF token types (llama.cpp's `llama_token_type`).
mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const BYTE: i32 = 6;
}

/// Token texts llama.cpp also treats as end of generation when the vocabulary has them as
/// control tokens.
const END_OF_TURN_TOKENS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "<|end_of_text|>",
];

/// How the vocabulary encodes text, which decides how a token turns back into bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// GPT-2 byte-level BPE (GGUF `tokenizer.ggml.model = "gpt2"`).
    ByteLevelBpe,
    /// SentencePiece-style BPE with `▁` and `<0xNN>` byte tokens (GGUF `"llama"`).
    SentencePiece,
    /// A `tokenizer.json` whose decoder is neither of the above; tokens decode one by one.
    Other,
}

/// A tokenizer with the model's special ids and each token's raw bytes.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    kind: VocabKind,
    /// Token text as stored in the vocabulary, by id.
    tokens: Vec<String>,
    token_to_id: HashMap<String, u32>,
    /// Raw bytes each token decodes to, by id.
    pieces: Vec<Vec<u8>>,
    /// Control / unknown tokens (not text a model writes as content).
    special: Vec<bool>,
    bos: Option<u32>,
    eos: Option<u32>,
    eos_ids: Vec<u32>,
    add_bos: bool,
    /// SentencePiece with a space prefix: the first decoded token loses one leading space.
    strip_leading_space: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos_ids", &self.eos_ids)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

fn tok_err(msg: impl Into<String>) -> LlmError {
    LlmError::Tokenizer(msg.into())
}

// ---------------------------------------------------------------------------------------------
// GGUF metadata access

/// GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the rest to U+0100 onwards.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            let c = next;
            next += 1;
            c
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\u{fffd}');
    }
    table
}

fn char_to_byte_map() -> HashMap<char, u8> {
    byte_to_char_table()
        .iter()
        .enumerate()
        .map(|(b, &c)| (c, b as u8))
        .collect()
}

/// Bytes of a byte-level token: each char maps back to one byte; a char outside the table
/// (user-defined tokens can hold any text) stays as its own UTF-8.
fn byte_level_bytes(token: &str, map: &HashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match map.get(&c) {
            Some(&b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// `<0xNN>` -> NN.
fn parse_byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

fn spm_bytes(token: &str) -> Vec<u8> {
    if let Some(b) = parse_byte_token(token) {
        return vec![b];
    }
    token.replace(SPM_SPACE, " ").into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer regexes, as llama.cpp's llama-vocab.cpp has them per `tokenizer.ggml.pre`.

const RE_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const RE_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_BLOOM: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";

/// The regex list for a `tokenizer.ggml.pre` value; `None` for an unknown one.
fn pre_tokenizer_regexes(pre: &str) -> Option<Vec<&'static str>> {
    Some(match pre {
        "default" => vec![r"[\p{P}\$\+<=>\^~\|]+", RE_GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "dbrx" | "smaug-bpe" | "pixtral"
        | "midm-2.0" => {
            if pre == "pixtral" {
                return pre_tokenizer_regexes("tekken");
            }
            vec![RE_LLAMA3]
        }
        "chatglm-bpe" => vec![RE_LLAMA3],
        "deepseek-llm" => vec![
            // Characters that Unicode normalization would change are escaped (U+1F7D, U+1FD3, ...).
            "[\r\n]",
            "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u{1F7D}ᾀ-ᾴᾶ-ᾼ\u{1FBE}ῂ-ῄῆ-ῌῐ-\u{1FD3}ῖ-\u{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u{2126}ℨ\u{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
            "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
            "\\s+$",
            "[一-龥ࠀ-一가-퟿]+",
            r"\p{N}+",
        ],
        "deepseek-v3" => vec![
            r"\p{N}{1,3}",
            "[一-龥぀-ゟ゠-ヿ]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
        ],
        "deepseek-coder" => vec!["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", "[一-龥ࠀ-一가-퟿]+", r"\p{N}"],
        "falcon" => vec![r"[\p{P}\$\+<=>\^~\|`]+", RE_GPT2, "[0-9][0-9][0-9]"],
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
            vec![r"\p{N}", RE_GPT2]
        }
        "gpt-2" | "gpt2" | "mpt" | "olmo" | "jais" => vec![RE_GPT2],
        "stablelm2" | "qwen2" | "deepseek-r1-qwen" | "megrez" => vec![RE_QWEN2],
        "poro-chat" | "bloom" | "gpt3-finnish" => vec![RE_BLOOM],
        "viking" => vec![RE_BLOOM, r"\p{N}"],
        "tekken" => vec![
            r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
        "chameleon" => vec![
            "<sentinel:[0-9]+>",
            "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
            "([\\t\\n]|    |  )",
            r"\p{N}",
            r"[\p{P}!-/:-@\[-`{-~]",
            RE_GPT2,
        ],
        _ => return None,
    })
}

const KNOWN_PRE: &[&str] = &[
    "default",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "dbrx",
    "smaug-bpe",
    "midm-2.0",
    "chatglm-bpe",
    "deepseek-llm",
    "deepseek-v3",
    "deepseek-coder",
    "falcon",
    "starcoder",
    "refact",
    "command-r",
    "smollm",
    "codeshell",
    "exaone",
    "minerva-7b",
    "gpt-2",
    "gpt2",
    "mpt",
    "olmo",
    "jais",
    "stablelm2",
    "qwen2",
    "deepseek-r1-qwen",
    "megrez",
    "poro-chat",
    "bloom",
    "gpt3-finnish",
    "viking",
    "tekken",
    "pixtral",
    "chameleon",
];

fn byte_level_pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, LlmError> {
    let regexes = pre_tokenizer_regexes(pre).ok_or_else(|| {
        tok_err(format!(
            "unknown pre-tokenizer `{pre}` (GGUF tokenizer.ggml.pre); known: {}",
            KNOWN_PRE.join(", ")
        ))
    })?;
    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(regexes.len() + 1);
    for re in regexes {
        let split = Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| tok_err(format!("pre-tokenizer `{pre}`: bad regex {re:?}: {e}")))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, false, false).into());
    Ok(PreSequence::new(steps).into())
}

// ---------------------------------------------------------------------------------------------

fn added_token(text: &str, special: bool) -> AddedToken {
    AddedToken::from(text.to_string(), special).normalized(false)
}

/// `token -> id`, later ids winning on duplicates (llama.cpp's `token_to_id`).
fn vocab_map(tokens: &[String]) -> HashMap<String, u32> {
    let mut map = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        map.insert(t.clone(), i as u32);
    }
    map
}

/// Ids llama.cpp treats as end of generation: eos, eot, eom, and known end-of-turn control tokens.
fn end_ids(
    primary: &[Option<u32>],
    tokens: &[String],
    types: &[i32],
    token_to_id: &HashMap<String, u32>,
) -> Vec<u32> {
    let mut out: Vec<u32> = primary.iter().flatten().copied().collect();
    for name in END_OF_TURN_TOKENS {
        if let Some(&id) = token_to_id.get(*name) {
            let ty = types
                .get(id as usize)
                .copied()
                .unwrap_or(token_type::NORMAL);
            if (ty == token_type::CONTROL || ty == token_type::USER_DEFINED)
                && tokens[id as usize] == *name
            {
                out.push(id);
            }
        }
    }
    let mut seen = HashSet::new();
    out.retain(|id| seen.insert(*id));
    out
}

impl Tokenizer {
    /// From GGUF metadata: tokenizer.ggml.model = "gpt2" (byte-level BPE: tokens + merges) and
    /// "llama" (SentencePiece-style BPE with scores, byte-fallback `<0xNN>` tokens).
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self, LlmError> {
        let model = meta_str(content, "tokenizer.ggml.model")?.ok_or_else(|| {
            tok_err("GGUF has no `tokenizer.ggml.model`; use a tokenizer.json instead")
        })?;
        let tokens = meta_strings(content, "tokenizer.ggml.tokens")?
            .ok_or_else(|| tok_err("GGUF has no `tokenizer.ggml.tokens`"))?;
        if tokens.is_empty() {
            return Err(tok_err("GGUF `tokenizer.ggml.tokens` is empty"));
        }
        let n = tokens.len();
        let types = match meta_i32s(content, "tokenizer.ggml.token_type")? {
            Some(t) if t.len() == n => t,
            Some(t) => {
                return Err(tok_err(format!(
                    "GGUF `tokenizer.ggml.token_type` has {} entries but `tokenizer.ggml.tokens` has {n}",
                    t.len()
                )))
            }
            None => vec![token_type::NORMAL; n],
        };
        match model {
            "gpt2" => Self::from_gguf_bpe(content, tokens, types),
            "llama" => Self::from_gguf_spm(content, tokens, types),
            other => Err(tok_err(format!(
                "GGUF tokenizer model `{other}` is not supported (supported: gpt2, llama); use a tokenizer.json"
            ))),
        }
    }

    fn from_gguf_bpe(
        content: &gguf_file::Content,
        tokens: Vec<String>,
        types: Vec<i32>,
    ) -> Result<Self, LlmError> {
        let n = tokens.len();
        let merges_raw = meta_strings(content, "tokenizer.ggml.merges")?.ok_or_else(|| {
            tok_err("GGUF byte-level BPE vocabulary has no `tokenizer.ggml.merges`")
        })?;
        let pre = meta_str(content, "tokenizer.ggml.pre")?.unwrap_or("default");
        let token_to_id = vocab_map(&tokens);

        // Merges as llama.cpp reads them: split at the first space after the first char; the
        // first occurrence of a pair gives its rank. Pairs whose parts or result are not tokens
        // can never apply and are left out (the `tokenizers` crate rejects them).
        let mut seen = HashSet::with_capacity(merges_raw.len());
        let mut merges = Vec::with_capacity(merges_raw.len());
        for (i, m) in merges_raw.iter().enumerate() {
            let split_at = m
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(p, _)| p)
                .ok_or_else(|| {
                    tok_err(format!(
                        "GGUF `tokenizer.ggml.merges`[{i}] = {m:?} has no space"
                    ))
                })?;
            let (a, b) = (&m[..split_at], &m[split_at + 1..]);
            if !token_to_id.contains_key(a) || !token_to_id.contains_key(b) {
                continue;
            }
            if !token_to_id.contains_key(&format!("{a}{b}")) {
                continue;
            }
            if seen.insert((a.to_string(), b.to_string())) {
                merges.push((a.to_string(), b.to_string()));
            }
        }
        let vocab: tokenizers::models::bpe::Vocab =
            token_to_id.iter().map(|(k, &v)| (k.clone(), v)).collect();
        let mut builder = BPE::builder().vocab_and_merges(vocab, merges);
        if matches!(
            pre,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1"
        ) {
            builder = builder.ignore_merges(true);
        }
        let bpe = builder
            .build()
            .map_err(|e| tok_err(format!("building the BPE model: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(byte_level_pre_tokenizer(pre)?));
        inner.with_decoder(Some(DecoderWrapper::from(ByteLevel::new(
            false, false, false,
        ))));

        let byte_map = char_to_byte_map();
        let mut pieces = Vec::with_capacity(n);
        let mut special = Vec::with_capacity(n);
        let mut added = Vec::new();
        for (i, (t, &ty)) in tokens.iter().zip(types.iter()).enumerate() {
            let is_special = ty == token_type::CONTROL || ty == token_type::UNKNOWN;
            special.push(is_special);
            match ty {
                token_type::CONTROL | token_type::UNKNOWN | token_type::USER_DEFINED => {
                    pieces.push(t.as_bytes().to_vec());
                    if token_to_id.get(t) == Some(&(i as u32)) && !t.is_empty() {
                        added.push(added_token(t, is_special));
                    }
                }
                _ => pieces.push(byte_level_bytes(t, &byte_map)),
            }
        }
        inner
            .add_special_tokens(added)
            .map_err(|e| tok_err(format!("adding special tokens: {e}")))?;

        let bos = meta_id(content, "tokenizer.ggml.bos_token_id", n)?;
        let eos = meta_id(content, "tokenizer.ggml.eos_token_id", n)?;
        let eot = meta_id(content, "tokenizer.ggml.eot_token_id", n)?;
        let eom = meta_id(content, "tokenizer.ggml.eom_token_id", n)?;
        let add_bos = meta_bool(content, "tokenizer.ggml.add_bos_token")?.unwrap_or(false);
        let eos_ids = end_ids(&[eos, eot, eom], &tokens, &types, &token_to_id);
        Ok(Self {
            inner,
            kind: VocabKind::ByteLevelBpe,
            tokens,
            token_to_id,
            pieces,
            special,
            bos,
            eos,
            eos_ids,
            add_bos,
            strip_leading_space: false,
        })
    }

    fn from_gguf_spm(
        content: &gguf_file::Content,
        tokens: Vec<String>,
        types: Vec<i32>,
    ) -> Result<Self, LlmError> {
        let n = tokens.len();
        let scores = match meta_f32s(content, "tokenizer.ggml.scores")? {
            Some(s) if s.len() == n => s,
            Some(s) => {
                return Err(tok_err(format!(
                "GGUF `tokenizer.ggml.scores` has {} entries but `tokenizer.ggml.tokens` has {n}",
                s.len()
            )))
            }
            None => {
                return Err(tok_err(
                    "GGUF SentencePiece vocabulary has no `tokenizer.ggml.scores`",
                ))
            }
        };
        let add_space_prefix =
            meta_bool(content, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
        let token_to_id = vocab_map(&tokens);

        // llama.cpp's SentencePiece BPE merges any two adjacent pieces whose concatenation is a
        // token, highest score first. As ranked merges: every split of a token into two tokens,
        // ordered by the merged token's score (then id).
        let mergeable = |ty: i32| {
            !matches!(
                ty,
                token_type::CONTROL | token_type::UNKNOWN | token_type::BYTE
            )
        };
        let mut ranked: Vec<(f32, u32, String, String)> = Vec::new();
        for (id, t) in tokens.iter().enumerate() {
            if !mergeable(types[id]) || token_to_id.get(t) != Some(&(id as u32)) {
                continue;
            }
            for (p, _) in t.char_indices().skip(1) {
                let (a, b) = (&t[..p], &t[p..]);
                let ok = |s: &str| {
                    token_to_id
                        .get(s)
                        .is_some_and(|&j| mergeable(types[j as usize]))
                };
                if ok(a) && ok(b) {
                    ranked.push((scores[id], id as u32, a.to_string(), b.to_string()));
                }
            }
        }
        ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let merges: Vec<(String, String)> = ranked.into_iter().map(|(_, _, a, b)| (a, b)).collect();

        let vocab: tokenizers::models::bpe::Vocab =
            token_to_id.iter().map(|(k, &v)| (k.clone(), v)).collect();
        let mut builder = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .byte_fallback(true)
            .fuse_unk(true);
        let unk = meta_id(content, "tokenizer.ggml.unknown_token_id", n)?.or_else(|| {
            types
                .iter()
                .position(|&t| t == token_type::UNKNOWN)
                .map(|p| p as u32)
        });
        if let Some(u) = unk {
            builder = builder.unk_token(tokens[u as usize].clone());
        }
        let bpe = builder
            .build()
            .map_err(|e| tok_err(format!("building the BPE model: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let space_marker = SPM_SPACE.to_string();
        let replace =
            Replace::new(" ", space_marker.as_str()).map_err(|e| tok_err(e.to_string()))?;
        let normalizer: tokenizers::NormalizerWrapper = if add_space_prefix {
            tokenizers::normalizers::Sequence::new(vec![
                Prepend::new(space_marker.clone()).into(),
                replace.into(),
            ])
            .into()
        } else {
            replace.into()
        };
        inner
            .with_normalizer(Some(normalizer))
            .map_err(|e| tok_err(e.to_string()))?;
        let mut decoders: Vec<DecoderWrapper> = vec![
            Replace::new(space_marker.as_str(), " ")
                .map_err(|e| tok_err(e.to_string()))?
                .into(),
            ByteFallback::new().into(),
            Fuse::new().into(),
        ];
        if add_space_prefix {
            decoders.push(Strip::new(' ', 1, 0).into());
        }
        inner.with_decoder(Some(DecoderSequence::new(decoders)));

        let mut pieces = Vec::with_capacity(n);
        let mut special = Vec::with_capacity(n);
        let mut added = Vec::new();
        for (i, (t, &ty)) in tokens.iter().zip(types.iter()).enumerate() {
            let is_special = ty == token_type::CONTROL || ty == token_type::UNKNOWN;
            special.push(is_special);
            match ty {
                token_type::CONTROL | token_type::UNKNOWN | token_type::USER_DEFINED => {
                    pieces.push(t.as_bytes().to_vec());
                    if token_to_id.get(t) == Some(&(i as u32)) && !t.is_empty() {
                        added.push(added_token(t, is_special));
                    }
                }
                token_type::BYTE => {
                    pieces.push(parse_byte_token(t).map(|b| vec![b]).ok_or_else(|| {
                        tok_err(format!("GGUF byte token {i} is {t:?}, expected <0xNN>"))
                    })?)
                }
                _ => pieces.push(spm_bytes(t)),
            }
        }
        inner
            .add_special_tokens(added)
            .map_err(|e| tok_err(format!("adding special tokens: {e}")))?;

        let bos = meta_id(content, "tokenizer.ggml.bos_token_id", n)?;
        let eos = meta_id(content, "tokenizer.ggml.eos_token_id", n)?;
        let eot = meta_id(content, "tokenizer.ggml.eot_token_id", n)?;
        let eom = meta_id(content, "tokenizer.ggml.eom_token_id", n)?;
        let add_bos = meta_bool(content, "tokenizer.ggml.add_bos_token")?.unwrap_or(true);
        let eos_ids = end_ids(&[eos, eot, eom], &tokens, &types, &token_to_id);
        Ok(Self {
            inner,
            kind: VocabKind::SentencePiece,
            tokens,
            token_to_id,
            pieces,
            special,
            bos,
            eos,
            eos_ids,
            add_bos,
            strip_leading_space: add_space_prefix,
        })
    }

    /// From a Hugging Face `tokenizer.json`. The special ids and whether to add BOS come from a
    /// `tokenizer_config.json` (and `generation_config.json`) beside it when present.
    pub fn from_file(tokenizer_json: &Path) -> Result<Self, LlmError> {
        if !tokenizer_json.is_file() {
            return Err(LlmError::NotFound(tokenizer_json.to_path_buf()));
        }
        let inner = tokenizers::Tokenizer::from_file(tokenizer_json)
            .map_err(|e| tok_err(format!("{}: {e}", tokenizer_json.display())))?;
        let vocab = inner.get_vocab(true);
        let n = vocab.values().copied().max().map_or(0, |m| m as usize + 1);
        if n == 0 {
            return Err(tok_err(format!(
                "{}: empty vocabulary",
                tokenizer_json.display()
            )));
        }
        let mut tokens = vec![String::new(); n];
        for (t, &id) in &vocab {
            tokens[id as usize] = t.clone();
        }
        let added = inner.get_added_tokens_decoder();
        let kind = match inner.get_decoder() {
            Some(DecoderWrapper::ByteLevel(_)) => VocabKind::ByteLevelBpe,
            Some(DecoderWrapper::Metaspace(_)) => VocabKind::SentencePiece,
            Some(DecoderWrapper::Sequence(_))
                if tokens.iter().any(|t| t.starts_with(SPM_SPACE)) =>
            {
                VocabKind::SentencePiece
            }
            _ => VocabKind::Other,
        };
        let byte_map = char_to_byte_map();
        let mut pieces = Vec::with_capacity(n);
        let mut special = Vec::with_capacity(n);
        for (id, t) in tokens.iter().enumerate() {
            let id = id as u32;
            if let Some(a) = added.get(&id) {
                pieces.push(a.content.as_bytes().to_vec());
                special.push(a.special);
                continue;
            }
            special.push(false);
            pieces.push(match kind {
                VocabKind::ByteLevelBpe => byte_level_bytes(t, &byte_map),
                VocabKind::SentencePiece => spm_bytes(t),
                VocabKind::Other => inner
                    .decode(&[id], false)
                    .map_err(|e| {
                        tok_err(format!(
                            "{}: decoding token {id}: {e}",
                            tokenizer_json.display()
                        ))
                    })?
                    .into_bytes(),
            });
        }
        let token_to_id: HashMap<String, u32> = vocab.into_iter().collect();

        let dir = tokenizer_json.parent().unwrap_or(Path::new("."));
        let config = read_json_if_present(&dir.join("tokenizer_config.json"))?;
        let gen_config = read_json_if_present(&dir.join("generation_config.json"))?;
        let token_field = |key: &str| -> Option<u32> {
            let v = config.as_ref()?.get(key)?;
            let s = v
                .as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))?;
            token_to_id.get(s).copied()
        };
        let bos = token_field("bos_token").or_else(|| {
            ["<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>"]
                .iter()
                .find_map(|t| token_to_id.get(*t).copied())
        });
        let eos = token_field("eos_token");
        let mut primary = vec![eos];
        if let Some(g) = &gen_config {
            match g.get("eos_token_id") {
                Some(serde_json::Value::Number(x)) => primary.push(x.as_u64().map(|x| x as u32)),
                Some(serde_json::Value::Array(xs)) => {
                    primary.extend(xs.iter().map(|x| x.as_u64().map(|x| x as u32)));
                }
                _ => {}
            }
        }
        primary.retain(|id| id.is_none_or(|i| (i as usize) < n));
        let types: Vec<i32> = special
            .iter()
            .map(|&s| {
                if s {
                    token_type::CONTROL
                } else {
                    token_type::NORMAL
                }
            })
            .collect();
        let eos_ids = end_ids(&primary, &tokens, &types, &token_to_id);
        // Whether the file's own post-processor adds BOS, unless the config says.
        let add_bos = match config
            .as_ref()
            .and_then(|c| c.get("add_bos_token"))
            .and_then(|v| v.as_bool())
        {
            Some(b) => b,
            None => match (bos, inner.encode("a", true)) {
                (Some(b), Ok(enc)) => enc.get_ids().first() == Some(&b),
                _ => false,
            },
        };
        let mut tok = Self {
            inner,
            kind,
            tokens,
            token_to_id,
            pieces,
            special,
            bos,
            eos,
            eos_ids,
            add_bos,
            strip_leading_space: false,
        };
        // A SentencePiece decoder that strips the space prefix: seen on "a", which encodes to "▁a".
        if kind == VocabKind::SentencePiece {
            let ids = tok.encode_plain("a")?;
            let raw = tok.raw_bytes(&ids)?;
            let official = tok
                .inner
                .decode(&ids, false)
                .map_err(|e| tok_err(e.to_string()))?;
            tok.strip_leading_space = raw.first() == Some(&b' ') && !official.starts_with(' ');
        }
        Ok(tok)
    }

    fn encode_plain(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| tok_err(format!("encoding {} bytes of text: {e}", text.len())))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text`. Special tokens written in the text (e.g. `<|im_start|>`) are parsed
    /// as special. `add_bos`: prepend BOS *if the model asks for one* (GGUF
    /// `tokenizer.ggml.add_bos_token`, as llama.cpp's `add_special`); models that do not, such
    /// as SmolLM2, get none. Use [`Tokenizer::bos_id`] to add one unconditionally.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, LlmError> {
        let ids = self.encode_plain(text)?;
        match self.bos {
            Some(bos) if add_bos && self.add_bos => {
                let mut out = Vec::with_capacity(ids.len() + 1);
                out.push(bos);
                out.extend(ids);
                Ok(out)
            }
            _ => Ok(ids),
        }
    }

    /// Ids of a whole prompt: BOS first if the model asks for one and the text does not
    /// already start with it (chat templates of Llama 2/3 write `bos_token` themselves; llama.cpp
    /// would send two BOS then).
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        let ids = self.encode_plain(text)?;
        match self.bos {
            Some(bos) if self.add_bos && ids.first() != Some(&bos) => {
                let mut out = Vec::with_capacity(ids.len() + 1);
                out.push(bos);
                out.extend(ids);
                Ok(out)
            }
            _ => Ok(ids),
        }
    }

    fn raw_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, LlmError> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.piece_bytes(id)?);
        }
        Ok(out)
    }

    /// Raw bytes of one token (special tokens as their text).
    pub fn piece_bytes(&self, id: u32) -> Result<&[u8], LlmError> {
        self.pieces
            .get(id as usize)
            .map(Vec::as_slice)
            .ok_or_else(|| {
                tok_err(format!(
                    "token id {id} is outside the vocabulary (size {})",
                    self.pieces.len()
                ))
            })
    }

    /// Text of `ids`, special tokens included as their text (so `decode(encode(s)) == s`).
    /// Invalid UTF-8 (a sequence cut in the middle of a character) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        let mut bytes = self.raw_bytes(ids)?;
        if self.strip_leading_space && bytes.first() == Some(&b' ') {
            bytes.remove(0);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The model's own end-of-sequence id (`tokenizer.ggml.eos_token_id`).
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// eos + other end-of-turn ids (e.g. `<|im_end|>`, `<|eot_id|>`): generation stops at any.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether the model wants BOS at the start of a prompt.
    pub fn add_bos_by_default(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Id of a token given as it is written in the vocabulary (`"<|im_end|>"`, `"Ġyes"`, `"▁yes"`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.token_to_id.get(token).copied()
    }

    /// Vocabulary text of a token (`"Ġyes"`), as opposed to its decoded text.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Whether `id` is a control (or unknown) token rather than text.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn kind(&self) -> VocabKind {
        self.kind
    }

    /// First token id of `word` as the answer would be generated after the prompt; returns
    /// (id, was_single_token).
    ///
    /// The word is encoded as the first thing the model writes: for byte-level vocabularies
    /// exactly as given (`"yes"` and `" yes"` are different tokens: pass the variant the prompt
    /// calls for); for SentencePiece vocabularies with a space prefix, leading spaces are
    /// dropped and the prefix applies (`"yes"` and `" yes"` both give `▁yes`, which is what
    /// such models write after `[/INST]` or `### Assistant:`).
    pub fn answer_token(&self, word: &str) -> Result<(u32, bool), LlmError> {
        let text = if self.strip_leading_space {
            word.trim_start_matches(' ')
        } else {
            word
        };
        if text.is_empty() {
            return Err(tok_err(format!("answer word {word:?} is empty")));
        }
        let ids = self.encode_plain(text)?;
        match ids.first() {
            Some(&first) => Ok((first, ids.len() == 1)),
            None => Err(tok_err(format!(
                "answer word {word:?} encodes to no tokens"
            ))),
        }
    }

    /// The single-token spellings of `word` a model may write: the word itself and with a
    /// leading space, each once (`[("yes", id), (" yes", id)]`). Empty if neither is one token.
    pub fn answer_token_variants(&self, word: &str) -> Result<Vec<(String, u32)>, LlmError> {
        let word = word.trim_start_matches(' ');
        let mut out: Vec<(String, u32)> = Vec::new();
        for variant in [word.to_string(), format!(" {word}")] {
            let (id, single) = self.answer_token(&variant)?;
            if single && !out.iter().any(|(_, i)| *i == id) {
                out.push((variant, id));
            }
        }
        Ok(out)
    }

    /// The wrapped `tokenizers` tokenizer (its own decoder is set up too).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

fn read_json_if_present(path: &Path) -> Result<Option<serde_json::Value>, LlmError> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| tok_err(format!("{}: line {}: {e}", path.display(), e.line()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(tok_err(format!("{}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection_with_gpt2_values() {
        let table = byte_to_char_table();
        let set: HashSet<char> = table.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(table[b' ' as usize], 'Ġ');
        assert_eq!(table[b'\n' as usize], 'Ċ');
        assert_eq!(table[b'a' as usize], 'a');
        assert_eq!(byte_level_bytes("Ġhi", &char_to_byte_map()), b" hi");
    }

    #[test]
    fn byte_tokens_parse_only_in_their_exact_form() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xff>"), Some(255));
        assert_eq!(parse_byte_token("<0x0>"), None);
        assert_eq!(parse_byte_token("0x0A"), None);
        assert_eq!(spm_bytes("▁the"), b" the");
    }

    #[test]
    fn every_listed_pre_tokenizer_compiles() {
        for pre in KNOWN_PRE {
            byte_level_pre_tokenizer(pre).unwrap_or_else(|e| panic!("{pre}: {e}"));
        }
        assert!(byte_level_pre_tokenizer("no-such-pre").is_err());
    }
}
