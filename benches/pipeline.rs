//! Pipeline throughput on the sample set with the default model: users per minute
//! for summarizing (recurrent and hierarchical) and for scoring, and, side by side
//! in the same run, scoring with the shared prefix reused (the pipeline) against no
//! reuse at all (one engine call per candidate, prefix recomputed each time).
//!
//! Run: `cargo bench --bench pipeline -- [DIR] [--cases N] [--max-new-tokens N]`
//! (DIR: a prepared folder; default `sample_data/jsonl`).

use std::path::PathBuf;
use std::time::Instant;

use trsr::cli::batch::read_jsonl;
use trsr::cli::score::{score_llm_all, ScoreBatch};
use trsr::cli::summarize::{summarize_all, SummarizeBatch};
use trsr::data::ItemTextTemplate;
use trsr::lm::{CancelToken, LanguageModel, SamplingParams};
use trsr::prompt::Templates;
use trsr::rank::{recommend_chat_prompt, RecommendOptions};
use trsr::segment::BlockParams;
use trsr::summarize::{Method, SummaryTrace};

fn main() -> anyhow::Result<()> {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_data/jsonl");
    let mut cases = 8usize;
    let mut max_new_tokens = 150usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cases" => cases = args.next().and_then(|v| v.parse().ok()).unwrap_or(cases),
            "--max-new-tokens" => {
                max_new_tokens = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(max_new_tokens)
            }
            "--bench" => {}
            other if !other.starts_with('-') => dir = PathBuf::from(other),
            _ => {}
        }
    }
    let model = trsr::llm::fetch::default_model_path();
    if !model.is_file() {
        eprintln!(
            "skipping: no default model at {} (run `trsr fetch-model`)",
            model.display()
        );
        return Ok(());
    }
    if !dir.join("cases.jsonl").is_file() {
        eprintln!("skipping: no prepared folder at {}", dir.display());
        return Ok(());
    }
    let mut data = trsr::data::jsonl::load_prepared(&dir)?;
    data.cases.truncate(cases);
    let n = data.cases.len();
    let common = trsr::cli::batch::CommonArgs::default();
    let templates: Templates = common.templates(&data.catalogue)?;
    let text: ItemTextTemplate = common.text_template(&data.catalogue);
    let load_start = Instant::now();
    let engine = trsr::llm::Engine::load_path(&model, &trsr::llm::LoadOptions::default())?;
    let mut models: Vec<Box<dyn LanguageModel>> = vec![Box::new(engine)];
    println!(
        "model {} loaded in {:.2}s; {} cases from {}; {} cores",
        model.display(),
        load_start.elapsed().as_secs_f64(),
        n,
        dir.display(),
        trsr::cli::batch::cores()
    );
    let tmp = std::env::temp_dir().join(format!("trsr-bench-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let per_min = |secs: f64| n as f64 / secs * 60.0;
    let mut traces: Vec<SummaryTrace> = Vec::new();
    for method in [Method::Recurrent, Method::Hierarchical] {
        let out = tmp.join(format!("summaries_{method}.jsonl"));
        let b = SummarizeBatch {
            data: &data,
            cases: data.cases.iter().collect(),
            text: &text,
            templates: &templates,
            method,
            block_params: BlockParams::default(),
            sampling: SamplingParams {
                max_new_tokens,
                ..SamplingParams::default()
            },
            cache: None,
            read_cache: false,
            show_progress: false,
        };
        let start = Instant::now();
        let r = summarize_all(&mut models, &b, &out, &CancelToken::new())?;
        let secs = start.elapsed().as_secs_f64();
        r.finish(&out)?;
        println!(
            "summarize {method:<12}: {:>7.2} users/min  ({:.1}s, {} generated tokens, {:.1} tok/s)",
            per_min(secs),
            secs,
            r.tokens,
            r.tokens as f64 / secs
        );
        traces = read_jsonl(&out)?;
    }

    // Scoring through the pipeline (prefix reused inside the engine).
    let sb = ScoreBatch {
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
    let out = tmp.join("scores.jsonl");
    let start = Instant::now();
    let r = score_llm_all(&mut models, &sb, &out, &CancelToken::new())?;
    let reuse_secs = start.elapsed().as_secs_f64();
    r.finish(&out)?;
    println!(
        "score (shared prefix)    : {:>7.2} users/min  ({:.1}s, {:.0} prompt tok/s)",
        per_min(reuse_secs),
        reuse_secs,
        r.tokens as f64 / reuse_secs
    );

    // The same prompts without any reuse: one engine call per candidate, the engine's
    // cached prefix cleared before each, so every call computes prefix + suffix.
    let shared: Vec<trsr::metrics::ScoreRecord> = read_jsonl(&out)?;
    let mut engine = trsr::llm::Engine::load_path(&model, &trsr::llm::LoadOptions::default())?;
    let start = Instant::now();
    let mut max_diff = 0f64;
    for t in &traces {
        let case = data
            .cases
            .iter()
            .find(|c| c.case == t.case)
            .ok_or_else(|| anyhow::anyhow!("no case {}", t.case))?;
        let ((prefix, suffixes), _) = recommend_chat_prompt(
            &engine,
            &templates,
            case,
            &data.catalogue,
            &text,
            Some(&t.final_summary),
            &RecommendOptions::default(),
        )?;
        let rec = shared
            .iter()
            .find(|r| r.case == t.case)
            .ok_or_else(|| anyhow::anyhow!("no shared-prefix scores for {}", t.case))?;
        for (s, c) in suffixes.iter().zip(&rec.candidates) {
            engine.clear_prefix_cache();
            let alone = engine.score_yes_no(&prefix, std::slice::from_ref(s))?;
            max_diff = max_diff.max((f64::from(alone[0]) - c.score).abs());
        }
    }
    let alone_secs = start.elapsed().as_secs_f64();
    println!(
        "score (no reuse, 1 call per candidate): {:>7.2} users/min  ({:.1}s)",
        per_min(alone_secs),
        alone_secs
    );
    println!(
        "ratio: shared prefix is {:.2}x faster than no reuse; max |P(yes) difference| {:.2e}",
        alone_secs / reuse_secs,
        max_diff
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
