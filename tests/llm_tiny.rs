//! The engine end to end on a tiny random-weight llama GGUF that the test writes itself:
//! load -> generate -> score in milliseconds, plus the error paths.

mod common;

use std::path::{Path, PathBuf};

use common::{write_tiny, TinyOpts, CONTEXT};
use trsr::llm::{Engine, LlmError, LoadOptions};
use trsr::lm::{CancelToken, LanguageModel, SamplingParams, StopReason};

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
    // Results of the int8 kernels are cached apart from the f32 path's.
    let int8 = info.weight_form.contains("int8 kernels");
    assert_eq!(e.numerics().starts_with("int8-"), int8, "{}", e.numerics());
    assert_eq!(e.numerics().is_empty(), !int8);
    let tag = trsr::summarize::cache_tag(&e).unwrap();
    assert_eq!(tag.contains("int8-"), int8, "{tag}");
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
    assert!((1..=5).contains(&n));
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

#[test]
fn qwen2_and_qwen3_variants_generate_and_score_consistently() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["qwen2", "qwen3"] {
        let mut e = load(&tiny(
            &dir,
            &format!("{arch}.gguf"),
            &TinyOpts {
                arch,
                ..TinyOpts::default()
            },
        ));
        assert_eq!(e.info().identity.architecture, arch);
        let g = gen_text(&mut e, "the yes", &SamplingParams::greedy(6));
        assert!(g.new_tokens >= 1);
        let prefix = e.encode_prompt("the no yes the").unwrap();
        let suffixes: Vec<Vec<u32>> = ["yes the", "no", "the the no"]
            .iter()
            .map(|t| e.tokenizer().encode(t, false).unwrap())
            .collect();
        let batched = e.score_ids(&prefix, &suffixes).unwrap();
        for (i, s) in suffixes.iter().enumerate() {
            let full = e.score_full_recompute(&prefix, s).unwrap();
            assert!(
                (batched[i] - full).abs() < 1e-3,
                "{arch} suffix {i}: {} vs {full}",
                batched[i]
            );
        }
        // Decode runs on the quantized weights, the cache written step by step.
        let mut st = e.start("the no yes", &SamplingParams::greedy(4)).unwrap();
        while e.next_token(&mut st).unwrap().is_some() {}
        let done = e.finish(st);
        assert!(done.new_tokens >= 1);
    }
}

/// A separate quantized output matrix: the yes/no rows the scorer takes from it match the
/// logits the decode path computes with the whole matrix.
#[test]
fn untied_output_matrix_gives_the_scorer_the_right_rows() {
    let dir = tempfile::tempdir().unwrap();
    let e = load(&tiny(
        &dir,
        "untied.gguf",
        &TinyOpts {
            untied_head: true,
            ..TinyOpts::default()
        },
    ));
    let m = e.model();
    let ids = e.encode_prompt("the no yes the").unwrap();
    let mut cache = m.new_cache(ids.len()).unwrap();
    let hidden = m.prefill(&ids, &mut cache).unwrap();
    let logits: Vec<f32> = m
        .logits(&hidden)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let picks = [1u32, 5, 17, logits.len() as u32 - 1];
    let rows = m.head_rows(&picks).unwrap();
    let dots: Vec<f32> = hidden
        .matmul(&rows.t().unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let scale = logits.iter().fold(0f32, |a, b| a.max(b.abs()));
    for (&id, d) in picks.iter().zip(&dots) {
        let l = logits[id as usize];
        // The decode path quantizes the hidden state to 8 bits: ~1% of the largest logit.
        assert!(
            (l - d).abs() < 0.03 * scale,
            "token {id}: row gives {d}, logits {l}"
        );
    }
    assert!(m.head_rows(&[logits.len() as u32]).is_err());
}
