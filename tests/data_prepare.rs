//! `prepare`: filters, negatives, splits, determinism, and `trsr prepare` end to end.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use trsr::data::prepare::{prepare, write_prepared, LongHistory, NegativeSource, PrepareOptions};
use trsr::data::{
    load_dir, Catalogue, Dataset, Format, FormatChoice, Item, ItemId, LoadOptions, LoadReport,
    Sequence,
};

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data")
        .join(name)
}

fn load(dir: &Path) -> Dataset {
    load_dir(dir, FormatChoice::Auto, &LoadOptions::default()).unwrap()
}

fn synthetic(n_items: usize, seqs: Vec<Vec<&str>>) -> Dataset {
    let mut catalogue = Catalogue::new();
    for i in 0..n_items {
        catalogue.insert(Item {
            id: format!("i{i}"),
            fields: vec![("title".into(), format!("Item {i}"))],
        });
    }
    Dataset {
        format: Format::Jsonl,
        catalogue,
        sequences: seqs
            .into_iter()
            .enumerate()
            .map(|(u, items)| Sequence {
                user: format!("u{u}"),
                items: items.into_iter().map(ItemId::from).collect(),
                ..Sequence::default()
            })
            .collect(),
        report: LoadReport::default(),
        prepared_cases: None,
    }
}

fn trsr(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trsr"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn paper_defaults_per_format() {
    let m = PrepareOptions::for_format(Format::Mind);
    assert_eq!(
        (m.min_history, m.max_history, m.negatives, m.seed),
        (10, 25, 20, 42)
    );
    assert_eq!(m.long_history, LongHistory::Drop);
    let a = PrepareOptions::for_format(Format::AmazonM2);
    assert_eq!((a.min_history, a.max_history), (10, 25));
    assert!(!a.reference_sampling);
    assert_eq!(a.negative_source, NegativeSource::Catalog);
}

#[test]
fn mind_sample_cases_last_click_is_target() {
    let ds = load(&sample("mind"));
    let (cases, report) = prepare(&ds, &PrepareOptions::for_format(Format::Mind)).unwrap();
    assert_eq!(report.users_read, ds.sequences.len() as u64);
    assert_eq!(report.cases_kept, cases.len() as u64);
    assert_eq!(cases.len(), ds.sequences.len(), "{:?}", report.dropped);
    for (c, s) in cases.iter().zip(&ds.sequences) {
        assert_eq!(&c.target, s.items.last().unwrap());
        assert_eq!(c.history, s.items[..s.items.len() - 1]);
        assert!((10..=25).contains(&c.history.len()));
    }
}

#[test]
fn catalogue_negatives_are_distinct_and_exclude_target_and_history() {
    let ds = load(&sample("amazon-m2"));
    let (cases, report) = prepare(&ds, &PrepareOptions::for_format(Format::AmazonM2)).unwrap();
    assert!(!cases.is_empty());
    for c in &cases {
        let negs: HashSet<&String> = c.negatives.iter().collect();
        assert_eq!(negs.len(), 20);
        assert!(!negs.contains(&c.target));
        assert!(c.history.iter().all(|h| !negs.contains(h)));
        assert!(c.negatives.iter().all(|n| ds.catalogue.contains(n)));
        assert_eq!(
            Some(c.target.as_str()),
            ds.sequences
                .iter()
                .find(|s| s.user == c.user)
                .unwrap()
                .next_item
                .as_deref()
        );
    }
    assert_eq!(report.negatives_total, 20 * cases.len() as u64);
    assert_eq!(report.negatives_colliding_with_target, 0);
    assert_eq!(report.negatives_colliding_with_history, 0);
}

#[test]
fn reference_sampling_allows_and_reports_collisions() {
    // 30 items, histories of 12: uniform draws over all items hit the history often.
    let seqs: Vec<Vec<&str>> = (0..20)
        .map(|_| {
            vec![
                "i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9", "i10", "i11", "i12",
            ]
        })
        .collect();
    let ds = synthetic(30, seqs);
    let opts = PrepareOptions {
        min_history: 10,
        reference_sampling: true,
        ..PrepareOptions::default()
    };
    let (cases, report) = prepare(&ds, &opts).unwrap();
    let mut with_target = 0;
    let mut with_history = 0;
    for c in &cases {
        with_target += c.negatives.iter().filter(|n| **n == c.target).count() as u64;
        with_history += c.negatives.iter().filter(|n| c.history.contains(n)).count() as u64;
    }
    assert!(with_history > 0 && with_target > 0);
    assert_eq!(report.negatives_colliding_with_target, with_target);
    assert_eq!(report.negatives_colliding_with_history, with_history);

    let strict = PrepareOptions {
        reference_sampling: false,
        ..opts
    };
    let (cases, report) = prepare(&ds, &strict).unwrap();
    assert_eq!(
        report.negatives_colliding_with_history + report.negatives_colliding_with_target,
        0
    );
    // 30 items minus 13 excluded leaves 17 < 20 negatives: reported.
    assert_eq!(report.cases_short_of_negatives, cases.len() as u64);
    assert!(cases.iter().all(|c| c.negatives.len() == 17));
}

#[test]
fn impression_negatives_come_from_shown_not_clicked() {
    let ds = load(&sample("mind"));
    let opts = PrepareOptions {
        negative_source: NegativeSource::Impressions,
        negatives: 5,
        ..PrepareOptions::for_format(Format::Mind)
    };
    let (cases, _) = prepare(&ds, &opts).unwrap();
    for c in &cases {
        let seq = ds.sequences.iter().find(|s| s.user == c.user).unwrap();
        assert!(c
            .negatives
            .iter()
            .all(|n| seq.shown_not_clicked.iter().any(|s| s == n)));
        assert_eq!(c.negatives.len(), 5.min(seq.shown_not_clicked.len()));
    }
    // A format without impressions says so.
    let ds = load(&sample("recbole"));
    let err = prepare(&ds, &opts).unwrap_err().to_string();
    assert!(err.contains("--negative-source catalog"), "{err}");
}

