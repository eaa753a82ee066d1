//! The engine end to end on a tiny random-weight llama GGUF that the test writes itself:
//! load -> generate -> score in milliseconds, plus the error paths.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use trsr::llm::{Engine, LlmError, LoadOptions};
use trsr::lm::{CancelToken, LanguageModel, SamplingParams, StopReason};

const HIDDEN: usize = 64;
const N_HEAD: usize = 4;
const N_KV: usize = 2;
const FF: usize = 128;
const N_LAYER: usize = 2;
const CONTEXT: u32 = 96;

/// GPT-2's byte-to-unicode table.
fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs.iter()) {
        table[*b as usize] = char::from_u32(*c).unwrap();
    }
    table
}

struct TinyOpts {
    arch: &'static str,
    zero_output_norm: bool,
}

impl Default for TinyOpts {
    fn default() -> Self {
        Self {
            arch: "llama",
            zero_output_norm: false,
        }
    }
}

fn tensor(rng: &mut rand_chacha::ChaCha8Rng, rows: usize, cols: usize, scale: f32) -> Tensor {
    let data: Vec<f32> = (0..rows * cols)
        .map(|_| (rng.random::<f32>() - 0.5) * 2.0 * scale)
        .collect();
    Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
}

/// Writes the tiny model to `path`.
fn write_tiny(path: &Path, o: &TinyOpts) {
    // Vocabulary: 3 specials (id 0 is EOS), 256 byte tokens, a few merges.
    let table = byte_chars();
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    let mut types: Vec<i32> = vec![3, 3, 3];
    for c in &table {
        tokens.push(c.to_string());
        types.push(1);
    }
    let sp = table[b' ' as usize];
    let merges = [
        ("y", "e"),
        ("ye", "s"),
        ("n", "o"),
        (&*sp.to_string(), "t"),
        ("t", "h"),
        ("th", "e"),
    ];
    let mut merge_strs = Vec::new();
    for (a, b) in merges.iter() {
        tokens.push(format!("{a}{b}"));
        types.push(1);
        merge_strs.push(format!("{a} {b}"));
    }
    let vocab = tokens.len();
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String(o.arch.into())),
        ("general.name", Value::String("tiny".into())),
        ("llama.attention.head_count", Value::U32(N_HEAD as u32)),
        ("llama.attention.head_count_kv", Value::U32(N_KV as u32)),
        ("llama.embedding_length", Value::U32(HIDDEN as u32)),
        ("llama.block_count", Value::U32(N_LAYER as u32)),
        ("llama.context_length", Value::U32(CONTEXT)),
        ("llama.feed_forward_length", Value::U32(FF as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(merge_strs.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
        ("tokenizer.chat_template", Value::String(template.into())),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let q = |t: Tensor| QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
    let f = |t: Tensor| QTensor::quantize(&t, GgmlDType::F32).unwrap();
    let hd = HIDDEN / N_HEAD;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    tensors.push((
        "token_embd.weight".into(),
        q(tensor(&mut rng, vocab, HIDDEN, 1.0)),
    ));
    let norm = if o.zero_output_norm {
        Tensor::zeros(HIDDEN, candle_core::DType::F32, &Device::Cpu).unwrap()
    } else {
        Tensor::ones(HIDDEN, candle_core::DType::F32, &Device::Cpu).unwrap()
    };
    tensors.push(("output_norm.weight".into(), f(norm)));
    for i in 0..N_LAYER {
        let p = format!("blk.{i}");
        let ones = Tensor::ones(HIDDEN, candle_core::DType::F32, &Device::Cpu).unwrap();
        tensors.push((format!("{p}.attn_norm.weight"), f(ones.clone())));
        tensors.push((format!("{p}.ffn_norm.weight"), f(ones)));
        tensors.push((
            format!("{p}.attn_q.weight"),
            q(tensor(&mut rng, N_HEAD * hd, HIDDEN, 0.3)),
        ));
        tensors.push((
            format!("{p}.attn_k.weight"),
            q(tensor(&mut rng, N_KV * hd, HIDDEN, 0.3)),
        ));
        tensors.push((
            format!("{p}.attn_v.weight"),
            q(tensor(&mut rng, N_KV * hd, HIDDEN, 0.3)),
        ));
        tensors.push((
            format!("{p}.attn_output.weight"),
            q(tensor(&mut rng, HIDDEN, N_HEAD * hd, 0.3)),
        ));
        tensors.push((
            format!("{p}.ffn_gate.weight"),
            q(tensor(&mut rng, FF, HIDDEN, 0.3)),
        ));
        tensors.push((
            format!("{p}.ffn_up.weight"),
            q(tensor(&mut rng, FF, HIDDEN, 0.3)),
        ));
        tensors.push((
            format!("{p}.ffn_down.weight"),
            q(tensor(&mut rng, HIDDEN, FF, 0.3)),
        ));
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &md_refs, &t_refs).unwrap();
}

fn tiny(dir: &tempfile::TempDir, name: &str, o: &TinyOpts) -> PathBuf {
    let path = dir.path().join(name);
    write_tiny(&path, o);
    path
}

fn load(path: &Path) -> Engine {
    Engine::load_path(
        path,
        &LoadOptions {
            threads: Some(1),
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

fn gen_text(e: &mut Engine, prompt: &str, params: &SamplingParams) -> trsr::lm::Generated {
    let mut streamed = String::new();
    let g = e
        .generate(prompt, params, &CancelToken::new(), &mut |d| {
            streamed.push_str(&d.text)
        })
        .unwrap();
    assert_eq!(streamed, g.text, "streamed deltas add up to the final text");
    g
}

#[test]
fn tiny_model_loads_and_reports_itself() {
    let dir = tempfile::tempdir().unwrap();
    let e = load(&tiny(&dir, "t.gguf", &TinyOpts::default()));
    let info = e.info();
    assert_eq!(info.identity.architecture, "llama");
    assert_eq!(info.identity.context_len, CONTEXT as usize);
    assert_eq!(info.identity.sha256.len(), 64);
    assert!(info.device.starts_with("cpu"), "{}", info.device);
    assert!(info.n_params > 0);
    assert_eq!(e.context_len(), CONTEXT as usize);
}

#[test]
fn greedy_generation_is_deterministic_and_respects_max_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(&dir, "t.gguf", &TinyOpts::default());
    let mut e = load(&path);
    let params = SamplingParams::greedy(12);
    let a = gen_text(&mut e, "the yes no", &params);
    let b = gen_text(&mut e, "the yes no", &params);
    assert_eq!(a.text, b.text);
    assert!(a.new_tokens <= 12 && a.new_tokens > 0);
    if a.stop == StopReason::MaxTokens {
        assert_eq!(a.new_tokens, 12);
    }
    // A fresh engine gives the same text.
    let mut e2 = load(&path);
    assert_eq!(gen_text(&mut e2, "the yes no", &params).text, a.text);
}

#[test]
fn same_seed_same_text_when_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = load(&tiny(&dir, "t.gguf", &TinyOpts::default()));
    let params = SamplingParams {
        temperature: 1.0,
        max_new_tokens: 16,
        ..SamplingParams::default()
    };
    let a = gen_text(&mut e, "yes", &params);
    let b = gen_text(&mut e, "yes", &params);
    assert_eq!(a.text, b.text);
    let c = gen_text(
        &mut e,
        "yes",
        &SamplingParams {
            seed: 43,
            ..params.clone()
        },
    );
    let d = gen_text(&mut e, "yes", &SamplingParams { seed: 44, ..params });
    assert!(
        c.text != a.text || d.text != a.text,
        "different seeds give different samples"
    );
}

#[test]
fn step_api_streams_tokens_with_logprobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = load(&tiny(&dir, "t.gguf", &TinyOpts::default()));
    let mut g = e.start("the", &SamplingParams::greedy(5)).unwrap();
    let mut n = 0;
    while let Some(d) = e.next_token(&mut g).unwrap() {
        assert!(
            d.logprob <= 0.0 && d.logprob.is_finite(),
            "logprob {}",
            d.logprob
        );
        n += 1;
    }
    let done = e.finish(g);
    assert_eq!(done.new_tokens, n);
    assert!(n >= 1 && n <= 5);
}

#[test]
fn cancellation_stops_at_the_next_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = load(&tiny(&dir, "t.gguf", &TinyOpts::default()));
    let cancel = CancelToken::new();
    let mut seen = 0;
    let c = cancel.clone();
    let params = SamplingParams {
        temperature: 1.0,
        max_new_tokens: 40,
        ..SamplingParams::default()
    };
    let g = e
        .generate("the", &params, &cancel, &mut |_| {
            seen += 1;
            if seen == 3 {
                c.cancel();
            }
        })
        .unwrap();
    // Unless EOS came first, exactly 3 tokens were produced.
    if g.stop != StopReason::Eos {
        assert_eq!(g.stop, StopReason::Cancelled);
        assert_eq!(g.new_tokens, 3);
    }
}

#[test]
fn generation_stops_at_eos() {
    // Zero output norm: every logit is 0, so greedy picks id 0, which is EOS.
    let dir = tempfile::tempdir().unwrap();
    let mut e = load(&tiny(
        &dir,
        "eos.gguf",
        &TinyOpts {
            zero_output_norm: true,
            ..TinyOpts::default()
        },
    ));
    let g = gen_text(&mut e, "the", &SamplingParams::greedy(10));
    assert_eq!(g.stop, StopReason::Eos);
    assert_eq!(g.new_tokens, 1);
    assert_eq!(g.text, "");
}

#[test]
fn generation_stops_at_a_stop_string_and_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = load(&tiny(&dir, "t.gguf", &TinyOpts::default()));
    let free = gen_text(&mut e, "the", &SamplingParams::greedy(20));
    let chars: Vec<char> = free.text.chars().collect();
    if chars.len() < 6 {
        eprintln!(
            "note: greedy text too short for a stop-string check: {:?}",
            free.text
        );
        return;
    }
    let stop: String = chars[3..5].iter().collect();
    let expected_end = free.text.find(&stop).unwrap();
    let params = SamplingParams {
        stop: vec![stop.clone()],
        ..SamplingParams::greedy(20)
    };
    let g = gen_text(&mut e, "the", &params);
    assert_eq!(g.stop, StopReason::StopString);
    assert_eq!(g.text, free.text[..expected_end]);
}

