//! The server-answer parsers on recorded answers: vLLM and SGLang (written from their
//! documented formats; none can run here) and llama.cpp (recorded from a real
//! llama-server serving the default model). See tests/data/remote/README.md.

use std::path::PathBuf;

use serde_json::Value;
use trsr::remote::wire::{parse_completion, parse_models, ServerKind, SseReader};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/remote")
        .join(name)
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

#[test]
fn vllm_model_list() {
    let models = parse_models(&json("vllm_models.json")).unwrap();
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].id, "Qwen/Qwen2.5-7B-Instruct");
    assert_eq!(models[0].kind, ServerKind::Vllm);
    assert_eq!(models[0].context_len, Some(32768));
    // The creation time is not part of the identity (it changes at every server start).
    assert!(models[0].metadata.get("created").is_none());
    assert_eq!(models[0].metadata["root"], "Qwen/Qwen2.5-7B-Instruct");
}

#[test]
fn sglang_model_list() {
    let models = parse_models(&json("sglang_models.json")).unwrap();
    assert_eq!(models[0].kind, ServerKind::Sglang);
    assert_eq!(models[0].context_len, Some(131072));
}

#[test]
fn vllm_logprobs_with_token_ids_give_exact_p_yes() {
    let chunk = parse_completion(&json("vllm_completion_logprobs.json")).unwrap();
    assert_eq!(chunk.text, "Yes");
    assert_eq!(chunk.finish_reason.as_deref(), Some("length"));
    let p = &chunk.positions[0];
    assert_eq!(p.id, Some(9454));
    assert!((p.logprob.unwrap() - (-0.2876821)).abs() < 1e-9);
    let lp = |id: u32| p.top.iter().find(|t| t.id == Some(id)).unwrap().logprob;
    let (yes, no) = (lp(9454), lp(2753));
    // ln 0.75 and ln 0.25: P(yes) = 0.75 / (0.75 + 0.25).
    let p_yes = 1.0 / (1.0 + (no - yes).exp());
    assert!((p_yes - 0.75).abs() < 1e-6, "{p_yes}");
    assert_eq!(p.top.len(), 3);
}

#[test]
fn sglang_logprobs_without_ids_are_read_but_carry_no_ids() {
    let chunk = parse_completion(&json("sglang_completion_logprobs.json")).unwrap();
    let p = &chunk.positions[0];
    assert_eq!(p.text, " yes");
    assert_eq!(p.id, None);
    assert_eq!(p.top.len(), 2);
    assert!(p.top.iter().all(|t| t.id.is_none()));
    assert!(p
        .top
        .iter()
        .any(|t| t.text == " no" && (t.logprob - (-1.2039728)).abs() < 1e-9));
}

#[test]
fn vllm_stream_reads_to_done() {
    let text = std::fs::read_to_string(data("vllm_stream.txt")).unwrap();
    let chunks: Vec<_> = SseReader::new(text.as_bytes())
        .map(|e| parse_completion(&serde_json::from_str(&e.unwrap()).unwrap()).unwrap())
        .collect();
    assert_eq!(chunks.len(), 3);
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(text, "The user");
    assert_eq!(chunks[0].positions[0].id, Some(785));
    assert_eq!(chunks[1].positions[0].id, Some(1196));
    assert!(chunks[2].positions.is_empty());
    assert_eq!(chunks[2].finish_reason.as_deref(), Some("length"));
}

#[test]
fn llamacpp_recorded_answers() {
    let models = parse_models(&json("llamacpp_models.json")).unwrap();
    assert_eq!(models[0].kind, ServerKind::LlamaCpp);
    assert!(models[0].context_len.unwrap() >= 512);
    assert!(models[0].metadata.pointer("/meta/n_vocab").is_some());
    let chunk = parse_completion(&json("llamacpp_completion_logprobs.json")).unwrap();
    let p = &chunk.positions[0];
    assert!(p.id.is_some());
    assert!(p.top.len() >= 2);
    assert!(p.top.iter().all(|t| t.id.is_some()));
    // Sorted by probability, and log-probabilities of a distribution.
    assert!(p.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
    let mass: f64 = p.top.iter().map(|t| t.logprob.exp()).sum();
    assert!(mass <= 1.0 + 1e-4, "{mass}");
    let text = std::fs::read_to_string(data("llamacpp_stream.txt")).unwrap();
    let chunks: Vec<_> = SseReader::new(text.as_bytes())
        .map(|e| parse_completion(&serde_json::from_str(&e.unwrap()).unwrap()).unwrap())
        .collect();
    assert!(chunks.len() >= 2);
    assert!(chunks
        .iter()
        .any(|c| c.positions.first().is_some_and(|p| p.id.is_some())));
    assert!(chunks.last().unwrap().finish_reason.is_some());
}
