//! Tokenizer and chat template against llama.cpp's own output for the default model
//! (recorded by scripts/record_tokenizer_ids.py into tests/data/), and the SentencePiece and
//! byte-level paths on small GGUF files written here.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::quantized::gguf_file::{self, Value};
use trsr::llm::chat::ChatTemplate;
use trsr::llm::source::file_sha256;
use trsr::llm::tokenizer::{TokenStream, Tokenizer, VocabKind};
use trsr::llm::LlmError;
use trsr::lm::ChatMessage;

/// The default model where `trsr fetch-model` puts it (see `common::default_model`).
fn default_model() -> Option<PathBuf> {
    common::default_model()
}

fn read_gguf(path: &std::path::Path) -> gguf_file::Content {
    let mut f = std::fs::File::open(path).unwrap();
    gguf_file::Content::read(&mut f).unwrap()
}

fn recorded() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tokenizer_ids_smollm2.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The default model and its recorded llama.cpp data, if the file present is the one recorded.
fn smollm2() -> Option<(Tokenizer, gguf_file::Content, serde_json::Value)> {
    let path = default_model()?;
    let data = recorded();
    let sha = file_sha256(&path).unwrap();
    if sha != data["model_sha256"].as_str().unwrap() {
        common::skipped(&format!(
            "{} has SHA-256 {sha}, the recorded ids are for another file",
            path.display()
        ));
        return None;
    }
    let content = read_gguf(&path);
    let tok = Tokenizer::from_gguf(&content).unwrap();
    Some((tok, content, data))
}