#[test]
fn prompt_longer_than_context_is_an_error_before_compute() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = load(&tiny(&dir, "t.gguf", &TinyOpts::default()));
    let long = "y ".repeat(200);
    let err = e
        .start(&long, &SamplingParams::greedy(4))
        .err()
        .expect("too long");
    match err.downcast_ref::<LlmError>() {
        Some(LlmError::PromptTooLong {
            prompt_tokens,
            context_len,
            max_new_tokens,
        }) => {
            assert!(*prompt_tokens > CONTEXT as usize);
            assert_eq!(*context_len, CONTEXT as usize);
            assert_eq!(*max_new_tokens, 4);
        }
        other => panic!("expected PromptTooLong, got {other:?} ({err})"),
    }
}

#[test]
fn batched_prefix_scoring_equals_full_recompute() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = load(&tiny(&dir, "t.gguf", &TinyOpts::default()));
    let prefix = e
        .encode_prompt("<|im_start|>user\nthe yes the no yes")
        .unwrap();
    let texts = [
        "the",
        "no no the yes the yes",
        "yes",
        "the no",
        "noyes the the the the yes no",
    ];
    let suffixes: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| e.tokenizer().encode(t, false).unwrap())
        .collect();
    let batched = e.score_ids(&prefix, &suffixes).unwrap();
    // A second call reuses the held prefix and must agree too.
    let again = e.score_ids(&prefix, &suffixes).unwrap();
    for (i, s) in suffixes.iter().enumerate() {
        let full = e.score_full_recompute(&prefix, s).unwrap();
        assert!(
            (batched[i] - full).abs() < 1e-3,
            "suffix {i}: batched {} vs full {full}",
            batched[i]
        );
        assert!(
            (again[i] - full).abs() < 1e-3,
            "suffix {i} (reused): {} vs {full}",
            again[i]
        );
        assert!((0.0..=1.0).contains(&batched[i]));
    }
    // The scores are not all the same (the test can tell suffixes apart).
    assert!(
        batched.iter().any(|p| (p - batched[0]).abs() > 1e-6),
        "{batched:?}"
    );
}

