//! Control flow of the summarizer, scorer and batch commands, checked with a small
//! deterministic fake model (defined here, used for nothing else): step order,
//! recurrent chaining, the merge tree on overflow, seeds, resume after an edit,
//! cancel, resumable output and the cache. The real model is exercised in
//! `pipeline_e2e.rs`.

use std::path::Path;
mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::scripted::{Chat, Scripted};

use trsr::cache::Cache;
use trsr::cli::batch::{read_jsonl, JsonlOut};
use trsr::cli::score::{score_baselines_all, score_llm_all, ScoreBatch};
use trsr::cli::summarize::{summarize_all, SummarizeBatch};
use trsr::cli::sweep::{sweep, SweepPlan};
use trsr::data::{Case, ItemTextTemplate, Prepared};
use trsr::lm::{CancelToken, LanguageModel, SamplingParams};
use trsr::metrics::{ScoreRecord, TiePolicy};
use trsr::prompt::Templates;
use trsr::rank::{score_llm, Baseline, RecommendOptions};
use trsr::segment::BlockParams;
use trsr::summarize::{
    is_cancelled, resume, summarize, Method, StepKind, SummarizeEvent, SummarizeRequest,
    SummaryTrace,
};

/// The scripted model of these tests: tokens are whitespace-separated words; a
/// generation repeats every item id (`N<digits>`) found in the prompt, in order of first
/// appearance, plus a tag derived from the prompt and seed, plus `filler` words; a
/// candidate scores by the share of its words found in the prefix. Prompts that do not
/// fit the context fail the test.
struct Fake;

impl Fake {
    #[allow(clippy::new_ret_no_self)]
    fn new(context: usize, filler: usize) -> Scripted {
        let mut m = Scripted::new("fake")
            .with_context(context)
            .with_chat(Chat::TaggedLines)
            .with_logprob(-0.25)
            .with_score(|prefix, s, _, _| {
                let p: std::collections::HashSet<&str> = prefix.split_whitespace().collect();
                let words: Vec<&str> = s.split_whitespace().collect();
                let hit = words.iter().filter(|w| p.contains(*w)).count();
                0.05 + 0.9 * hit as f32 / words.len().max(1) as f32
            });
        m.reply = Arc::new(move |prompt: &str, params: &SamplingParams, _| {
            let mut words = vec!["likes ".to_string()];
            words.extend(ids_in(prompt).into_iter().map(|w| format!("{w} ")));
            words.push(format!("T{} ", fnv(prompt, params.seed) % 100_000));
            words.extend((0..filler).map(|i| format!("w{i} ")));
            words
        });
        m.check_fit = true;
        m
    }
}

fn fnv(s: &str, seed: u64) -> u64 {
    let mut h = 0xcbf29ce484222325u64 ^ seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn ids_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        let is_id = w.len() > 1 && w.starts_with('N') && w[1..].chars().all(|c| c.is_ascii_digit());
        if is_id && !out.iter().any(|o| o == w) {
            out.push(w.to_string());
        }
    }
    out
}

/// A tiny prepared folder: 40 news items, 4 cases with 12-item histories.
fn prepared(dir: &Path) -> Prepared {
    let cats = ["sports", "finance", "travel", "food"];
    let mut items = String::new();
    for i in 0..40 {
        let c = cats[i % 4];
        items.push_str(&format!(
            "{{\"id\": \"N{i}\", \"category\": \"{c}\", \"subcategory\": \"{c}-sub\", \"title\": \"story {i} about {c}\"}}\n"
        ));
    }
    std::fs::write(dir.join("items.jsonl"), items).unwrap();
    let mut cases = String::new();
    for u in 0..4 {
        let hist: Vec<String> = (0..12)
            .map(|k| format!("\"N{}\"", (u * 3 + k) % 40))
            .collect();
        let negs: Vec<String> = (0..5)
            .map(|k| format!("\"N{}\"", (u * 7 + 20 + k) % 40))
            .collect();
        let split = if u < 2 { "train" } else { "test" };
        cases.push_str(&format!(
            "{{\"case\": \"c{u}\", \"user\": \"U{u}\", \"history\": [{}], \"target\": \"N{}\", \"negatives\": [{}], \"split\": \"{split}\"}}\n",
            hist.join(", "),
            (u * 3 + 12) % 40,
            negs.join(", ")
        ));
    }
    std::fs::write(dir.join("cases.jsonl"), cases).unwrap();
    trsr::data::jsonl::load_prepared(dir).unwrap()
}

