//! Sampling with small copies (the logits reduced on their device, see
//! `trsr::llm::generate`) draws token for token what the whole-vector copy draws, on the real
//! default model, through both CPU paths: the engine's kernels and the generic path (candle's
//! operations, the code a CUDA build runs). Also prints the bytes copied per token and the
//! decode speed of both, the measurement behind the change.

mod common;

use std::time::Instant;

use trsr::llm::{Engine, LoadOptions};
use trsr::lm::{ChatMessage, LanguageModel, SamplingParams};

const TOKENS: usize = 64;

/// Generates `TOKENS` tokens; before each step, a clone of the sampler draws from the whole
/// logits copied to the host, and the step (reduced copies unless `full_copy`) must draw
/// the same token. Returns the tokens, bytes copied per token and tokens/s.
fn run(
    e: &mut Engine,
    ids: &[u32],
    params: &SamplingParams,
    full_copy: bool,
) -> (Vec<u32>, f64, f64, usize) {
    let mut g = e.start_ids(ids.to_vec(), params).unwrap();
    g.set_full_copy(full_copy);
    let mut out = Vec::new();
    let mut took = 0.0;
    let mut vocab;
    loop {
        let logits = g.next_logits().unwrap();
        vocab = logits.len();
        let want = g.sampler().clone().sample(&logits, g.tokens());
        let t0 = Instant::now();
        let Some(d) = e.next_token(&mut g).unwrap() else {
            break;
        };
        took += t0.elapsed().as_secs_f64();
        assert_eq!(
            d.token,
            want,
            "step {}: the step drew {} but the full-copy sampler {want} ({params:?}, full copy {full_copy})",
            out.len(),
            d.token
        );
        let lp = trsr::llm::generate::logprob(&logits, want);
        assert!(
            (d.logprob - lp).abs() < 1e-3,
            "logprob {} vs {lp}",
            d.logprob
        );
        out.push(d.token);
    }
    let bytes = g.copied_bytes() as f64 / out.len() as f64;
    e.finish(g);
    let tps = out.len() as f64 / took;
    (out, bytes, tps, vocab)
}

#[test]
fn reduced_sampling_draws_what_the_full_copy_draws_on_the_default_model() {
    let Some(path) = common::default_model() else {
        return;
    };
    let cases = [
        ("greedy", SamplingParams::greedy(TOKENS)),
        (
            "reference preset (T 1, top-k 50, top-p 1)",
            SamplingParams {
                max_new_tokens: TOKENS,
                ..trsr::preset::reference_sampling()
            },
        ),
        (
            "workbench defaults (T 0.7, top-k 50, top-p 0.9, penalty 1.1)",
            SamplingParams {
                max_new_tokens: TOKENS,
                ..SamplingParams::default()
            },
        ),
        (
            "greedy with penalty 1.3",
            SamplingParams {
                repeat_penalty: 1.3,
                ..SamplingParams::greedy(TOKENS)
            },
        ),
    ];
    for generic in [false, true] {
        let mut e = Engine::load_path(
            &path,
            &LoadOptions {
                generic_kernels: generic,
                ..LoadOptions::default()
            },
        )
        .unwrap();
        assert_eq!(e.model().is_generic(), generic);
        let prompt = e
            .render_chat(&[ChatMessage::user(
                "Write a short story about a lighthouse keeper and a storm.",
            )])
            .unwrap();
        let ids = e.encode_prompt(&prompt).unwrap();
        for (name, params) in &cases {
            let (full, full_bytes, full_tps, vocab) = run(&mut e, &ids, params, true);
            let (reduced, bytes, tps, _) = run(&mut e, &ids, params, false);
            assert_eq!(full.len(), reduced.len(), "{name}");
            assert_eq!(full, reduced, "{name}, generic {generic}");
            assert_eq!(full_bytes, (vocab * 4) as f64, "{name}");
            assert!(bytes * 5.0 < full_bytes, "{name}: {bytes} bytes per token");
            println!(
                "{} path, {name}: {} tokens equal; copied per token {full_bytes:.0} -> {bytes:.0} bytes; \
                 decode {full_tps:.1} -> {tps:.1} tok/s",
                if generic { "generic" } else { "kernel" },
                reduced.len()
            );
        }
    }
}
