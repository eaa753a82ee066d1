//! The worker's Train job on the real engine (a tiny random-weight GGUF written by the
//! test, tests/common): it streams the training events in order, writes a PEFT adapter
//! that loads back onto the model, and stops at the next example when cancelled.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use trsr::data::{Case, ItemTextTemplate};
use trsr::prompt::Templates;
use trsr::train::{TrainEvent, TrainSettings};
use trsr::worker::jobs::RecommendOptions;
use trsr::worker::{
    engine_loader, Event, JobKind, JobOutput, JobSpec, ModelSpec, TrainJob, Worker,
};

fn spec(model: &Path) -> ModelSpec {
    ModelSpec {
        model: model.display().to_string(),
        device: "cpu".into(),
        ..ModelSpec::default()
    }
}

fn wait_loaded(w: &mut Worker) -> trsr::worker::ModelSummary {
    loop {
        match w
            .recv_timeout(Duration::from_secs(60))
            .expect("no model event")
        {
            Event::ModelLoaded(m) => return m,
            Event::ModelLoading { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Collects a job's events until its terminal one; `on` sees each as it arrives.
fn collect(w: &mut Worker, job: u64, mut on: impl FnMut(&Event)) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if let Some(ev) = w.recv_timeout(Duration::from_millis(100)) {
            if ev.job() != Some(job) {
                continue;
            }
            on(&ev);
            let done = ev.is_terminal();
            out.push(ev);
            if done {
                return out;
            }
        }
    }
    panic!("job {job} did not end; got {} events", out.len());
}

fn job(data: &Path, out: &Path, settings: TrainSettings, with_val: bool) -> TrainJob {
    let prepared = trsr::data::jsonl::load_prepared(data).unwrap();
    let split = |name: &str| -> Vec<Case> {
        prepared
            .cases
            .iter()
            .filter(|c| c.split.as_deref() == Some(name))
            .cloned()
            .collect()
    };
    let mut summaries = std::collections::HashMap::new();
    summaries.insert("c1".to_string(), "Likes football and space.".to_string());
    TrainJob {
        train: split("train"),
        val: if with_val { split("val") } else { Vec::new() },
        catalogue: Arc::new(prepared.catalogue),
        text_template: ItemTextTemplate::default(),
        templates: Templates::news(),
        summaries,
        options: RecommendOptions::default(),
        settings,
        out: out.to_path_buf(),
    }
}

fn train_events(evs: &[Event]) -> Vec<&TrainEvent> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Train { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

/// A split dataset and a tiny model in a fresh folder, and a worker loading the model:
/// `(folder, data, model, adapter output, worker)`.
fn start() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    Worker,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    common::write_split_dataset(&data);
    let model = common::write_tiny_for_prompts(dir.path());
    let out = dir.path().join("adapter");
    let w = Worker::spawn(engine_loader(), Arc::new(|| {})).unwrap();
    w.load_model(spec(&model));
    (dir, data, model, out, w)
}

#[test]
fn a_train_job_streams_its_events_and_writes_an_adapter_that_loads() {
    let (_dir, data, model, out, mut w) = start();
    let base = wait_loaded(&mut w);
    let settings = TrainSettings {
        epochs: 2,
        batch_size: 2,
        grad_accum: 1,
        ks: vec![1, 3],
        ..TrainSettings::default()
    };
    let id = w.submit(JobSpec::Train(Box::new(job(&data, &out, settings, true))));
    let evs = collect(&mut w, id, |_| {});

    assert!(
        matches!(
            evs.first(),
            Some(Event::JobStarted {
                kind: JobKind::Train,
                ..
            })
        ),
        "{:?}",
        evs.first()
    );
    let report = match evs.last().unwrap() {
        Event::JobFinished {
            output: JobOutput::Train(r),
            ..
        } => r.clone(),
        other => panic!("expected the finished report, got {other:?}"),
    };
    // The report also came as its own event, just before the end.
    assert!(matches!(
        &evs[evs.len() - 2],
        Event::TrainReport { report: r, .. } if **r == *report
    ));

    let tev = train_events(&evs);
    // 4 training cases -> 8 examples (target + one negative each); 2 per step.
    match tev[0] {
        TrainEvent::Prepared {
            report,
            val_cases,
            steps_total,
            trainable,
        } => {
            assert_eq!((report.cases, report.examples), (4, 8));
            assert_eq!((report.with_summary, report.without_summary), (2, 6));
            assert_eq!(*val_cases, 2);
            assert_eq!(*steps_total, 8);
            assert!(*trainable > 0);
        }
        other => panic!("first train event: {other:?}"),
    }
    assert_eq!(tev[1], &TrainEvent::Validating { epoch: 0 });
    assert!(matches!(tev[2], TrainEvent::Validated { epoch: 0, metrics } if metrics.cases == 2));
    let examples: Vec<(usize, usize, usize)> = tev
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Example {
                epoch,
                done,
                total,
                loss,
            } => {
                assert!(loss.is_finite() && *loss > 0.0, "loss {loss}");
                Some((*epoch, *done, *total))
            }
            _ => None,
        })
        .collect();
    let want: Vec<(usize, usize, usize)> = (1..=2)
        .flat_map(|e| (1..=8).map(move |d| (e, d, 8)))
        .collect();
    assert_eq!(examples, want);
    let steps: Vec<usize> = tev
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>());
    let epochs: Vec<usize> = tev
        .iter()
        .filter_map(|e| match e {
            TrainEvent::EpochDone(r) => Some(r.epoch),
            _ => None,
        })
        .collect();
    assert_eq!(epochs, [1, 2]);
    let validated: Vec<usize> = tev
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Validated { epoch, .. } => Some(*epoch),
            _ => None,
        })
        .collect();
    assert_eq!(validated, [0, 1, 2]);

    assert_eq!(report.epochs.len(), 2);
    assert!(!report.cancelled);
    let best = report.best_epoch.expect("a best epoch");
    assert!(report.epochs[best - 1].best);
    for f in [
        "adapter_model.safetensors",
        "adapter_config.json",
        "train_log.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing in {}", out.display());
    }
    for e in ["epoch-1", "epoch-2"] {
        assert!(out
            .join("checkpoints")
            .join(e)
            .join("adapter_config.json")
            .is_file());
    }

    // The adapter loads back onto the model (what "Use this adapter" does).
    w.load_model(ModelSpec {
        adapter: Some(out.clone()),
        ..spec(&model)
    });
    let tuned = wait_loaded(&mut w);
    assert_ne!(tuned.identity.sha256, base.identity.sha256);
    assert!(tuned.identity.name.contains('+'), "{}", tuned.identity.name);
}