fn request<'a>(
    data: &'a Prepared,
    case: &'a Case,
    text: &'a ItemTextTemplate,
    templates: &'a Templates,
    method: Method,
) -> SummarizeRequest<'a> {
    SummarizeRequest {
        case,
        catalogue: &data.catalogue,
        text_template: text,
        block_params: BlockParams::ByCount {
            size: 5,
            max_blocks: 5,
        },
        method,
        templates,
        sampling: SamplingParams {
            max_new_tokens: 40,
            ..SamplingParams::default()
        },
    }
}

fn without_times(mut t: SummaryTrace) -> SummaryTrace {
    for s in &mut t.steps {
        s.ms = 0.0;
    }
    t
}

#[test]
fn recurrent_summarizes_block_one_then_updates_with_the_previous_summary() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let case = &data.cases[0];
    let mut lm = Fake::new(4096, 3);
    let mut events = Vec::new();
    let trace = summarize(
        &mut lm,
        &request(&data, case, &text, &t, Method::Recurrent),
        &CancelToken::new(),
        &mut |e| events.push(e),
    )
    .unwrap();
    // 12 items in blocks of 5: 5, 5, 2.
    assert_eq!(
        trace.blocks.iter().map(Vec::len).collect::<Vec<_>>(),
        [5, 5, 2]
    );
    let kinds: Vec<_> = trace
        .steps
        .iter()
        .map(|s| (s.kind, s.blocks.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (StepKind::Block, vec![0]),
            (StepKind::Update, vec![1]),
            (StepKind::Update, vec![2])
        ]
    );
    for w in trace.steps.windows(2) {
        assert!(
            w[1].prompt.contains(&w[0].output),
            "an update prompt holds the previous summary"
        );
    }
    // Only the block's own items in each prompt, besides the previous summary.
    assert!(!trace.steps[0].prompt.contains(&trace.blocks[1][0]));
    assert_eq!(trace.final_summary, trace.steps[2].output);
    let all_ids: Vec<String> = trace.blocks.concat();
    for id in &all_ids {
        assert!(
            trace.final_summary.contains(id.as_str()),
            "{id} carried to the end"
        );
    }
    // Trace completeness.
    assert_eq!(trace.case, case.case);
    assert_eq!(trace.model.sha256, "fake-sha");
    assert_eq!(trace.sampling.seed, 42);
    for s in &trace.steps {
        assert!(s.prompt_tokens > 0 && s.output_tokens > 0);
        assert_eq!(s.token_logprobs.len(), s.output_tokens);
        assert!(
            s.prompt.starts_with("<system>"),
            "rendered through the chat template"
        );
    }
    // Events: started, tokens, finished per step, in order.
    let started: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            SummarizeEvent::StepStarted { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(started, [0, 1, 2]);
    assert!(matches!(
        events.last(),
        Some(SummarizeEvent::StepFinished { step: 2, .. })
    ));
    let tokens = events
        .iter()
        .filter(|e| matches!(e, SummarizeEvent::Token { .. }))
        .count();
    assert_eq!(
        tokens,
        trace.steps.iter().map(|s| s.output_tokens).sum::<usize>()
    );
}