#[test]
fn length_filters_drop_with_reasons_or_keep_recent() {
    let long: Vec<&str> = (0..30).map(|_| "i1").collect();
    let ds = synthetic(
        50,
        vec![vec!["i1", "i2"], long.clone(), vec![], vec!["i3"; 12]],
    );
    let opts = PrepareOptions {
        min_history: 10,
        max_history: 25,
        long_history: LongHistory::Drop,
        ..PrepareOptions::default()
    };
    let (cases, report) = prepare(&ds, &opts).unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(report.users_read, 4);
    assert_eq!(report.dropped["history shorter than 10 items"], 1);
    assert_eq!(report.dropped["history longer than 25 items"], 1);
    assert_eq!(report.dropped["empty sequence"], 1);
    let keep = PrepareOptions {
        long_history: LongHistory::KeepRecent,
        ..opts
    };
    let (cases, report) = prepare(&ds, &keep).unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!(report.truncated, 1);
    assert_eq!(cases[0].history.len(), 25);
}

#[test]
fn same_seed_same_bytes_other_seed_other_negatives() {
    let ds = load(&sample("mind"));
    let write = |seed: u64| {
        let opts = PrepareOptions {
            seed,
            split: Some(vec![("train".into(), 0.5), ("test".into(), 0.5)]),
            ..PrepareOptions::for_format(Format::Mind)
        };
        let (cases, _) = prepare(&ds, &opts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_prepared(dir.path(), &ds.catalogue, &cases).unwrap();
        let bytes = (
            std::fs::read(dir.path().join("items.jsonl")).unwrap(),
            std::fs::read(dir.path().join("cases.jsonl")).unwrap(),
        );
        assert!(!dir.path().join("cases.jsonl.tmp").exists());
        bytes
    };
    let a = write(42);
    let b = write(42);
    let c = write(7);
    assert_eq!(a, b);
    assert_eq!(a.0, c.0, "items do not depend on the seed");
    assert_ne!(a.1, c.1);
    let items = String::from_utf8(a.0).unwrap();
    assert_eq!(items.lines().count(), ds.catalogue.len());
    let first = ds.catalogue.items()[0].id.clone();
    assert!(items.starts_with(&format!("{{\"id\":\"{first}\",\"category\":")));
}

#[test]
fn prepared_jsonl_cases_are_kept_as_they_are() {
    let ds = load(&sample("jsonl"));
    let opts = PrepareOptions {
        negatives: 3,
        seed: 1,
        ..PrepareOptions::default()
    };
    let (cases, report) = prepare(&ds, &opts).unwrap();
    assert!(report.kept_as_prepared);
    assert_eq!(&cases, ds.prepared_cases.as_ref().unwrap());
}

#[test]
fn cli_prepare_each_sample_end_to_end_and_byte_identical() {
    for (name, format) in [
        ("mind", "mind"),
        ("amazon-m2", "amazon-m2"),
        ("recbole", "recbole"),
        ("jsonl", "jsonl"),
    ] {
        let input = sample(name);
        let out1 = tempfile::tempdir().unwrap();
        let out2 = tempfile::tempdir().unwrap();
        let run = |out: &Path| {
            trsr(&[
                "prepare",
                "--input",
                input.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
        };
        let (ok, stdout, stderr) = run(out1.path());
        assert!(ok, "{name}: {stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("format: {format} (detected")),
            "{stdout}"
        );
        assert!(stdout.contains("users read"), "{stdout}");
        assert!(stdout.contains("colliding with the target"), "{stdout}");
        let (ok, _, _) = run(out2.path());
        assert!(ok);
        for f in ["items.jsonl", "cases.jsonl"] {
            let a = std::fs::read(out1.path().join(f)).unwrap();
            let b = std::fs::read(out2.path().join(f)).unwrap();
            assert!(!a.is_empty());
            assert_eq!(a, b, "{name}/{f} differs between runs");
        }
        let prepared = trsr::data::jsonl::load_prepared(out1.path()).unwrap();
        assert!(
            (30..=60).contains(&prepared.cases.len()),
            "{name}: {}",
            prepared.cases.len()
        );
    }
}

#[test]
fn cli_prepare_flags() {
    let out = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = trsr(&[
        "prepare",
        "--input",
        sample("mind").to_str().unwrap(),
        "--format",
        "mind",
        "--out",
        out.path().to_str().unwrap(),
        "--min-history",
        "15",
        "--max-history",
        "20",
        "--negatives",
        "5",
        "--seed",
        "3",
        "--negative-source",
        "impressions",
        "--reference-sampling",
        "--split",
        "train=0.8,val=0.1,test=0.1",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("format: mind (as given)"), "{stdout}");
    assert!(stdout.contains("splits: "), "{stdout}");
    let prepared = trsr::data::jsonl::load_prepared(out.path()).unwrap();
    for c in &prepared.cases {
        assert!((15..=20).contains(&c.history.len()));
        assert!(c.negatives.len() <= 5);
        assert!(c.split.is_some());
    }
    let (ok, _, stderr) = trsr(&[
        "prepare",
        "--input",
        sample("mind").to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--split",
        "train=0.8,test=0.1",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("--split") && stderr.contains("sum"),
        "{stderr}"
    );
}
