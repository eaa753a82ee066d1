//! `--preset reference` against the reference code's own output, byte for byte.
//!
//! `tests/data/reference/{mind,amazon}.json` were written by
//! `scripts/make_reference_golden.py`, which runs the LLM-TRSR repository's own
//! prompt-building functions (summary_generation.py, build_dataset.py's
//! generate_sentence, dataset_gen.py, test.py's encode) on MIND sample rows and hand-made
//! Amazon-M2 rows, with a stand-in model whose "summary" depends only on the prompt. Here
//! our summarizer runs on the same rows with a model that answers the same stand-in, and
//! every step's prompt (`steps[].prompt`, exactly what the model was given), the final
//! summary and every scored recommender text must equal the reference's. The model is a
//! stand-in on purpose: what is under test is the prompt text, not generation.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use trsr::data::{load_dir, Case, Catalogue, FormatChoice, ItemTextTemplate, LoadOptions};
use trsr::lm::{
    CancelToken, ChatMessage, Generated, LanguageModel, ModelIdentity, SamplingParams, StopReason,
    TokenDelta,
};
use trsr::preset::{Preset, ReferenceWording};
use trsr::prompt::Templates;
use trsr::rank::{recommend_chat_prompt, RecommendOptions};
use trsr::segment::BlockParams;
use trsr::summarize::{summarize, Method, SummarizeRequest};

/// Answers every prompt with the golden script's `stand_in(prompt)`.
struct StandIn;

fn stand_in(prompt: &str) -> String {
    let h = hex::encode(Sha256::digest(prompt.as_bytes()));
    format!(" Stand-in summary {}.\n", &h[..12])
}