#[test]
fn hierarchical_summarizes_blocks_alone_then_merges_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let mut lm = Fake::new(4096, 3);
    let trace = summarize(
        &mut lm,
        &request(&data, &data.cases[1], &text, &t, Method::Hierarchical),
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap();
    let kinds: Vec<_> = trace
        .steps
        .iter()
        .map(|s| (s.kind, s.blocks.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (StepKind::Block, vec![0]),
            (StepKind::Block, vec![1]),
            (StepKind::Block, vec![2]),
            (StepKind::Merge, vec![0, 1, 2])
        ]
    );
    // Block steps see only their own block.
    for (b, s) in trace.steps[..3].iter().enumerate() {
        for (other, ids) in trace.blocks.iter().enumerate() {
            for id in ids {
                let needle = format!("id: {id};");
                assert_eq!(s.prompt.contains(&needle), other == b, "step {b}, {id}");
            }
        }
    }
    let merge = &trace.steps[3].prompt;
    let pos: Vec<usize> = trace.steps[..3]
        .iter()
        .map(|s| {
            merge
                .find(&s.output)
                .expect("merge holds each block summary")
        })
        .collect();
    assert!(pos[0] < pos[1] && pos[1] < pos[2], "in block order");
    assert_eq!(trace.final_summary, trace.steps[3].output);
    assert!(trace.notes.iter().all(|n| !n.contains("tree")));
}

#[test]
fn merge_that_would_overflow_becomes_a_tree_of_smaller_merges() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let case = Case {
        history: (0..25).map(|i| format!("N{i}")).collect(),
        ..data.cases[0].clone()
    };
    // Long summaries (60 filler words): one merge of 5 does not fit 400 tokens.
    let mut lm = Fake::new(400, 60);
    let mut req = request(&data, &case, &text, &t, Method::Hierarchical);
    req.sampling.max_new_tokens = 80;
    let trace = summarize(&mut lm, &req, &CancelToken::new(), &mut |_| {}).unwrap();
    let merges: Vec<_> = trace
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Merge)
        .collect();
    assert!(merges.len() > 1, "a tree of merges, got {}", merges.len());
    assert_eq!(trace.steps.last().unwrap().blocks, vec![0, 1, 2, 3, 4]);
    assert!(
        trace.notes.iter().any(|n| n.contains("tree of")),
        "{:?}",
        trace.notes
    );
    for id in case.history.iter() {
        assert!(trace.final_summary.contains(id.as_str()));
    }
    // The same request with a roomy context merges once.
    let mut roomy = Fake::new(4000, 60);
    let one = summarize(&mut roomy, &req, &CancelToken::new(), &mut |_| {}).unwrap();
    assert_eq!(
        one.steps
            .iter()
            .filter(|s| s.kind == StepKind::Merge)
            .count(),
        1
    );
}

#[test]
fn merge_impossible_in_the_context_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    // Block prompts fit 300 tokens, but two 120-word summaries in one merge do not.
    let mut lm = Fake::new(300, 120);
    let mut req = request(&data, &data.cases[0], &text, &t, Method::Hierarchical);
    req.sampling.max_new_tokens = 130;
    let err = summarize(&mut lm, &req, &CancelToken::new(), &mut |_| {}).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("not even two partial summaries fit"), "{msg}");
    assert_eq!(lm.calls(), 3, "the three blocks were summarized first");
}

#[test]
fn same_seed_gives_the_same_trace_and_steps_use_distinct_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let req = request(&data, &data.cases[2], &text, &t, Method::Recurrent);
    let run = |req: &SummarizeRequest| {
        without_times(
            summarize(
                &mut Fake::new(4096, 2),
                req,
                &CancelToken::new(),
                &mut |_| {},
            )
            .unwrap(),
        )
    };
    let a = run(&req);
    assert_eq!(a, run(&req));
    let mut other = req.clone();
    other.sampling.seed = 7;
    assert_ne!(a.final_summary, run(&other).final_summary);
}

