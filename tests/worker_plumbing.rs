//! The worker's plumbing with a fake model: event order, batching, cancel, shutdown,
//! back-pressure. (No model feature is claimed here; the real model is exercised in
//! tests/app_kittest.rs.)

mod common;

use common::scripted::{Chat, Scripted};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use trsr::data::{Case, Catalogue, Item, ItemTextTemplate};
use trsr::lm::SamplingParams;
use trsr::prompt::Templates;
use trsr::segment::BlockParams;
use trsr::worker::jobs::{BatchJob, Method, RecommendOptions, ScoreJob, SummarizeJob};
use trsr::worker::{Event, JobOutput, JobSpec, Loader, ModelSpec, StepKind, Wake, Worker};

/// Emits `tokens` tokens `t0 t1 ...`, sleeping `per_token` each, checking cancel per
/// token; scores `1 / (1 + suffix length)`; `missing` fails to load.
fn fake_loader(tokens: usize, per_token: Duration) -> Loader {
    Scripted::counting("fake", tokens, per_token)
        .with_chat(Chat::Tagged)
        .with_logprob(-0.5)
        .with_score(|_, s, _, _| 1.0 / (1.0 + s.len() as f32))
        .loader()
}

fn counting_wake() -> (Wake, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    (
        Arc::new(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        }),
        n,
    )
}

fn data() -> (Case, Arc<Catalogue>) {
    let mut cat = Catalogue::new();
    for i in 0..13 {
        cat.insert(Item {
            id: format!("N{i}"),
            fields: vec![("title".into(), format!("news story number {i}"))],
        });
    }
    let case = Case {
        case: "c1".into(),
        user: "U1".into(),
        history: (0..10).map(|i| format!("N{i}")).collect(),
        target: "N10".into(),
        negatives: vec!["N11".into(), "N12".into()],
        split: None,
    };
    (case, Arc::new(cat))
}

fn summarize_job(method: Method) -> JobSpec {
    let (case, catalogue) = data();
    JobSpec::Summarize(Box::new(SummarizeJob {
        case,
        catalogue,
        text_template: ItemTextTemplate::default(),
        block_params: BlockParams::ByCount {
            size: 5,
            max_blocks: 5,
        },
        method,
        sampling: SamplingParams::default(),
        templates: Templates::news(),
        resume: None,
        cache: None,
    }))
}