impl LanguageModel for StandIn {
    fn identity(&self) -> ModelIdentity {
        ModelIdentity {
            name: "stand-in".into(),
            sha256: "stand-in".into(),
            architecture: "none".into(),
            context_len: 1 << 20,
        }
    }
    fn context_len(&self) -> usize {
        1 << 20
    }
    fn count_tokens(&self, text: &str) -> anyhow::Result<usize> {
        Ok(text.len())
    }
    fn render_chat(&self, _messages: &[ChatMessage]) -> anyhow::Result<String> {
        anyhow::bail!("the reference preset must not use a chat template")
    }
    fn generate(
        &mut self,
        prompt: &str,
        _params: &SamplingParams,
        _cancel: &CancelToken,
        on_token: &mut dyn FnMut(&TokenDelta),
    ) -> anyhow::Result<Generated> {
        let text = stand_in(prompt);
        on_token(&TokenDelta {
            token: 0,
            text: text.clone(),
            logprob: 0.0,
        });
        Ok(Generated {
            text,
            prompt_tokens: prompt.len(),
            new_tokens: 1,
            stop: StopReason::Eos,
            prefill_ms: 0.0,
            decode_ms: 0.0,
        })
    }
    fn score_yes_no(&mut self, _prefix: &str, suffixes: &[String]) -> anyhow::Result<Vec<f32>> {
        Ok(vec![0.5; suffixes.len()])
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference")
}

fn golden(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(golden_dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Checks every golden case of one dataset; returns how many texts were compared.
fn check(catalogue: &Catalogue, wording: ReferenceWording, cases: &[serde_json::Value]) -> usize {
    let templates = Templates::reference(wording);
    let text = ItemTextTemplate::reference(wording);
    let mut compared = 0;
    for g in cases {
        let case = Case {
            case: g["case"].as_str().unwrap().into(),
            user: g["user"].as_str().unwrap().into(),
            history: strings(&g["history"]),
            target: g["target"].as_str().unwrap().into(),
            negatives: strings(&g["negatives"]),
            split: None,
        };
        let mut finals = std::collections::HashMap::new();
        for method in [Method::Hierarchical, Method::Recurrent] {
            let req = SummarizeRequest {
                case: &case,
                catalogue,
                text_template: &text,
                block_params: BlockParams::default(),
                method,
                templates: &templates,
                sampling: Preset::Reference.sampling(),
            };
            let trace = summarize(&mut StandIn, &req, &CancelToken::new(), &mut |_| {}).unwrap();
            assert_eq!(trace.preset, Preset::Reference);
            let want = &g[method.name()];
            let ours: Vec<&str> = trace.steps.iter().map(|s| s.prompt.as_str()).collect();
            let theirs = strings(&want["prompts"]);
            assert_eq!(
                ours.len(),
                theirs.len(),
                "{} {method}: step count",
                case.case
            );
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert_eq!(a, b, "{} {method}: step {} prompt", case.case, i + 1);
                compared += 1;
            }
            assert_eq!(
                trace.final_summary,
                want["final_summary"].as_str().unwrap(),
                "{} {method}: final summary",
                case.case
            );
            finals.insert(method, trace.final_summary);
        }
        for (key, summary, opts) in [
            (
                "recommend",
                Some(finals[&Method::Hierarchical].as_str()),
                RecommendOptions::default(),
            ),
            (
                "recommend_no_summary_no_items",
                None,
                RecommendOptions {
                    recent: 0,
                    use_summary: false,
                    ..RecommendOptions::default()
                },
            ),
        ] {
            let ((prefix, suffixes), _) = recommend_chat_prompt(
                &StandIn, &templates, &case, catalogue, &text, summary, &opts,
            )
            .unwrap();
            let want = g[key].as_array().unwrap();
            assert_eq!(
                suffixes.len(),
                want.len(),
                "{} {key}: candidates",
                case.case
            );
            for ((id, suffix), w) in case.candidates().iter().zip(&suffixes).zip(want) {
                assert_eq!(w["candidate"].as_str().unwrap(), *id);
                assert_eq!(
                    format!("{prefix}{suffix}"),
                    w["prompt"].as_str().unwrap(),
                    "{} {key}: candidate {id}",
                    case.case
                );
                compared += 1;
            }
        }
    }
    compared
}

#[test]
fn amazon_prompts_equal_the_reference_code() {
    let ds = load_dir(
        &golden_dir().join("amazon"),
        FormatChoice::AmazonM2,
        &LoadOptions::default(),
    )
    .unwrap();
    let n = check(
        &ds.catalogue,
        ReferenceWording::Amazon,
        &golden("amazon.json"),
    );
    assert!(n > 40, "{n}");
}

#[test]
fn mind_prompts_equal_the_reference_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mind_sample");
    if !dir.is_dir() {
        eprintln!("skipped: {} is absent (the MIND sample)", dir.display());
        return;
    }
    let ds = load_dir(&dir, FormatChoice::Mind, &LoadOptions::default()).unwrap();
    let n = check(&ds.catalogue, ReferenceWording::Mind, &golden("mind.json"));
    assert!(n > 40, "{n}");
}

#[test]
fn reference_templates_name_no_system_message_and_are_valid() {
    for w in [ReferenceWording::Mind, ReferenceWording::Amazon] {
        let t = Templates::reference(w);
        t.validate().unwrap();
        assert!(t.system.is_none());
        assert_eq!(t.preset(), Preset::Reference);
    }
    assert_eq!(Templates::news().preset(), Preset::Workbench);
}

#[test]
fn dump_prompts_writes_the_exact_scored_texts() {
    let dir = golden_dir().join("amazon");
    let ds = load_dir(&dir, FormatChoice::AmazonM2, &LoadOptions::default()).unwrap();
    let golden_cases = golden("amazon.json");
    let cases: Vec<Case> = golden_cases
        .iter()
        .map(|g| Case {
            case: g["case"].as_str().unwrap().into(),
            user: g["user"].as_str().unwrap().into(),
            history: strings(&g["history"]),
            target: g["target"].as_str().unwrap().into(),
            negatives: strings(&g["negatives"]),
            split: None,
        })
        .collect();
    let data = trsr::data::Prepared {
        dir: dir.clone(),
        catalogue: ds.catalogue,
        cases,
    };
    let templates = Templates::reference(ReferenceWording::Amazon);
    let text = ItemTextTemplate::reference(ReferenceWording::Amazon);
    // The stand-in "final summaries" the golden script's recommender rows hold.
    let traces: Vec<trsr::summarize::SummaryTrace> = data
        .cases
        .iter()
        .zip(&golden_cases)
        .map(|(case, g)| {
            let req = SummarizeRequest {
                case,
                catalogue: &data.catalogue,
                text_template: &text,
                block_params: BlockParams::default(),
                method: Method::Hierarchical,
                templates: &templates,
                sampling: Preset::Reference.sampling(),
            };
            let t = summarize(&mut StandIn, &req, &CancelToken::new(), &mut |_| {}).unwrap();
            assert_eq!(
                t.final_summary,
                g["hierarchical"]["final_summary"].as_str().unwrap()
            );
            t
        })
        .collect();
    let batch = trsr::cli::score::ScoreBatch {
        data: &data,
        cases: data.cases.iter().collect(),
        text: &text,
        templates: &templates,
        opts: RecommendOptions::default(),
        summaries: Some(&traces),
        cache: None,
        read_cache: false,
        show_progress: false,
    };
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("prompts.jsonl");
    let n = trsr::cli::score::dump_prompts(&StandIn, &batch, &path).unwrap();
    assert_eq!(n, 2 * 21);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, g) in golden_cases.iter().enumerate() {
        for (j, want) in g["recommend"].as_array().unwrap().iter().enumerate() {
            let line = &lines[i * 21 + j];
            assert_eq!(line["case"], g["case"]);
            assert_eq!(line["candidate"], want["candidate"]);
            assert_eq!(line["prompt"], want["prompt"], "case {i} candidate {j}");
            // The stand-in counts a byte as a token; no cut, so no cut fields.
            let len = line["prompt"].as_str().unwrap().len();
            assert_eq!(line["tokens"], len, "case {i} candidate {j}");
            assert!(line.get("cut_at").is_none() && line.get("read_at").is_none());
        }
    }