#[test]
fn cancelling_a_train_job_stops_it_and_keeps_the_current_weights() {
    let (_dir, data, _model, out, mut w) = start();
    wait_loaded(&mut w);
    // Far more work than the test waits for: it must be cut short.
    let epochs = 10_000;
    let settings = TrainSettings {
        epochs,
        batch_size: 1,
        grad_accum: 1,
        validate_before: false,
        ..TrainSettings::default()
    };
    let id = w.submit(JobSpec::Train(Box::new(job(&data, &out, settings, false))));
    let mut cancelled = false;
    let mut examples = 0usize;
    let evs = {
        let w2 = &mut w;
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            assert!(Instant::now() < deadline, "the job did not end");
            let Some(ev) = w2.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            if ev.job() != Some(id) {
                continue;
            }
            if matches!(
                ev,
                Event::Train {
                    event: TrainEvent::Example { .. },
                    ..
                }
            ) {
                examples += 1;
                if !cancelled {
                    w2.cancel(id);
                    cancelled = true;
                }
            }
            let done = ev.is_terminal();
            seen.push(ev);
            if done {
                break seen;
            }
        }
    };
    assert!(
        matches!(evs.last(), Some(Event::JobCancelled { .. })),
        "{:?}",
        evs.last()
    );
    assert!(
        examples >= 1 && examples < epochs * 8,
        "{examples} examples"
    );
    let report = evs
        .iter()
        .find_map(|e| match e {
            Event::TrainReport { report, .. } => Some(report.clone()),
            _ => None,
        })
        .expect("the report of the cancelled run");
    assert!(report.cancelled);
    assert!(report.epochs.len() < epochs);
    let interrupted = out.join("checkpoints").join("interrupted");
    assert!(
        interrupted.join("adapter_model.safetensors").is_file(),
        "no weights in {}",
        interrupted.display()
    );
    // The worker carries on: the next job runs.
    let next = w.submit(JobSpec::CountTokens(vec!["yes".into()]));
    let evs = collect(&mut w, next, |_| {});
    assert!(matches!(evs.last(), Some(Event::JobFinished { .. })));
}
