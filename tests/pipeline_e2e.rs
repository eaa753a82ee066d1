//! End to end with the real default model (SmolLM2-135M-Instruct Q4_1) on a few
//! sample cases: summaries are non-empty, traces complete, scores in [0, 1], metrics
//! computed, and a second run is served from the cache. Skips with a note when the
//! model file is absent.

mod common;

use std::path::{Path, PathBuf};

use trsr::cache::Cache;
use trsr::cli::batch::read_jsonl;
use trsr::cli::score::{score_llm_all, ScoreBatch};
use trsr::cli::summarize::{summarize_all, SummarizeBatch};
use trsr::data::{ItemTextTemplate, Prepared};
use trsr::lm::{CancelToken, LanguageModel, SamplingParams};
use trsr::metrics::{evaluate, ScoreRecord, TiePolicy};
use trsr::prompt::Templates;
use trsr::rank::RecommendOptions;
use trsr::segment::BlockParams;
use trsr::summarize::{summarize, Method, StepKind, SummarizeRequest, SummaryTrace};

fn model_path() -> Option<PathBuf> {
    common::default_model()
}

/// The repository's prepared sample (sample_data/jsonl) when present, else a tiny
/// prepared folder written here.
fn sample(dir: &Path) -> Prepared {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/jsonl");
    if repo.join("cases.jsonl").is_file() {
        return trsr::data::jsonl::load_prepared(&repo).expect("sample_data/jsonl loads");
    }
    let titles = [
        (
            "sports",
            "football",
            "Local team wins the cup final after extra time",
        ),
        (
            "sports",
            "tennis",
            "Young player reaches her first grand slam semi-final",
        ),
        (
            "finance",
            "markets",
            "Stocks close higher as inflation cools",
        ),
        (
            "sports",
            "football",
            "Coach explains the new defensive tactics",
        ),
        (
            "travel",
            "europe",
            "Ten quiet villages to visit in the Alps",
        ),
        (
            "sports",
            "basketball",
            "Star forward signs a three-year contract",
        ),
        (
            "food",
            "recipes",
            "A simple weeknight pasta with lemon and garlic",
        ),
        ("sports", "football", "Transfer window: five deals to watch"),
        ("finance", "personal", "How to build an emergency fund"),
        (
            "sports",
            "tennis",
            "Veteran announces retirement after final match",
        ),
        (
            "sports",
            "football",
            "Stadium expansion approved by the city",
        ),
        ("travel", "asia", "Street food guide to Bangkok"),
        ("sports", "football", "Derby ends in a late equaliser"),
        ("food", "health", "Why breakfast matters for athletes"),
        (
            "sports",
            "cycling",
            "Mountain stage shakes up the standings",
        ),
        ("finance", "markets", "Oil prices fall on weak demand"),
    ];
    let mut items = String::new();
    for (i, (c, s, t)) in titles.iter().enumerate() {
        items.push_str(&format!(
            "{{\"id\": \"N{i}\", \"category\": \"{c}\", \"subcategory\": \"{s}\", \"title\": \"{t}\"}}\n"
        ));
    }
    std::fs::write(dir.join("items.jsonl"), items).unwrap();
    let cases = "{\"case\": \"c0\", \"user\": \"U0\", \"history\": [\"N0\",\"N1\",\"N2\",\"N3\",\"N4\",\"N5\",\"N6\",\"N7\",\"N8\",\"N9\",\"N10\"], \"target\": \"N12\", \"negatives\": [\"N11\",\"N13\",\"N15\"], \"split\": \"test\"}\n\
{\"case\": \"c1\", \"user\": \"U1\", \"history\": [\"N2\",\"N4\",\"N6\",\"N8\",\"N11\",\"N13\",\"N15\",\"N7\"], \"target\": \"N14\", \"negatives\": [\"N0\",\"N9\",\"N12\"], \"split\": \"test\"}\n";
    std::fs::write(dir.join("cases.jsonl"), cases).unwrap();
    trsr::data::jsonl::load_prepared(dir).unwrap()
}

fn load(path: &Path) -> Box<dyn LanguageModel> {
    let engine = trsr::llm::Engine::load_path(path, &trsr::llm::LoadOptions::default())
        .expect("the default model loads");
    Box::new(engine)
}