    // With a cut the prompt is still whole, and the line says where P(yes) is read.
    let cut_batch = trsr::cli::score::ScoreBatch {
        opts: RecommendOptions {
            truncate_tokens: Some(1000),
            ..RecommendOptions::default()
        },
        ..batch
    };
    trsr::cli::score::dump_prompts(&StandIn, &cut_batch, &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut cut = 0;
    for (l, line) in text.lines().zip(&lines) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["prompt"], line["prompt"]);
        let len = v["tokens"].as_u64().unwrap();
        assert_eq!(v["cut_at"], 1000);
        assert_eq!(v["read_at"], len.min(1000));
        cut += usize::from(len > 1000);
    }
    assert!(
        cut > 0,
        "no prompt was over the cut: the test checks nothing"
    );
}

#[test]
fn the_preset_is_recorded_in_projects_and_keys_the_cache() {
    // Project file: the preset survives a save and a load.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.ron");
    let mut p = trsr::project::Project::new();
    p.settings.preset = Preset::Reference;
    p.settings.reference_wording = Some(ReferenceWording::Amazon);
    p.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("preset: reference"), "{text}");
    let q = trsr::project::Project::load(&path).unwrap();
    assert_eq!(q.settings.preset, Preset::Reference);
    assert_eq!(q.settings.reference_wording, Some(ReferenceWording::Amazon));

    // Cache keys: the same case, model and wording under the two presets differ, even
    // with the reference templates' text put in the chat form.
    let ds = load_dir(
        &golden_dir().join("amazon"),
        FormatChoice::AmazonM2,
        &LoadOptions::default(),
    )
    .unwrap();
    let g = &golden("amazon.json")[0];
    let case = Case {
        case: "c1".into(),
        user: "u".into(),
        history: strings(&g["history"]),
        target: g["target"].as_str().unwrap().into(),
        negatives: strings(&g["negatives"]),
        split: None,
    };
    let reference = Templates::reference(ReferenceWording::Amazon);
    let mut chat = reference.clone();
    chat.form = trsr::prompt::PromptForm::Chat;
    chat.summarize_first = None;
    let text = ItemTextTemplate::reference(ReferenceWording::Amazon);
    let key = |t: &Templates| {
        let req = SummarizeRequest {
            case: &case,
            catalogue: &ds.catalogue,
            text_template: &text,
            block_params: BlockParams::default(),
            method: Method::Recurrent,
            templates: t,
            sampling: Preset::Reference.sampling(),
        };
        trsr::cache::trace_key(&req, &StandIn.identity())
    };
    assert_ne!(key(&reference), key(&chat));
    let score_key = |t: &Templates| {
        trsr::cache::score_key(
            &StandIn.identity(),
            "",
            t,
            &case,
            &ds.catalogue,
            &text,
            Some("s"),
            &RecommendOptions::default(),
        )
    };
    assert_ne!(score_key(&reference), score_key(&chat));
}

#[test]
fn on_a_byte_level_bpe_vocabulary_both_answer_rules_read_the_same_tokens() {
    // The README's claim: on SmolLM2's byte-level BPE vocabulary, the first token of the
    // word `yes` is the vocabulary entry `yes` (`convert_tokens_to_ids('yes')`).
    let path = trsr::llm::fetch::default_model_path();
    if !path.is_file() {
        eprintln!("skipped: the default model is absent (run `trsr fetch-model`)");
        return;
    }
    let load = |by_vocab: bool| {
        let opts = trsr::llm::LoadOptions {
            answer_by_vocab: by_vocab,
            ..trsr::llm::LoadOptions::default()
        };
        trsr::llm::Engine::load_path(&path, &opts).unwrap()
    };
    let by_word = load(false);
    let by_vocab = load(true);
    let (yes, no) = by_vocab.answer_ids();
    assert_eq!(by_word.answer_ids(), (yes, no));
    assert_eq!(by_vocab.tokenizer().token_text(yes), Some("yes"));
    assert_eq!(by_vocab.tokenizer().token_text(no), Some("no"));
    // A word the vocabulary has no single entry for is refused under the vocabulary rule.
    let opts = trsr::llm::LoadOptions {
        answer_by_vocab: true,
        yes_word: "definitely-yes".into(),
        ..trsr::llm::LoadOptions::default()
    };
    let err = format!(
        "{:#}",
        trsr::llm::Engine::load_path(&path, &opts).err().unwrap()
    );
    assert!(err.contains("no token spelled exactly"), "{err}");
}