#[test]
fn smollm2_token_ids_equal_llama_cpp_for_every_recorded_string() {
    let Some((tok, _, data)) = smollm2() else {
        return;
    };
    assert_eq!(tok.kind(), VocabKind::ByteLevelBpe);
    assert_eq!(
        tok.vocab_size() as u64,
        data["vocab_size"].as_u64().unwrap()
    );
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text, true).unwrap();
        if got != want {
            failures.push(format!(
                "{text:?}\n  llama.cpp: {want:?}\n  ours:      {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} strings differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_decode_of_encode_is_the_identity() {
    let Some((tok, _, data)) = smollm2() else {
        return;
    };
    for case in data["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tok.encode(text, true).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
        // llama.cpp's own detokenization agrees.
        assert_eq!(case["llama_cpp_detokenized"].as_str().unwrap(), text);
    }
}

#[test]
fn smollm2_special_ids_and_answer_words() {
    let Some((tok, _, data)) = smollm2() else {
        return;
    };
    let im_start = tok.token_id("<|im_start|>").unwrap();
    let im_end = tok.token_id("<|im_end|>").unwrap();
    let eot = tok.token_id("<|endoftext|>").unwrap();
    assert_eq!(Some(u64::from(im_start)), data["bos_id"].as_u64());
    assert_eq!(Some(u64::from(im_end)), data["eos_id"].as_u64());
    assert_eq!(tok.bos_id(), Some(im_start));
    assert!(
        tok.eos_ids().contains(&im_end) && tok.eos_ids().contains(&eot),
        "{:?}",
        tok.eos_ids()
    );
    assert_eq!(tok.eos_ids()[0], im_end);
    // SmolLM2 does not ask for BOS, so encode(.., true) adds none (as llama.cpp).
    assert!(!tok.add_bos_by_default());
    assert_eq!(
        tok.encode_prompt("hi").unwrap(),
        tok.encode("hi", false).unwrap()
    );
    assert!(tok.is_special(im_end));
    assert!(!tok.is_special(tok.token_id("yes").unwrap()));

    let (yes, single) = tok.answer_token("yes").unwrap();
    assert!(single);
    assert_eq!(tok.token_text(yes), Some("yes"));
    let (space_yes, single) = tok.answer_token(" yes").unwrap();
    assert!(single);
    assert_eq!(tok.token_text(space_yes), Some("Ġyes"));
    assert_ne!(yes, space_yes);
    let (no, _) = tok.answer_token("no").unwrap();
    assert_ne!(yes, no);
    let variants = tok.answer_token_variants("yes").unwrap();
    assert_eq!(
        variants,
        vec![("yes".to_string(), yes), (" yes".to_string(), space_yes)]
    );

    // A word that is not one token: its first token, flagged.
    let (first, single) = tok.answer_token("Antidisestablishmentarianism").unwrap();
    assert!(!single);
    assert_eq!(
        first,
        tok.encode("Antidisestablishmentarianism", false).unwrap()[0]
    );
    assert!(matches!(tok.answer_token(""), Err(LlmError::Tokenizer(_))));
}

#[test]
fn smollm2_stream_never_splits_a_character_and_flushes_the_tail() {
    let Some((tok, _, _)) = smollm2() else { return };
    let text = "Crab 🦀, 你好 and café 👨‍👩‍👧!";
    let ids = tok.encode(text, false).unwrap();
    let mut stream = TokenStream::new(&tok);
    let mut out = String::new();
    let mut held_back = 0;
    for &id in &ids {
        let delta = stream.push(id).unwrap();
        if delta.is_empty() {
            held_back += 1;
        }
        out.push_str(&delta);
    }
    out.push_str(&stream.finish().unwrap());
    assert_eq!(out, text);
    // Some emoji/CJK bytes come as several tokens, so the stream had to wait at least once.
    assert!(
        held_back > 0,
        "no token ended inside a character: the test text does not exercise the stream"
    );

    // A stream cut inside a character flushes it as U+FFFD at the end, nothing is lost silently.
    let crab = tok.encode("🦀", false).unwrap();
    assert!(crab.len() > 1);
    let mut stream = TokenStream::new(&tok);
    assert_eq!(stream.push(crab[0]).unwrap(), "");
    assert_eq!(stream.finish().unwrap(), "\u{fffd}");
    assert!(stream.push(u32::MAX).is_err());
}

#[test]
fn smollm2_chat_template_renders_what_jinja2_renders() {
    let Some((tok, content, data)) = smollm2() else {
        return;
    };
    let tmpl = ChatTemplate::from_gguf(&content, &tok)
        .unwrap()
        .expect("SmolLM2 has a chat template");
    assert_eq!(tmpl.bos_token(), "<|im_start|>");
    assert_eq!(tmpl.eos_token(), "<|im_end|>");
    let chats = data["chats"]
        .as_array()
        .expect("the recording has the jinja2 renderings");
    assert!(!chats.is_empty());
    for chat in chats {
        let messages: Vec<ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
        let add_gen = chat["add_generation_prompt"].as_bool().unwrap();
        let want = chat["rendered"].as_str().unwrap();
        assert_eq!(
            tmpl.render(&messages, add_gen).unwrap(),
            want,
            "messages {messages:?}"
        );
    }
    if let Some(p) = data["llama_cpp_formatter_prompt"].as_str() {
        assert_eq!(tmpl.render(&[ChatMessage::user("hi")], true).unwrap(), p);
    }
    // The rendered prompt's markers are single special tokens.
    let rendered = tmpl.render(&[ChatMessage::user("hi")], true).unwrap();
    let ids = tok.encode(&rendered, true).unwrap();
    assert_eq!(ids[0], tok.token_id("<|im_start|>").unwrap());
    assert_eq!(
        ids.iter()
            .filter(|&&i| Some(i) == tok.token_id("<|im_end|>"))
            .count(),
        2
    );
}

fn ids_of(case: &serde_json::Value) -> Vec<u32> {
    case["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// Recordings of the SmolLM2 vocabulary under other llama.cpp pre-tokenizers
/// (`record_tokenizer_ids.py --pre NAME`): tests/data, plus `$TRSR_TOKENIZER_IDS_DIR` for
/// ad-hoc checks.
fn pre_recordings() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data"
    ))];
    if let Some(extra) = std::env::var_os("TRSR_TOKENIZER_IDS_DIR") {
        dirs.push(PathBuf::from(extra));
    }
    let mut out = Vec::new();
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("tokenizer_ids_smollm2_pre_") && name.ends_with(".json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn other_pre_tokenizers_split_like_llama_cpp() {
    let Some((_, content, data)) = smollm2() else {
        return;
    };
    let recordings = pre_recordings();
    assert!(recordings.len() >= 3, "{recordings:?}");
    let mut content = content;
    let mut failures = Vec::new();
    for path in recordings {
        let rec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            rec["source_model_sha256"],
            data["model_sha256"],
            "{}",
            path.display()
        );
        let pre = rec["pre"].as_str().unwrap();
        content
            .metadata
            .insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
        let tok = Tokenizer::from_gguf(&content).unwrap();
        let cases = rec["cases"].as_array().unwrap();
        eprintln!("{}: pre {pre}, {} strings", path.display(), cases.len());
        for case in cases {
            let text = case["text"].as_str().unwrap();
            let got = tok.encode(text, true).unwrap();
            if got != ids_of(case) {
                failures.push(format!(
                    "[{pre}] {text:?}\n  llama.cpp: {:?}\n  ours:      {got:?}",
                    ids_of(case)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} strings differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn sentencepiece_ids_equal_llama_cpp_on_a_handmade_vocabulary() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tokenizer_ids_spm_handmade.json"
    );
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vocab = &rec["vocab"];
    let v = SpmVocab {
        tokens: vocab["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect(),
        scores: vocab["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect(),
        types: vocab["types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap() as i32)
            .collect(),
    };
    let variants = rec["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    let mut failures = Vec::new();
    let mut checked = 0;
    for variant in variants {
        let prefix = variant["add_space_prefix"].as_bool().unwrap();
        let tok = Tokenizer::from_gguf(&spm_content(
            &v,
            &[("tokenizer.ggml.add_space_prefix", Value::Bool(prefix))],
        ))
        .unwrap();
        for case in variant["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let got = tok.encode(text, true).unwrap();
            checked += 1;
            if got != ids_of(case) {
                failures.push(format!(
                    "[prefix {prefix}] {text:?}\n  llama.cpp: {:?}\n  ours:      {got:?}",
                    ids_of(case)
                ));
            }
        }
    }
    assert!(checked > 500);
    assert!(
        failures.is_empty(),
        "{} strings differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_tokenizer_json_reads_back_with_the_same_ids() {
    let Some((tok, _, data)) = smollm2() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    tok.inner().save(&json, false).unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"}, "add_bos_token": false,
            "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"}"#,
    )
    .unwrap();
    let from_json = Tokenizer::from_file(&json).unwrap();
    assert_eq!(from_json.kind(), VocabKind::ByteLevelBpe);
    assert_eq!(from_json.vocab_size(), tok.vocab_size());
    assert_eq!(from_json.bos_id(), tok.bos_id());
    assert_eq!(from_json.eos_ids(), tok.eos_ids());
    assert!(!from_json.add_bos_by_default());
    for case in data["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = from_json.encode(text, true).unwrap();
        assert_eq!(ids, ids_of(case), "{text:?}");
        assert_eq!(from_json.decode(&ids).unwrap(), text);
    }
    let tmpl =
        ChatTemplate::from_tokenizer_config(&dir.path().join("tokenizer_config.json"), &from_json)
            .unwrap()
            .unwrap();
    assert_eq!(tmpl.eos_token(), "<|im_end|>");
    assert_eq!(
        tmpl.render(&[ChatMessage::user("hi")], false).unwrap(),
        "<|im_start|>user\nhi<|im_end|>\n"
    );
    assert!(matches!(
        Tokenizer::from_file(&dir.path().join("none.json")),
        Err(LlmError::NotFound(_))
    ));
}

#[test]
fn sentencepiece_tokenizer_json_reads_back_with_the_same_ids_and_prefix_handling() {
    let v = spm_vocab();
    let tok = Tokenizer::from_gguf(&spm_content(&v, &[])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("tokenizer.json");
    tok.inner().save(&json, false).unwrap();
    let from_json = Tokenizer::from_file(&json).unwrap();
    assert_eq!(from_json.kind(), VocabKind::SentencePiece);
    // Without a tokenizer_config.json: BOS found by name; the saved file adds none itself.
    assert_eq!(from_json.bos_id(), tok.bos_id());
    for text in ["hello world", " hello", "hi\né", "<s>hi</s>", ""] {
        let ids = from_json.encode(text, false).unwrap();
        assert_eq!(ids, tok.encode(text, false).unwrap(), "{text:?}");
        assert_eq!(
            from_json.decode(&ids).unwrap(),
            tok.decode(&ids).unwrap(),
            "{text:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Small GGUF files written by the tests.

fn write_and_read(metadata: &[(&str, Value)]) -> gguf_file::Content {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vocab.gguf");
    {
        let mut f = std::fs::File::create(&path).unwrap();
        let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        gguf_file::write(&mut f, &md, &[]).unwrap();
    }
    read_gguf(&path)
}

fn strings(xs: &[String]) -> Value {
    Value::Array(xs.iter().map(|s| Value::String(s.clone())).collect())
}

/// A SentencePiece vocabulary: specials, 256 byte tokens, then pieces with distinct scores.
struct SpmVocab {
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i32>,
}

const SPM_PIECES: &[&str] = &[
    "▁", "h", "e", "l", "o", "w", "r", "d", "a", "i", "n", "ll", "he", "▁h", "llo", "▁he",
    "▁hello", "or", "▁w", "▁wor", "ld", "▁world", "an", "▁a", "▁an", "in", "hi", "▁hi", "▁▁", "ol",
    "lo",
];

fn spm_vocab() -> SpmVocab {
    let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (i, p) in SPM_PIECES.iter().enumerate() {
        tokens.push(p.to_string());
        types.push(1);
        // Single characters score lowest; among merged pieces, the listed order is the merge order.
        let score = if p.chars().count() == 1 {
            -1000.0 - i as f32
        } else {
            -(i as f32)
        };
        scores.push(score);
    }
    SpmVocab {
        tokens,
        scores,
        types,
    }
}

fn spm_content(v: &SpmVocab, extra: &[(&str, Value)]) -> gguf_file::Content {
    let mut md = vec![
        ("general.architecture", Value::String("llama".into())),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(&v.tokens)),
        (
            "tokenizer.ggml.scores",
            Value::Array(v.scores.iter().map(|&s| Value::F32(s)).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(v.types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
    ];
    md.extend(extra.iter().cloned());
    write_and_read(&md)
}

/// llama.cpp's SentencePiece BPE (llm_tokenizer_spm), written out plainly: start from single
/// characters, repeatedly merge the adjacent pair whose concatenation is the highest-scoring
/// token (leftmost on ties), then map pieces to ids with `<0xNN>` byte fallback.
fn reference_spm(v: &SpmVocab, text: &str, add_space_prefix: bool) -> Vec<u32> {
    if text.is_empty() {
        return Vec::new();
    }
    let index: HashMap<&str, usize> = v
        .tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| v.types[*i] == 1)
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let prefixed = if add_space_prefix {
        format!(" {text}")
    } else {
        text.to_string()
    };
    let escaped = prefixed.replace(' ', "▁");
    let mut syms: Vec<String> = escaped.chars().map(|c| c.to_string()).collect();
    loop {
        let mut best: Option<(usize, f32)> = None;
        for i in 0..syms.len().saturating_sub(1) {
            let cat = format!("{}{}", syms[i], syms[i + 1]);
            if let Some(&id) = index.get(cat.as_str()) {
                let s = v.scores[id];
                if best.is_none_or(|(_, bs)| s > bs) {
                    best = Some((i, s));
                }
            }
        }
        let Some((i, _)) = best else { break };
        let right = syms.remove(i + 1);
        syms[i].push_str(&right);
    }
    let mut ids = Vec::new();
    for s in syms {
        match index.get(s.as_str()) {
            Some(&id) => ids.push(id as u32),
            None => ids.extend(s.bytes().map(|b| 3 + u32::from(b))),
        }
    }
    ids
}

fn spm_ids(tok: &Tokenizer, pieces: &[&str]) -> Vec<u32> {
    pieces
        .iter()
        .map(|p| tok.token_id(p).unwrap_or_else(|| panic!("no token {p}")))
        .collect()
}

#[test]
fn sentencepiece_known_segmentations() {
    let v = spm_vocab();
    let tok = Tokenizer::from_gguf(&spm_content(&v, &[])).unwrap();
    assert_eq!(tok.kind(), VocabKind::SentencePiece);
    assert_eq!(
        tok.encode("hello world", false).unwrap(),
        spm_ids(&tok, &["▁hello", "▁world"])
    );
    // BOS by default for llama-type vocabularies.
    assert!(tok.add_bos_by_default());
    assert_eq!(
        tok.encode("hello", true).unwrap(),
        spm_ids(&tok, &["<s>", "▁hello"])
    );
    // A leading space survives as its own marker; newline and é are not pieces: byte fallback.
    assert_eq!(
        tok.encode(" hello", false).unwrap(),
        spm_ids(&tok, &["▁", "▁hello"])
    );
    assert_eq!(
        tok.encode("hi\né", false).unwrap(),
        spm_ids(&tok, &["▁hi", "<0x0A>", "<0xC3>", "<0xA9>"])
    );
    // Special tokens in the text are single tokens, and the text after them gets the space prefix.
    assert_eq!(
        tok.encode("<s>hi</s>", false).unwrap(),
        spm_ids(&tok, &["<s>", "▁hi", "</s>"])
    );
    // A prompt that already starts with BOS (a chat template wrote it) gets no second one.
    assert_eq!(
        tok.encode_prompt("<s>hi").unwrap(),
        spm_ids(&tok, &["<s>", "▁hi"])
    );
    assert_eq!(
        tok.encode_prompt("hi").unwrap(),
        spm_ids(&tok, &["<s>", "▁hi"])
    );
    assert_eq!(
        tok.encode("<s>hi", true).unwrap(),
        spm_ids(&tok, &["<s>", "<s>", "▁hi"])
    );
    assert_eq!(tok.encode("", false).unwrap(), Vec::<u32>::new());
}

#[test]
fn sentencepiece_decoding_strips_the_prefix_space_once() {
    let v = spm_vocab();
    let tok = Tokenizer::from_gguf(&spm_content(&v, &[])).unwrap();
    for text in [
        "hello world",
        " hello",
        "hi\né",
        "a  an",
        "hello\n\n world ",
    ] {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text, "ids {ids:?}");
        let mut stream = TokenStream::new(&tok);
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&stream.push(id).unwrap());
        }
        out.push_str(&stream.finish().unwrap());
        assert_eq!(out, text);
    }
    // The tokenizers crate's own decoder agrees with ours.
    let ids = tok.encode("hi\né world", false).unwrap();
    assert_eq!(tok.inner().decode(&ids, false).unwrap(), "hi\né world");
}

#[test]
fn sentencepiece_matches_llama_cpp_algorithm_on_many_strings() {
    let v = spm_vocab();
    let alphabet = [
        'h', 'e', 'l', 'o', 'w', 'r', 'd', 'a', 'n', 'i', ' ', 'é', '\n', 'z',
    ];
    for add_space_prefix in [true, false] {
        let tok = Tokenizer::from_gguf(&spm_content(
            &v,
            &[(
                "tokenizer.ggml.add_space_prefix",
                Value::Bool(add_space_prefix),
            )],
        ))
        .unwrap();
        // A fixed linear congruential generator: the same strings on every run.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..400 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (state >> 58) as usize;
            let mut s = String::new();
            for _ in 0..len {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            assert_eq!(
                tok.encode(&s, false).unwrap(),
                reference_spm(&v, &s, add_space_prefix),
                "text {s:?}"
            );
            let decoded = tok.decode(&tok.encode(&s, false).unwrap()).unwrap();
            assert_eq!(decoded, s);
        }
    }
}

#[test]
fn sentencepiece_answer_word_takes_the_space_prefixed_piece() {
    let v = spm_vocab();
    let tok = Tokenizer::from_gguf(&spm_content(&v, &[])).unwrap();
    let hi = tok.token_id("▁hi").unwrap();
    assert_eq!(tok.answer_token("hi").unwrap(), (hi, true));
    assert_eq!(tok.answer_token(" hi").unwrap(), (hi, true));
    let (first, single) = tok.answer_token("hello world").unwrap();
    assert_eq!((first, single), (tok.token_id("▁hello").unwrap(), false));
}

#[test]
fn a_sentencepiece_file_without_scores_is_a_clear_error() {
    let v = spm_vocab();
    let content = write_and_read(&[
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(&v.tokens)),
    ]);
    let err = Tokenizer::from_gguf(&content).unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.scores"), "{err}");
    let content = write_and_read(&[("tokenizer.ggml.model", Value::String("wordpiece-x".into()))]);
    let err = Tokenizer::from_gguf(&content).unwrap_err();
    assert!(matches!(err, LlmError::Tokenizer(_)), "{err}");
}

/// GPT-2's byte -> char table, written independently of the library's.
fn gpt2_byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in bs.iter().zip(cs) {
        table[*b as usize] = char::from_u32(c).unwrap();
    }
    table
}

fn byte_level_content(pre: &str) -> gguf_file::Content {
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    let mut types = vec![3, 3, 3];
    for c in gpt2_byte_chars() {
        tokens.push(c.to_string());
        types.push(1);
    }
    let merges = [
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2", "Ġ 1",
    ];
    for m in merges {
        tokens.push(m.replace(' ', ""));
        types.push(1);
    }
    write_and_read(&[
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            strings(&merges.iter().map(|m| m.to_string()).collect::<Vec<_>>()),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
    ])
}

#[test]
fn byte_level_merges_specials_and_digit_splitting() {
    let tok = Tokenizer::from_gguf(&byte_level_content("smollm")).unwrap();
    let ids = |ps: &[&str]| {
        ps.iter()
            .map(|p| tok.token_id(p).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tok.encode("hello world", false).unwrap(),
        ids(&["hello", "Ġworld"])
    );
    assert_eq!(
        tok.encode("hello", true).unwrap(),
        ids(&["<|im_start|>", "hello"])
    );
    assert_eq!(
        tok.encode("<|im_start|>hello<|im_end|>", false).unwrap(),
        ids(&["<|im_start|>", "hello", "<|im_end|>"])
    );
    // smollm isolates each digit before BPE, so "12" never merges; gpt2 does not.
    assert_eq!(tok.encode("12", false).unwrap(), ids(&["1", "2"]));
    let gpt2 = Tokenizer::from_gguf(&byte_level_content("gpt2")).unwrap();
    assert_eq!(
        gpt2.encode("12", false).unwrap(),
        vec![gpt2.token_id("12").unwrap()]
    );
    // "1 2" ranks before "Ġ 1".
    assert_eq!(
        gpt2.encode(" 12", false).unwrap(),
        vec![gpt2.token_id("Ġ").unwrap(), gpt2.token_id("12").unwrap()]
    );
    for text in ["héllo wörld 🦀\n\ttab", "", "<|im_end|>x"] {
        assert_eq!(tok.decode(&tok.encode(text, false).unwrap()).unwrap(), text);
    }
    // eos plus the end-of-turn controls the vocabulary has.
    assert_eq!(tok.eos_ids(), &[2, 0]);
}

#[test]
fn an_unknown_pre_tokenizer_is_named_in_the_error() {
    let err = Tokenizer::from_gguf(&byte_level_content("no-such-pre")).unwrap_err();
    assert!(err.to_string().contains("no-such-pre"), "{err}");
}
