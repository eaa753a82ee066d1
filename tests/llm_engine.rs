//! The engine on the real default model (SmolLM2-135M-Instruct Q4_1). Each test skips
//! with a note when the model file is absent.

mod common;

use std::path::PathBuf;

use trsr::llm::{Engine, LlmError, LoadOptions};
use trsr::lm::{CancelToken, ChatMessage, LanguageModel, SamplingParams, StopReason};

fn model_path() -> Option<PathBuf> {
    common::default_model()
}

fn engine() -> Option<Engine> {
    let path = model_path()?;
    Some(
        Engine::load_path(
            &path,
            &LoadOptions {
                threads: Some(2),
                ..LoadOptions::default()
            },
        )
        .unwrap(),
    )
}

fn chat(e: &Engine, text: &str) -> String {
    e.render_chat(&[ChatMessage::user(text)]).unwrap()
}

#[test]
fn real_model_loads_as_llama() {
    let Some(e) = engine() else { return };
    let info = e.info();
    assert_eq!(info.identity.architecture, "llama");
    assert!(
        info.n_params > 100_000_000 && info.n_params < 200_000_000,
        "{}",
        info.n_params
    );
    assert!(e.context_len() >= 2048);
}

#[test]
fn real_model_greedy_is_deterministic_and_sensible() {
    let Some(mut e) = engine() else { return };
    let prompt = chat(&e, "What is the capital of France? Answer in one word.");
    let params = SamplingParams::greedy(12);
    let run = |e: &mut Engine| {
        let mut streamed = String::new();
        let g = e
            .generate(&prompt, &params, &CancelToken::new(), &mut |d| {
                streamed.push_str(&d.text)
            })
            .unwrap();
        assert_eq!(streamed, g.text);
        g
    };
    let a = run(&mut e);
    let b = run(&mut e);
    assert_eq!(a.text, b.text);
    assert!(a.text.contains("Paris"), "greedy answer: {:?}", a.text);
}