#[test]
fn real_model_summarizes_scores_evaluates_and_caches() {
    let Some(path) = model_path() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut data = sample(dir.path());
    data.cases.truncate(2);
    let text = ItemTextTemplate::with_fields(&["category", "subcategory", "title"]);
    let templates = Templates::news();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cache_dir.path()).unwrap();
    let mut models = vec![load(&path)];
    let sampling = SamplingParams {
        max_new_tokens: 24,
        ..SamplingParams::default()
    };
    let sb = SummarizeBatch {
        data: &data,
        cases: data.cases.iter().collect(),
        text: &text,
        templates: &templates,
        method: Method::Hierarchical,
        block_params: BlockParams::ByCount {
            size: 5,
            max_blocks: 5,
        },
        sampling: sampling.clone(),
        cache: Some(&cache),
        read_cache: true,
        show_progress: false,
    };
    let sums = dir.path().join("summaries.jsonl");
    let r = summarize_all(&mut models, &sb, &sums, &CancelToken::new()).unwrap();
    r.finish(&sums).unwrap();
    assert_eq!((r.written, r.cached), (2, 0));
    let traces: Vec<SummaryTrace> = read_jsonl(&sums).unwrap();
    let sha = trsr::llm::source::file_sha256(&path).unwrap();
    for t in &traces {
        assert!(
            !t.final_summary.trim().is_empty(),
            "case {}: empty summary",
            t.case
        );
        assert_eq!(t.model.sha256, sha);
        assert_eq!(t.sampling, sampling);
        let n_blocks = t.blocks.len();
        assert!(n_blocks >= 2);
        assert_eq!(t.steps.len(), n_blocks + 1, "blocks then one merge");
        assert_eq!(t.steps.last().unwrap().kind, StepKind::Merge);
        for s in &t.steps {
            assert!(!s.output.is_empty());
            assert!(s.prompt_tokens > 0 && s.output_tokens > 0 && s.output_tokens <= 24);
            assert_eq!(s.token_logprobs.len(), s.output_tokens);
            assert!(s.token_logprobs.iter().all(|l| l.is_finite() && *l <= 0.0));
            assert!(s.ms > 0.0);
        }
    }

    let sc = ScoreBatch {
        data: &data,
        cases: data.cases.iter().collect(),
        text: &text,
        templates: &templates,
        opts: RecommendOptions::default(),
        summaries: Some(&traces),
        cache: Some(&cache),
        read_cache: true,
        show_progress: false,
    };
    let scores = dir.path().join("scores.jsonl");
    let r = score_llm_all(&mut models, &sc, &scores, &CancelToken::new()).unwrap();
    r.finish(&scores).unwrap();
    let recs: Vec<ScoreRecord> = read_jsonl(&scores).unwrap();
    assert_eq!(recs.len(), 2);
    for rec in &recs {
        assert!(rec.scorer.starts_with("llm:") && rec.scorer.ends_with(":hierarchical"));
        let case = data.cases.iter().find(|c| c.case == rec.case).unwrap();
        assert_eq!(rec.candidates.len(), 1 + case.negatives.len());
        assert_eq!(rec.candidates[0].id, case.target);
        assert!(rec
            .candidates
            .iter()
            .all(|c| c.score.is_finite() && (0.0..=1.0).contains(&c.score)));
    }
    let m = evaluate(&recs, &[3, 5, 10], TiePolicy::Pessimistic);
    let s = m.values().next().expect("one scorer");
    assert_eq!(s.cases, 2);
    assert!(s.metrics.values().all(|v| (0.0..=1.0).contains(v)));

    // The same work again into new files: served from the cache.
    let sums2 = dir.path().join("summaries2.jsonl");
    let r = summarize_all(&mut models, &sb, &sums2, &CancelToken::new()).unwrap();
    assert_eq!((r.written, r.cached), (2, 2));
    let scores2 = dir.path().join("scores2.jsonl");
    let r = score_llm_all(&mut models, &sc, &scores2, &CancelToken::new()).unwrap();
    assert_eq!((r.written, r.cached), (2, 2));
    let again: Vec<ScoreRecord> = read_jsonl(&scores2).unwrap();
    assert_eq!(recs, again);
}

#[test]
fn real_model_same_seed_same_recurrent_trace() {
    let Some(path) = model_path() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = sample(dir.path());
    let text = ItemTextTemplate::with_fields(&["category", "title"]);
    let templates = Templates::news();
    let mut lm = load(&path);
    let mut case = data.cases[0].clone();
    case.history.truncate(6);
    let req = SummarizeRequest {
        case: &case,
        catalogue: &data.catalogue,
        text_template: &text,
        block_params: BlockParams::ByCount {
            size: 3,
            max_blocks: 5,
        },
        method: Method::Recurrent,
        templates: &templates,
        sampling: SamplingParams {
            max_new_tokens: 16,
            ..SamplingParams::default()
        },
    };
    let a = summarize(lm.as_mut(), &req, &CancelToken::new(), &mut |_| {}).unwrap();
    let b = summarize(lm.as_mut(), &req, &CancelToken::new(), &mut |_| {}).unwrap();
    assert_eq!(a.steps.len(), 2);
    assert_eq!(a.steps[1].kind, StepKind::Update);
    assert!(a.steps[1].prompt.contains(&a.steps[0].output));
    let outs = |t: &SummaryTrace| t.steps.iter().map(|s| s.output.clone()).collect::<Vec<_>>();
    assert_eq!(outs(&a), outs(&b));
}