fn wait_loaded(w: &mut Worker) {
    loop {
        match w
            .recv_timeout(Duration::from_secs(60))
            .expect("no model event")
        {
            Event::ModelLoaded(_) => return,
            Event::ModelLoading { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Collects a job's events until its terminal one.
fn collect(w: &mut Worker, job: u64) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(ev) = w.recv_timeout(Duration::from_millis(100)) {
            let done = ev.job() == Some(job) && ev.is_terminal();
            if ev.job() == Some(job) {
                out.push(ev);
            }
            if done {
                return out;
            }
        }
    }
    panic!("job {job} did not end; got {} events", out.len());
}

#[test]
fn hierarchical_summary_events_arrive_in_order_and_tokens_add_up() {
    let (wake, wakes) = counting_wake();
    let mut w = Worker::spawn(fake_loader(8, Duration::ZERO), wake).unwrap();
    w.load_model(ModelSpec::default());
    wait_loaded(&mut w);
    let job = w.submit(summarize_job(Method::Hierarchical));
    let evs = collect(&mut w, job);
    assert!(
        matches!(evs[0], Event::JobStarted { .. }),
        "first: {:?}",
        evs[0]
    );
    // 10 items in blocks of 5: two block steps, then one merge.
    let mut kinds = Vec::new();
    let mut current: Option<usize> = None;
    let mut streamed = vec![String::new(); 3];
    for ev in &evs {
        match ev {
            Event::StepStarted { step, kind, .. } => {
                assert_eq!(current, None, "step started before the previous finished");
                current = Some(*step);
                kinds.push(*kind);
            }
            Event::Tokens { step, deltas, .. } => {
                assert_eq!(Some(*step), current, "tokens outside their step");
                for d in deltas {
                    streamed[*step].push_str(&d.text);
                }
            }
            Event::StepFinished { step, output, .. } => {
                assert_eq!(Some(*step), current);
                assert_eq!(streamed[*step].trim(), output);
                current = None;
            }
            _ => {}
        }
    }
    assert_eq!(
        kinds,
        vec![StepKind::Block, StepKind::Block, StepKind::Merge]
    );
    match evs.last().unwrap() {
        Event::JobFinished {
            output: JobOutput::Summary(s),
            ..
        } => {
            assert_eq!(s.steps.len(), 3);
            assert_eq!(s.blocks.len(), 2);
            assert!(s.steps[2].prompt.contains(&s.steps[0].output));
            assert_eq!(s.final_summary, s.steps[2].output);
        }
        other => panic!("last event: {other:?}"),
    }
    assert!(wakes.load(Ordering::SeqCst) > 0, "the UI was never woken");
}

#[test]
fn recurrent_summary_chains_updates() {
    let (wake, _) = counting_wake();
    let mut w = Worker::spawn(fake_loader(4, Duration::ZERO), wake).unwrap();
    w.load_model(ModelSpec::default());
    wait_loaded(&mut w);
    let job = w.submit(summarize_job(Method::Recurrent));
    let evs = collect(&mut w, job);
    let kinds: Vec<StepKind> = evs
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, vec![StepKind::Block, StepKind::Update]);
    let Event::JobFinished {
        output: JobOutput::Summary(s),
        ..
    } = evs.last().unwrap()
    else {
        panic!("not finished: {:?}", evs.last())
    };
    assert!(
        s.steps[1].prompt.contains(&s.steps[0].output),
        "update prompt lacks the previous summary"
    );
}

#[test]
fn token_deltas_are_batched_not_one_event_per_token() {
    let (wake, _) = counting_wake();
    // 400 tokens at 0.2 ms: ~80 ms per step, so a 16 ms flush gives a handful of batches.
    let mut w = Worker::spawn(fake_loader(400, Duration::from_micros(200)), wake).unwrap();
    w.load_model(ModelSpec::default());
    wait_loaded(&mut w);
    let job = w.submit(summarize_job(Method::Recurrent));
    let evs = collect(&mut w, job);
    let batches = evs
        .iter()
        .filter(|e| matches!(e, Event::Tokens { .. }))
        .count();
    let tokens: usize = evs
        .iter()
        .map(|e| match e {
            Event::Tokens { deltas, .. } => deltas.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(tokens, 800);
    assert!(
        batches < tokens / 4,
        "{batches} batches for {tokens} tokens"
    );
    assert!(batches >= 2);
}

#[test]
fn cancel_stops_a_running_job_within_a_few_tokens() {
    let (wake, _) = counting_wake();
    let mut w = Worker::spawn(fake_loader(100_000, Duration::from_millis(1)), wake).unwrap();
    w.load_model(ModelSpec::default());
    wait_loaded(&mut w);
    let job = w.submit(summarize_job(Method::Hierarchical));
    // Wait for streaming to start.
    loop {
        let ev = w.recv_timeout(Duration::from_secs(60)).expect("no tokens");
        if matches!(ev, Event::Tokens { .. }) {
            break;
        }
    }
    let t = Instant::now();
    w.cancel(job);
    let evs = collect(&mut w, job);
    assert!(
        matches!(evs.last(), Some(Event::JobCancelled { .. })),
        "{:?}",
        evs.last()
    );
    assert!(!evs.iter().any(|e| matches!(e, Event::JobFinished { .. })));
    println!("cancelled in {:?}", t.elapsed());
    assert_eq!(w.open_jobs(), 0);
}

#[test]
fn cancelling_a_queued_job_skips_it_and_the_next_one_runs() {
    let (wake, _) = counting_wake();
    let mut w = Worker::spawn(fake_loader(50, Duration::from_millis(2)), wake).unwrap();
    w.load_model(ModelSpec::default());
    wait_loaded(&mut w);
    let a = w.submit(summarize_job(Method::Recurrent));
    let b = w.submit(summarize_job(Method::Recurrent));
    let c = w.submit(summarize_job(Method::Recurrent));
    w.cancel(b);
    let mut started = Vec::new();
    let mut ended = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while ended.len() < 3 && Instant::now() < deadline {
        if let Some(ev) = w.recv_timeout(Duration::from_millis(100)) {
            match ev {
                Event::JobStarted { job, .. } => started.push(job),
                Event::JobFinished { job, .. } => ended.push((job, "finished")),
                Event::JobCancelled { job } => ended.push((job, "cancelled")),
                Event::JobFailed { job, error } => panic!("job {job} failed: {error}"),
                _ => {}
            }
        }
    }
    assert_eq!(started, vec![a, c], "the cancelled job must not start");
    assert!(ended.contains(&(b, "cancelled")));
    assert!(ended.contains(&(a, "finished")));
    assert!(ended.contains(&(c, "finished")));
}

#[test]
fn shutdown_does_not_deadlock_when_the_ui_never_drains() {
    let (wake, _) = counting_wake();
    // Many tokens with no sleep: the bounded channel fills while nobody reads.
    let mut w = Worker::spawn(fake_loader(1_000_000, Duration::ZERO), wake).unwrap();
    w.load_model(ModelSpec::default());
    for _ in 0..4 {
        w.submit(summarize_job(Method::Hierarchical));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(w);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("dropping the worker hung");
}

#[test]
fn a_slow_ui_gets_every_token_in_order() {
    let (wake, _) = counting_wake();
    let mut w = Worker::spawn(fake_loader(3000, Duration::ZERO), wake).unwrap();
    w.load_model(ModelSpec::default());
    wait_loaded(&mut w);
    let job = w.submit(summarize_job(Method::Recurrent));
    let mut next = [0usize; 2];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "timed out");
        // A slow frame, then a budgeted drain as the UI does.
        std::thread::sleep(Duration::from_millis(5));
        let mut done = false;
        for ev in w.drain(Duration::from_millis(10)) {
            match ev {
                Event::Tokens { step, deltas, .. } => {
                    for d in deltas {
                        assert_eq!(d.token as usize, next[step], "step {step} out of order");
                        next[step] += 1;
                    }
                }
                Event::JobFinished { job: j, .. } if j == job => done = true,
                e if e.is_terminal() => panic!("{e:?}"),
                _ => {}
            }
        }
        if done {
            break;
        }
    }
    assert_eq!(next, [3000, 3000]);
}

#[test]
fn jobs_without_a_model_fail_with_a_message_and_load_errors_are_reported() {
    let (wake, _) = counting_wake();
    let mut w = Worker::spawn(fake_loader(1, Duration::ZERO), wake).unwrap();
    let job = w.submit(summarize_job(Method::Hierarchical));
    let evs = collect(&mut w, job);
    match evs.last().unwrap() {
        Event::JobFailed { error, .. } => assert!(error.contains("no model is loaded"), "{error}"),
        other => panic!("{other:?}"),
    }
    w.load_model(ModelSpec {
        model: "missing".into(),
        ..ModelSpec::default()
    });
    loop {
        match w.recv_timeout(Duration::from_secs(60)).expect("no event") {
            Event::ModelLoading { .. } => {}
            Event::ModelFailed { error, .. } => {
                assert!(error.contains("not found"), "{error}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn scoring_sends_scores_with_the_target_labelled() {
    let (wake, _) = counting_wake();
    let mut w = Worker::spawn(fake_loader(1, Duration::ZERO), wake).unwrap();
    w.load_model(ModelSpec::default());
    wait_loaded(&mut w);
    let (case, catalogue) = data();
    let job = w.submit(JobSpec::Score(Box::new(ScoreJob {
        case,
        catalogue,
        text_template: ItemTextTemplate::default(),
        templates: Templates::news(),
        summary: Some("likes news".into()),
        options: RecommendOptions::default(),
    })));
    let evs = collect(&mut w, job);
    let rec = evs
        .iter()
        .find_map(|e| match e {
            Event::ScoresReady { record, prompt, .. } => {
                assert!(prompt.contains("likes news"), "summary missing from prompt");
                assert!(
                    prompt.contains("news story number 9"),
                    "recent items missing from prompt"
                );
                Some(record.clone())
            }
            _ => None,
        })
        .expect("no scores");
    assert_eq!(rec.candidates.len(), 3);
    assert_eq!(rec.candidates[0].id, "N10");
    assert_eq!(rec.candidates[0].label, 1);
    assert!(rec.candidates[1..].iter().all(|c| c.label == 0));
}

#[test]
fn a_cancelled_evaluation_keeps_the_cases_it_finished() {
    let (wake, _) = counting_wake();
    // ~90 ms a case: 3 candidates at 30 ms.
    let loader = Scripted::counting("fake", 1, Duration::ZERO)
        .with_chat(Chat::Tagged)
        .with_score(|_, s, _, _| {
            std::thread::sleep(Duration::from_millis(30));
            1.0 / (1.0 + s.len() as f32)
        })
        .loader();
    let mut w = Worker::spawn(loader, wake).unwrap();
    w.load_model(ModelSpec::default());
    wait_loaded(&mut w);
    let (case, catalogue) = data();
    let cases: Vec<Case> = (0..20)
        .map(|i| Case {
            case: format!("c{i}"),
            ..case.clone()
        })
        .collect();
    let job = w.submit(JobSpec::BatchEvaluate(Box::new(BatchJob {
        cases,
        catalogue,
        text_template: ItemTextTemplate::default(),
        block_params: BlockParams::ByCount {
            size: 5,
            max_blocks: 5,
        },
        method: Method::Hierarchical,
        sampling: SamplingParams::default(),
        templates: Templates::news(),
        summarize: false,
        cache: None,
        options: RecommendOptions {
            use_summary: false,
            ..RecommendOptions::default()
        },
    })));
    // Cancel once three cases are done.
    loop {
        match w
            .recv_timeout(Duration::from_secs(60))
            .expect("no progress")
        {
            Event::Progress { done, .. } if done >= 3 => break,
            _ => {}
        }
    }
    w.cancel(job);
    let evs = collect(&mut w, job);
    match evs.last() {
        Some(Event::JobFinished {
            output: JobOutput::Batch { records, .. },
            ..
        }) => {
            assert!(
                (3..20).contains(&records.len()),
                "{} records kept",
                records.len()
            );
            let ids: Vec<&str> = records.iter().map(|r| r.case.as_str()).collect();
            assert_eq!(ids[..3], ["c0", "c1", "c2"]);
        }
        other => panic!("expected the finished cases, got {other:?}"),
    }
    assert_eq!(w.open_jobs(), 0);
}

#[test]
fn a_failed_or_panicking_gpu_load_leaves_the_worker_usable_for_a_cpu_load() {
    let (wake, _) = counting_wake();
    let mut inner = fake_loader(1, Duration::ZERO);
    let loader: Loader = Box::new(move |spec: &ModelSpec| match spec.device.as_str() {
        "cuda:0" => panic!("DriverError(CUDA_ERROR_OUT_OF_MEMORY) in a driver call"),
        "cuda:1" => anyhow::bail!("out of GPU memory loading x.gguf"),
        _ => inner(spec),
    });
    let mut w = Worker::spawn(loader, wake).unwrap();
    for (device, want) in [
        ("cuda:0", "panicked: DriverError(CUDA_ERROR_OUT_OF_MEMORY)"),
        ("cuda:1", "out of GPU memory"),
    ] {
        w.load_model(ModelSpec {
            device: device.into(),
            ..ModelSpec::default()
        });
        loop {
            match w.recv_timeout(Duration::from_secs(60)).expect("no event") {
                Event::ModelLoading { .. } => {}
                Event::ModelFailed { error, .. } => {
                    assert!(error.contains(want), "{error}");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // The worker is still there: the model loads on the CPU and runs a job.
    w.load_model(ModelSpec {
        device: "cpu".into(),
        ..ModelSpec::default()
    });
    wait_loaded(&mut w);
    let job = w.submit(summarize_job(Method::Hierarchical));
    let evs = collect(&mut w, job);
    assert!(
        matches!(evs.last(), Some(Event::JobFinished { .. })),
        "{:?}",
        evs.last()
    );
}