#[test]
fn real_model_stops_at_end_of_turn() {
    let Some(mut e) = engine() else { return };
    let prompt = chat(&e, "Say hello.");
    let g = e
        .generate(
            &prompt,
            &SamplingParams::greedy(200),
            &CancelToken::new(),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(g.stop, StopReason::Eos, "text: {:?}", g.text);
    assert!(g.new_tokens < 200);
    assert!(!g.text.contains("<|im_end|>"));
}

#[test]
fn real_model_cancellation_mid_generation() {
    let Some(mut e) = engine() else { return };
    let prompt = chat(&e, "Write a long story about a dragon.");
    let cancel = CancelToken::new();
    let c = cancel.clone();
    let mut n = 0;
    let g = e
        .generate(&prompt, &SamplingParams::greedy(100), &cancel, &mut |_| {
            n += 1;
            if n == 5 {
                c.cancel();
            }
        })
        .unwrap();
    assert_eq!(g.stop, StopReason::Cancelled);
    assert_eq!(g.new_tokens, 5);
}

#[test]
fn real_model_prefix_reuse_equals_full_recompute() {
    let Some(mut e) = engine() else { return };
    let prefix_text = chat(&e, "You recommend news. The user's long-term interests: sports, cooking.\n\nRecent items:\n1. title: Lakers win again\n2. title: Easy pasta recipes\n\nCandidate item:")
        .replace("<|im_end|>\n<|im_start|>assistant\n", "");
    let cands = [
        " title: Celtics trade rumors; category: sports\nWill the user click it? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n",
        " title: Stock market slides; category: finance\nWill the user click it? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n",
        " title: Ten-minute dinners\nWill the user click it? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n",
    ];
    let prefix = e.encode_prompt(&prefix_text).unwrap();
    let suffixes: Vec<Vec<u32>> = cands
        .iter()
        .map(|c| e.tokenizer().encode(c, false).unwrap())
        .collect();
    let batched = e.score_ids(&prefix, &suffixes).unwrap();
    for (i, s) in suffixes.iter().enumerate() {
        let full = e.score_full_recompute(&prefix, s).unwrap();
        assert!(
            (batched[i] - full).abs() < 1e-3,
            "candidate {i}: {} vs {full}",
            batched[i]
        );
    }
    let via_trait = e
        .score_yes_no(&prefix_text, &cands.map(String::from))
        .unwrap();
    for (a, b) in via_trait.iter().zip(&batched) {
        assert!((a - b).abs() < 1e-4, "trait {a} vs ids {b}");
    }
}

#[test]
fn real_model_prompt_too_long_is_an_error() {
    let Some(mut e) = engine() else { return };
    let long = "word ".repeat(e.context_len() + 10);
    let err = e
        .start(&long, &SamplingParams::greedy(4))
        .err()
        .expect("too long");
    assert!(
        matches!(
            err.downcast_ref::<LlmError>(),
            Some(LlmError::PromptTooLong { .. })
        ),
        "{err:#}"
    );
}

#[test]
fn real_model_truncated_scoring_reads_p_yes_at_the_last_kept_token() {
    let Some(mut e) = engine() else { return };
    let prefix_text = chat(
        &e,
        "You recommend news. Recent items:\n1. title: Lakers win again\n\nCandidate item:",
    )
    .replace("<|im_end|>\n<|im_start|>assistant\n", "");
    let cands: Vec<String> = [
        " title: Celtics trade rumors; category: sports\nWill the user click it?<|im_end|>\n<|im_start|>assistant\n",
        " title: Stock market slides; category: finance\nWill the user click it?<|im_end|>\n<|im_start|>assistant\n",
    ]
    .map(String::from)
    .to_vec();
    let prefix = e.encode_prompt(&prefix_text).unwrap();
    let suffixes: Vec<Vec<u32>> = cands
        .iter()
        .map(|c| e.tokenizer().encode(c, false).unwrap())
        .collect();
    let n = prefix.len();

    // A cut past the longest text changes nothing.
    let whole = e.score_yes_no(&prefix_text, &cands).unwrap();
    let wide = e
        .score_yes_no_truncated(&prefix_text, &cands, 100_000)
        .unwrap();
    assert_eq!(whole, wide);

    // A cut inside the candidates: P(yes) at each candidate's third token.
    let cut = e
        .score_yes_no_truncated(&prefix_text, &cands, n + 3)
        .unwrap();
    for (i, s) in suffixes.iter().enumerate() {
        let want = e.score_full_recompute(&prefix, &s[..3]).unwrap();
        assert!(
            (cut[i] - want).abs() < 1e-3,
            "candidate {i}: {} vs {want}",
            cut[i]
        );
    }
    assert!((cut[0] - whole[0]).abs() > 1e-6, "the cut had no effect");

    // `scored_tokens` (what `score --dump-prompts` writes) is the length the scorer reads:
    // a cut there changes nothing, one token shorter reads P(yes) a token earlier.
    let lens = e.scored_tokens(&prefix_text, &cands).unwrap();
    for (i, len) in lens.iter().enumerate() {
        assert_eq!(*len, n + suffixes[i].len());
        let at = e
            .score_yes_no_truncated(&prefix_text, &cands[i..=i], *len)
            .unwrap();
        assert_eq!(
            at[0], whole[i],
            "candidate {i}: a cut at its length changed P(yes)"
        );
        let before = e
            .score_yes_no_truncated(&prefix_text, &cands[i..=i], *len - 1)
            .unwrap();
        assert!((before[0] - whole[i]).abs() > 1e-6, "candidate {i}");
    }

    // A cut inside the shared prefix: every candidate reads the same position.
    let inside = e
        .score_yes_no_truncated(&prefix_text, &cands, n - 2)
        .unwrap();
    let want = e
        .score_full_recompute(&prefix[..n - 3], &prefix[n - 3..n - 2])
        .unwrap();
    for p in &inside {
        assert!((p - want).abs() < 1e-3, "{p} vs {want}");
    }
}