#[test]
fn resume_keeps_earlier_steps_and_feeds_an_edited_summary_forward() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let req = request(&data, &data.cases[0], &text, &t, Method::Recurrent);
    let mut lm = Fake::new(4096, 2);
    let mut prior = summarize(&mut lm, &req, &CancelToken::new(), &mut |_| {}).unwrap();
    prior.steps[1].output = "EDITED interests N999".into();
    let before = lm.calls();
    let mut started = Vec::new();
    let again = resume(&mut lm, &req, &prior, 2, &CancelToken::new(), &mut |e| {
        if let SummarizeEvent::StepStarted { step, .. } = e {
            started.push(step)
        }
    })
    .unwrap();
    assert_eq!(lm.calls() - before, 1, "only step 3 is computed");
    assert_eq!(started, [2]);
    assert_eq!(again.steps[..2], prior.steps[..2]);
    assert!(again.steps[2].prompt.contains("EDITED interests N999"));
    assert!(again.final_summary.contains("N999"));
    assert!(resume(&mut lm, &req, &prior, 9, &CancelToken::new(), &mut |_| {}).is_err());
}

#[test]
fn cancel_stops_a_summary_with_a_cancelled_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let req = request(&data, &data.cases[0], &text, &t, Method::Hierarchical);
    let cancel = CancelToken::new();
    let mut lm = Fake::new(4096, 2);
    let c2 = cancel.clone();
    let err = summarize(&mut lm, &req, &cancel, &mut |e| {
        if let SummarizeEvent::StepFinished { .. } = e {
            c2.cancel();
        }
    })
    .unwrap_err();
    assert!(is_cancelled(&err), "{err:#}");
    assert_eq!(lm.calls(), 1);
}

fn batch<'a>(
    data: &'a Prepared,
    text: &'a ItemTextTemplate,
    t: &'a Templates,
    method: Method,
    cache: Option<&'a Cache>,
) -> SummarizeBatch<'a> {
    SummarizeBatch {
        data,
        cases: data.cases.iter().collect(),
        text,
        templates: t,
        method,
        block_params: BlockParams::default(),
        sampling: SamplingParams {
            max_new_tokens: 40,
            ..SamplingParams::default()
        },
        cache,
        read_cache: true,
        show_progress: false,
    }
}