#[test]
fn suffixes_sharing_a_start_score_like_full_recompute() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = load(&tiny(&dir, "t.gguf", &TinyOpts::default()));
    let prefix = e.encode_prompt("the no").unwrap();
    let texts = [
        "Candidate: the yes",
        "Candidate: no",
        "Candidate: the the no yes",
    ];
    let suffixes: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| e.tokenizer().encode(t, false).unwrap())
        .collect();
    let batched = e.score_ids(&prefix, &suffixes).unwrap();
    for (i, s) in suffixes.iter().enumerate() {
        let full = e.score_full_recompute(&prefix, s).unwrap();
        assert!(
            (batched[i] - full).abs() < 1e-3,
            "suffix {i}: {} vs {full}",
            batched[i]
        );
    }
    // A different prefix afterwards is not confused with the held one.
    let other = e.encode_prompt("yes yes").unwrap();
    let b2 = e.score_ids(&other, &suffixes).unwrap();
    for (i, s) in suffixes.iter().enumerate() {
        let full = e.score_full_recompute(&other, s).unwrap();
        assert!(
            (b2[i] - full).abs() < 1e-3,
            "other prefix, suffix {i}: {} vs {full}",
            b2[i]
        );
    }
}

#[test]
fn score_yes_no_through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = load(&tiny(&dir, "t.gguf", &TinyOpts::default()));
    let p = e
        .score_yes_no("the yes", &["no".to_string(), "the".to_string()])
        .unwrap();
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)));
}

#[test]
fn chat_rendering_uses_the_gguf_template() {
    let dir = tempfile::tempdir().unwrap();
    let e = load(&tiny(&dir, "t.gguf", &TinyOpts::default()));
    let s = e.render_chat(&[trsr::lm::ChatMessage::user("hi")]).unwrap();
    assert_eq!(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = Engine::load_path(
        Path::new("/nonexistent/model.gguf"),
        &LoadOptions::default(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err.downcast_ref::<LlmError>(), Some(LlmError::NotFound(_))),
        "{err:#}"
    );
}

#[test]
fn truncated_gguf_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(&dir, "t.gguf", &TinyOpts::default());
    let bytes = std::fs::read(&path).unwrap();
    for keep in [bytes.len() - 100, bytes.len() / 2, 40, 3] {
        let cut = dir.path().join(format!("cut{keep}.gguf"));
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let err = Engine::load_path(&cut, &LoadOptions::default())
            .err()
            .expect("truncated file must fail");
        let msg = format!("{err:#}");
        assert!(
            matches!(
                err.downcast_ref::<LlmError>(),
                Some(LlmError::BadGguf { .. })
            ),
            "{msg}"
        );
        assert!(msg.contains(&cut.display().to_string()), "{msg}");
    }
}

#[test]
fn garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.gguf");
    std::fs::write(&path, b"this is not a gguf file at all, just text").unwrap();
    let err = Engine::load_path(&path, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(
            err.downcast_ref::<LlmError>(),
            Some(LlmError::BadGguf { .. })
        ),
        "{err:#}"
    );
}

#[test]
fn unsupported_architecture_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(
        &dir,
        "falcon.gguf",
        &TinyOpts {
            arch: "falcon",
            ..TinyOpts::default()
        },
    );
    let err = Engine::load_path(&path, &LoadOptions::default())
        .err()
        .unwrap();
    match err.downcast_ref::<LlmError>() {
        Some(LlmError::UnsupportedArch { arch, .. }) => assert_eq!(arch, "falcon"),
        _ => panic!("expected UnsupportedArch, got {err:#}"),
    }
}