#[test]
fn batch_summaries_resume_after_cancel_and_come_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cache_dir.path()).unwrap();
    let out = dir.path().join("summaries.jsonl");
    let b = batch(&data, &text, &t, Method::Recurrent, Some(&cache));

    // Cancel during the 5th generation: case 1 (3 steps) is done, case 2 is not.
    let cancel = CancelToken::new();
    let mut fake = Fake::new(4096, 2);
    fake.cancel_at = Some((5, cancel.clone()));
    let r = summarize_all(&mut [fake.boxed()], &b, &out, &cancel).unwrap();
    assert!(r.cancelled);
    assert_eq!(r.written, 1);
    assert!(r.finish(&out).is_err());
    let lines: Vec<SummaryTrace> = read_jsonl(&out).unwrap();
    assert_eq!(lines.len(), 1);

    // A crash mid-line leaves a partial line; it is dropped on resume.
    let mut raw = std::fs::read(&out).unwrap();
    raw.extend_from_slice(b"{\"case\": \"c1\", \"meth");
    std::fs::write(&out, raw).unwrap();

    // The same command again continues.
    let fake = Fake::new(4096, 2);
    let r = summarize_all(&mut [fake.boxed()], &b, &out, &CancelToken::new()).unwrap();
    assert_eq!((r.written, r.already_done, r.cancelled), (3, 1, false));
    assert_eq!(fake.calls(), 9);
    let lines: Vec<SummaryTrace> = read_jsonl(&out).unwrap();
    let mut cases: Vec<&str> = lines.iter().map(|t| t.case.as_str()).collect();
    cases.sort();
    assert_eq!(cases, ["c0", "c1", "c2", "c3"]);

    // The window finds the CLI's traces with the plain `trace_key`.
    let case = &data.cases[2];
    let req = SummarizeRequest {
        case,
        catalogue: &data.catalogue,
        text_template: &text,
        block_params: b.block_params.clone(),
        method: Method::Recurrent,
        templates: &t,
        sampling: b.sampling.clone(),
    };
    let key = trsr::cache::trace_key(&req, &fake.identity());
    let hit = cache
        .get_trace(&key)
        .expect("the GUI's key finds the CLI's trace");
    assert_eq!(hit.blocks.concat(), case.history);

    // Once more: nothing to do.
    let r = summarize_all(&mut [fake.boxed()], &b, &out, &CancelToken::new()).unwrap();
    assert_eq!((r.written, r.already_done), (0, 4));

    // A fresh output file: every case is served from the cache, no model call.
    let out2 = dir.path().join("again.jsonl");
    let fake = Fake::new(4096, 2);
    let r = summarize_all(&mut [fake.boxed()], &b, &out2, &CancelToken::new()).unwrap();
    assert_eq!((r.written, r.cached), (4, 4));
    assert_eq!(fake.calls(), 0);
    let mut a: Vec<SummaryTrace> = read_jsonl(&out).unwrap();
    let mut c: Vec<SummaryTrace> = read_jsonl(&out2).unwrap();
    a.sort_by(|x, y| x.case.cmp(&y.case));
    c.sort_by(|x, y| x.case.cmp(&y.case));
    assert_eq!(a, c);

    // --no-cache recomputes.
    let out3 = dir.path().join("fresh.jsonl");
    let mut nb = batch(&data, &text, &t, Method::Recurrent, Some(&cache));
    nb.read_cache = false;
    let fake = Fake::new(4096, 2);
    let r = summarize_all(&mut [fake.boxed()], &nb, &out3, &CancelToken::new()).unwrap();
    assert_eq!((r.written, r.cached), (4, 0));
    assert_eq!(fake.calls(), 12);

    // A different method is a different cache entry.
    let out4 = dir.path().join("hier.jsonl");
    let hb = batch(&data, &text, &t, Method::Hierarchical, Some(&cache));
    let fake = Fake::new(4096, 2);
    let r = summarize_all(&mut [fake.boxed()], &hb, &out4, &CancelToken::new()).unwrap();
    assert_eq!(r.cached, 0);
    assert_eq!(fake.calls(), 16);
}

#[test]
fn parallel_workers_give_the_same_summaries_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let b = batch(&data, &text, &t, Method::Hierarchical, None);
    let one = dir.path().join("one.jsonl");
    let two = dir.path().join("two.jsonl");
    let f = Fake::new(4096, 2);
    summarize_all(&mut [f.boxed()], &b, &one, &CancelToken::new()).unwrap();
    let g = Fake::new(4096, 2);
    let r = summarize_all(&mut [g.boxed(), g.boxed()], &b, &two, &CancelToken::new()).unwrap();
    assert_eq!(r.written, 4);
    let norm = |p: &Path| {
        let mut v: Vec<SummaryTrace> = read_jsonl(p).unwrap();
        v.sort_by(|x, y| x.case.cmp(&y.case));
        v.into_iter().map(without_times).collect::<Vec<_>>()
    };
    assert_eq!(norm(&one), norm(&two));
}

#[test]
fn llm_scores_use_the_summary_and_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(cache_dir.path()).unwrap();
    let sums = dir.path().join("s.jsonl");
    let f = Fake::new(4096, 2);
    summarize_all(
        &mut [f.boxed()],
        &batch(&data, &text, &t, Method::Recurrent, None),
        &sums,
        &CancelToken::new(),
    )
    .unwrap();
    let traces: Vec<SummaryTrace> = read_jsonl(&sums).unwrap();
    let sb = ScoreBatch {
        data: &data,
        cases: data.cases.iter().collect(),
        text: &text,
        templates: &t,
        opts: RecommendOptions::default(),
        summaries: Some(&traces),
        cache: Some(&cache),
        read_cache: true,
        show_progress: false,
    };
    let out = dir.path().join("scores.jsonl");
    let r = score_llm_all(&mut [f.boxed()], &sb, &out, &CancelToken::new()).unwrap();
    assert_eq!(r.written, 4);
    assert_eq!(f.score_calls.load(Ordering::SeqCst), 4);
    let recs: Vec<ScoreRecord> = read_jsonl(&out).unwrap();
    for rec in &recs {
        assert_eq!(rec.scorer, "llm:fake:recurrent");
        assert_eq!(rec.candidates.len(), 6);
        assert_eq!(rec.candidates[0].label, 1);
        assert!(rec
            .candidates
            .iter()
            .all(|c| (0.0..=1.0).contains(&c.score)));
    }
    // Served from the cache the second time.
    let out2 = dir.path().join("scores2.jsonl");
    let g = Fake::new(4096, 2);
    let r = score_llm_all(&mut [g.boxed()], &sb, &out2, &CancelToken::new()).unwrap();
    assert_eq!((r.written, r.cached), (4, 4));
    assert_eq!(g.score_calls.load(Ordering::SeqCst), 0);
    // Without summaries the LLM scorer asks for them.
    let no = ScoreBatch {
        summaries: None,
        ..sb
    };
    let err = score_llm_all(
        &mut [g.boxed()],
        &no,
        &dir.path().join("x.jsonl"),
        &CancelToken::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--summaries"), "{err}");
}

#[test]
fn score_llm_puts_the_summary_in_the_shared_prefix_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let mut lm = Fake::new(4096, 0);
    let rec = score_llm(
        &mut lm,
        &t,
        &data.cases[0],
        &data.catalogue,
        &text,
        Some("SUMMARYTEXT"),
        &RecommendOptions::default(),
    )
    .unwrap();
    assert_eq!(rec.scorer, "llm:fake");
    assert_eq!(rec.candidates.len(), 6);
    assert_eq!(rec.candidates[0].id, data.cases[0].target);
    let (prefix, suffixes) = trsr::rank::recommend_prompt(
        &t,
        &data.cases[0],
        &data.catalogue,
        &text,
        Some("SUMMARYTEXT"),
        &RecommendOptions::default(),
    );
    assert!(prefix.contains("SUMMARYTEXT"));
    assert!(suffixes.iter().all(|s| !s.contains("SUMMARYTEXT")));
}

#[test]
fn full_history_ablation_drops_the_oldest_items_to_fit() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let opts = RecommendOptions {
        full_history: true,
        ..RecommendOptions::default()
    };
    let lm = Fake::new(170, 0);
    let ((prefix, suffixes), kept) = trsr::rank::recommend_chat_prompt(
        &lm,
        &t,
        &data.cases[0],
        &data.catalogue,
        &text,
        None,
        &opts,
    )
    .unwrap();
    assert!(kept > 0 && kept < 12, "kept {kept}");
    let longest = suffixes
        .iter()
        .map(|s| s.split_whitespace().count())
        .max()
        .unwrap();
    assert!(prefix.split_whitespace().count() + longest <= 170);
    let roomy = Fake::new(10_000, 0);
    let (_, kept) = trsr::rank::recommend_chat_prompt(
        &roomy,
        &t,
        &data.cases[0],
        &data.catalogue,
        &text,
        None,
        &opts,
    )
    .unwrap();
    assert_eq!(kept, 12);
}

#[test]
fn baselines_write_one_line_per_case_and_scorer_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let sb = ScoreBatch {
        data: &data,
        cases: data.cases.iter().collect(),
        text: &text,
        templates: &t,
        opts: RecommendOptions::default(),
        summaries: None,
        cache: None,
        read_cache: true,
        show_progress: false,
    };
    let out = dir.path().join("b.jsonl");
    let all = [Baseline::Random, Baseline::Popularity, Baseline::Bm25];
    let r = score_baselines_all(&all, &sb, 1, &out, &CancelToken::new()).unwrap();
    assert_eq!(r.written, 12);
    let r = score_baselines_all(&all, &sb, 1, &out, &CancelToken::new()).unwrap();
    assert_eq!((r.written, r.already_done), (0, 12));
    let recs: Vec<ScoreRecord> = read_jsonl(&out).unwrap();
    let scorers: std::collections::BTreeSet<&str> =
        recs.iter().map(|r| r.scorer.as_str()).collect();
    assert_eq!(
        scorers.into_iter().collect::<Vec<_>>(),
        ["bm25", "popularity", "random"]
    );
}

#[test]
fn sweep_writes_one_metrics_row_per_setting_and_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path());
    let text = ItemTextTemplate::default();
    let t = Templates::news();
    let out = dir.path().join("sweep");
    let plan = SweepPlan {
        data: &data,
        cases: data.cases.iter().collect(),
        text: &text,
        templates: &t,
        methods: vec![Method::Recurrent, Method::Hierarchical],
        block_sizes: vec![3, 5],
        max_blocks: 5,
        recent: 5,
        sampling: SamplingParams {
            max_new_tokens: 40,
            ..SamplingParams::default()
        },
        seed: 42,
        ties: TiePolicy::Pessimistic,
        cache: None,
        read_cache: true,
        show_progress: false,
    };
    let f = Fake::new(4096, 2);
    let rows = sweep(&mut [f.boxed()], &plan, &out, &CancelToken::new()).unwrap();
    // 3 baselines + LLM without summary + 2 methods x 2 block sizes.
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r.cases == 4));
    assert!(rows
        .iter()
        .any(|r| r.scorer == "llm:fake:hierarchical" && r.block_size == Some(3)));
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9);
    assert!(csv.lines().next().unwrap().contains("recall@3") && csv.contains("auc"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 8);
    assert!(out.join("summaries_recurrent_b3.jsonl").is_file());
    assert!(out.join("scores_hierarchical_b5.jsonl").is_file());
    // A second sweep is all resume: no model calls.
    let calls = f.calls();
    let rows2 = sweep(&mut [f.boxed()], &plan, &out, &CancelToken::new()).unwrap();
    assert_eq!(f.calls(), calls);
    assert_eq!(rows, rows2);
}

#[test]
fn jsonl_resume_rejects_a_broken_middle_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.jsonl");
    std::fs::write(
        &p,
        "{\"case\":\"a\",\"scorer\":\"x\",\"candidates\":[]}\nnot json\n{}\n",
    )
    .unwrap();
    let err = JsonlOut::resume::<ScoreRecord>(&p).err().unwrap();
    assert!(err.to_string().contains("s.jsonl:2"), "{err}");
}

#[test]
fn jsonl_resume_drops_a_torn_last_line_cut_inside_a_character() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.jsonl");
    let good = "{\"case\":\"a\",\"scorer\":\"x\",\"candidates\":[]}\n";
    let mut bytes = good.as_bytes().to_vec();
    // A write cut short after the first byte of "é" (0xC3 0xA9).
    bytes.extend_from_slice(b"{\"case\":\"caf\xC3");
    std::fs::write(&p, &bytes).unwrap();
    let (rows, mut w) = JsonlOut::resume::<ScoreRecord>(&p).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        std::fs::read(&p).unwrap(),
        good.as_bytes(),
        "the torn line is cut off"
    );
    w.write(&rows[0]).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 2);
}

#[test]
fn command_lines_of_the_issue_parse_to_the_right_settings() {
    use clap::Parser;
    use trsr::cli::{Cli, Command};
    let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().command.unwrap();
    let Command::Summarize(s) = parse(&[
        "trsr",
        "summarize",
        "--model",
        "default",
        "--data",
        "D",
        "--method",
        "hierarchical",
        "--block-size",
        "3",
        "--max-blocks",
        "4",
        "--token-budget",
        "300",
        "--limit",
        "7",
        "--out",
        "F",
        "--threads",
        "2",
    ]) else {
        panic!("summarize")
    };
    assert_eq!(s.method, Method::Hierarchical);
    assert_eq!(
        (s.block_size, s.max_blocks, s.token_budget, s.limit),
        (3, 4, Some(300), Some(7))
    );
    assert_eq!(s.model.model, "default");
    assert_eq!(s.common.workers(), 2);
    assert_eq!(
        trsr::cli::summarize::block_params(s.block_size, s.max_blocks, s.token_budget),
        BlockParams::ByTokens {
            budget_tokens: 300,
            max_blocks: 4
        }
    );
    let Command::Score(s) = parse(&[
        "trsr",
        "score",
        "--data",
        "D",
        "--scorer",
        "llm",
        "--model",
        "M",
        "--summaries",
        "S",
        "--recent",
        "3",
        "--no-summary",
        "--limit",
        "2",
        "--out",
        "F",
    ]) else {
        panic!("score")
    };
    let o = trsr::cli::score::recommend_options(&s);
    assert_eq!((o.recent, o.use_summary, o.use_recent), (3, false, true));
    assert_eq!(s.model.model, "M");
    let Command::Score(s) = parse(&["trsr", "score", "--data", "D", "--out", "F"]) else {
        panic!("score")
    };
    assert_eq!(s.scorer, trsr::cli::score::ScorerChoice::Llm);
    assert_eq!(s.recent, 5);
    let Command::Sweep(s) = parse(&[
        "trsr",
        "sweep",
        "--model",
        "M",
        "--data",
        "D",
        "--block-sizes",
        "2,3,5,8",
        "--methods",
        "recurrent,hierarchical",
        "--limit",
        "4",
        "--out",
        "O",
    ]) else {
        panic!("sweep")
    };
    assert_eq!(s.block_sizes, [2, 3, 5, 8]);
    assert_eq!(s.methods, [Method::Recurrent, Method::Hierarchical]);
    let Command::Sweep(s) = parse(&["trsr", "sweep", "--data", "D", "--out", "O"]) else {
        panic!("sweep")
    };
    assert_eq!(s.methods, [Method::Recurrent, Method::Hierarchical]);
    assert_eq!(s.block_sizes, [2, 3, 5, 8]);
    assert!(Cli::try_parse_from([
        "trsr",
        "summarize",
        "--data",
        "D",
        "--method",
        "sideways",
        "--out",
        "F"
    ])
    .is_err());
}

#[test]
fn score_command_runs_a_baseline_and_names_a_missing_folder() {
    use clap::Parser;
    use trsr::cli::{Cli, Command};
    let dir = tempfile::tempdir().unwrap();
    prepared(dir.path());
    let out = dir.path().join("bm25.jsonl");
    let d = dir.path().to_str().unwrap();
    let o = out.to_str().unwrap();
    let Some(Command::Score(a)) = Cli::try_parse_from([
        "trsr", "score", "--data", d, "--scorer", "bm25", "--split", "test", "--out", o, "--quiet",
    ])
    .unwrap()
    .command
    else {
        panic!("score")
    };
    trsr::cli::score::run(a).unwrap();
    let recs: Vec<ScoreRecord> = read_jsonl(&out).unwrap();
    let cases: Vec<&str> = recs.iter().map(|r| r.case.as_str()).collect();
    assert_eq!(cases, ["c2", "c3"], "only the test split");
    let Some(Command::Score(a)) = Cli::try_parse_from([
        "trsr",
        "score",
        "--data",
        "/nonexistent/prepared",
        "--scorer",
        "random",
        "--out",
        o,
    ])
    .unwrap()
    .command
    else {
        panic!("score")
    };
    let err = format!("{:#}", trsr::cli::score::run(a).unwrap_err());
    assert!(
        err.contains("items.jsonl") && err.contains("trsr prepare"),
        "{err}"
    );
}
