//! Loaders on the project's sample_data and on the real samples in ../shared/data.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use trsr::data::{detect_format, load_dir, Dataset, Format, FormatChoice, LoadOptions};

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data")
        .join(name)
}

fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        println!(
            "note: {} is absent; skipping this real-data check",
            p.display()
        );
        None
    }
}

fn load(dir: &Path) -> Dataset {
    load_dir(dir, FormatChoice::Auto, &LoadOptions::default()).unwrap()
}

/// Every sequence id resolves in the catalogue.
fn assert_resolved(ds: &Dataset) {
    for s in &ds.sequences {
        for id in s
            .items
            .iter()
            .chain(&s.shown_not_clicked)
            .chain(&s.next_item)
        {
            assert!(ds.catalogue.contains(id), "{id} of {} unresolved", s.user);
        }
    }
}

#[test]
fn detects_each_sample_folder() {
    assert_eq!(detect_format(&sample("mind")).unwrap(), Format::Mind);
    assert_eq!(
        detect_format(&sample("amazon-m2")).unwrap(),
        Format::AmazonM2
    );
    assert_eq!(detect_format(&sample("recbole")).unwrap(), Format::RecBole);
    assert_eq!(detect_format(&sample("jsonl")).unwrap(), Format::Jsonl);
}

#[test]
fn mind_sample_keeps_first_impression_per_user() {
    let ds = load(&sample("mind"));
    assert_eq!(ds.format, Format::Mind);
    assert!((100..=300).contains(&ds.catalogue.len()));
    assert!((30..=60).contains(&ds.sequences.len()));
    assert_eq!(ds.report.unresolved_ids, 0);
    assert_resolved(&ds);
    let users: HashSet<&str> = ds.sequences.iter().map(|s| s.user.as_str()).collect();
    assert_eq!(users.len(), ds.sequences.len(), "one sequence per user");
    for s in &ds.sequences {
        assert!(
            (11..=26).contains(&s.items.len()),
            "{}: {}",
            s.user,
            s.items.len()
        );
        assert!(!s.shown_not_clicked.is_empty());
    }
    // Users with several impression rows: the kept row is the earliest one.
    let text = std::fs::read_to_string(sample("mind/behaviors.tsv")).unwrap();
    let mut earliest: std::collections::HashMap<&str, (i64, Vec<&str>)> = Default::default();
    for line in text.lines() {
        let c: Vec<&str> = line.split('\t').collect();
        let t = trsr::data::mind::parse_time(c[2].as_bytes()).unwrap();
        let shown: Vec<&str> = c[4]
            .split(' ')
            .filter_map(|t| t.strip_suffix("-0"))
            .collect();
        let e = earliest.entry(c[1]).or_insert((t, shown.clone()));
        if t < e.0 {
            *e = (t, shown);
        }
    }
    let later = text.lines().count() - earliest.len();
    assert!(later > 0, "the sample has users with several rows");
    for s in &ds.sequences {
        assert_eq!(
            s.shown_not_clicked,
            earliest[s.user.as_str()].1,
            "{}",
            s.user
        );
    }
    let skipped_later: u64 = ds
        .report
        .skipped
        .iter()
        .filter(|(k, _)| k.contains("later impression"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(skipped_later, later as u64);
}

#[test]
fn mind_items_have_text_fields() {
    let ds = load(&sample("mind"));
    let item = &ds.catalogue.items()[0];
    assert!(item.field("title").is_some_and(|t| t.len() > 10));
    let text = Format::Mind.default_text_template().render(item);
    assert!(
        text.starts_with(&format!("id: {}; category: ", item.id)),
        "{text}"
    );
    assert!(text.contains("; title: "), "{text}");
    assert!(!text.contains("abstract"), "{text}");
}

#[test]
fn amazon_sample_filters_locale_and_parses_wrapped_lists() {
    let ds = load(&sample("amazon-m2"));
    assert_eq!(ds.format, Format::AmazonM2);
    assert_resolved(&ds);
    assert!((30..=60).contains(&ds.sequences.len()));
    let filtered: u64 = ds
        .report
        .skipped
        .iter()
        .filter(|(k, _)| k.contains("locale is not UK"))
        .map(|(_, v)| v)
        .sum();
    assert!(filtered > 0, "{:?}", ds.report.skipped);
    for s in &ds.sequences {
        assert!((10..=25).contains(&s.items.len()));
        assert!(s.next_item.is_some());
    }
    // The sample's lists wrap over lines inside quotes, as numpy prints them.
    let raw = std::fs::read_to_string(sample("amazon-m2/sessions_train.csv")).unwrap();
    assert!(raw.contains("'\n '"));
    let item = ds.catalogue.get(&ds.sequences[0].items[0]).unwrap();
    let text = Format::AmazonM2.default_text_template().render(item);
    assert!(
        text.contains("; title: ") && text.contains("; description: "),
        "{text}"
    );
    // The German rows of the products file are filtered too.
    assert!(ds.catalogue.items().len() < 200);
}

#[test]
fn amazon_all_locales_when_no_filter() {
    let opts = LoadOptions {
        locale: None,
        ..LoadOptions::default()
    };
    let uk = load(&sample("amazon-m2"));
    let all = load_dir(&sample("amazon-m2"), FormatChoice::AmazonM2, &opts).unwrap();
    assert!(all.sequences.len() > uk.sequences.len());
}

#[test]
fn recbole_sample_orders_by_timestamp() {
    let ds = load(&sample("recbole"));
    assert_eq!(ds.format, Format::RecBole);
    assert_resolved(&ds);
    assert!((30..=60).contains(&ds.sequences.len()));
    // Rebuild user 1's order from the file and compare.
    let text = std::fs::read_to_string(sample("recbole/sample.inter")).unwrap();
    let mut rows: Vec<(f64, String)> = text
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|c| c[0] == "1")
        .map(|c| (c[3].parse().unwrap(), c[1].to_string()))
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let want: Vec<String> = rows.into_iter().map(|r| r.1).collect();
    let got = &ds.sequences.iter().find(|s| s.user == "1").unwrap().items;
    assert_eq!(got, &want);
    let item = ds.catalogue.get("1").unwrap();
    assert!(item.field("title").is_some() && item.field("categories").is_some());
}

#[test]
fn jsonl_sample_keeps_prepared_cases() {
    let ds = load(&sample("jsonl"));
    assert_eq!(ds.format, Format::Jsonl);
    let cases = ds.prepared_cases.as_ref().unwrap();
    assert!((30..=60).contains(&cases.len()));
    assert_eq!(ds.report.unresolved_ids, 0);
    for c in cases {
        assert_eq!(c.negatives.len(), 20);
    }
}

#[test]
fn jsonl_sequences_folder_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("items.jsonl"),
        "{\"id\":\"a\",\"title\":\"A\"}\n{\"id\":\"b\",\"title\":\"B\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sequences.jsonl"),
        "{\"user\":\"u1\",\"items\":[\"a\",\"zz\",\"b\"]}\n{\"user\":\"u2\",\"items\":[\"zz\"]}\n",
    )
    .unwrap();
    let ds = load(dir.path());
    assert_eq!(ds.sequences.len(), 1);
    assert_eq!(ds.sequences[0].items, vec!["a", "b"]);
    assert_eq!(ds.report.unresolved_ids, 2);
    assert_eq!(ds.report.skipped_total(), 1);
    assert!(
        ds.report.examples[0].contains("`zz`"),
        "{:?}",
        ds.report.examples
    );
}

#[test]
fn progress_reaches_total_and_cancel_stops() {
    let seen = Mutex::new(Vec::new());
    let progress = |done: u64, total: u64| seen.lock().unwrap().push((done, total));
    let opts = LoadOptions {
        progress: Some(&progress),
        ..LoadOptions::default()
    };
    load_dir(&sample("mind"), FormatChoice::Auto, &opts).unwrap();
    let seen = seen.into_inner().unwrap();
    // news.tsv once, behaviors.tsv twice (two passes).
    let total = std::fs::metadata(sample("mind/news.tsv")).unwrap().len()
        + 2 * std::fs::metadata(sample("mind/behaviors.tsv"))
            .unwrap()
            .len();
    assert_eq!(seen.last().copied(), Some((total, total)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0));

    let cancel = trsr::lm::CancelToken::new();
    cancel.cancel();
    let opts = LoadOptions {
        cancel: Some(cancel),
        ..LoadOptions::default()
    };
    let err = load_dir(&sample("mind"), FormatChoice::Auto, &opts).unwrap_err();
    assert!(matches!(err, trsr::data::DataError::Cancelled), "{err}");
}

#[test]
fn progress_stays_in_order_while_news_and_behaviors_are_read_side_by_side() {
    // Files of several megabytes, so that both readers report while the other reads.
    let dir = tempfile::tempdir().unwrap();
    let mut news = String::new();
    for i in 0..20_000 {
        news.push_str(&format!(
            "N{i}\tnews\tworld\tTitle {i} {}\tAbstract\turl\t[]\t[]\n",
            "word ".repeat(10)
        ));
    }
    let mut behaviors = String::new();
    for i in 0..20_000 {
        let history: Vec<String> = (0..20)
            .map(|k| format!("N{}", (i * 7 + k) % 20_000))
            .collect();
        behaviors.push_str(&format!(
            "{i}\tU{}\t11/{}/2019 1:00:00 PM\t{}\tN{}-0 N{}-1\n",
            i % 5_000,
            11 + i % 3,
            history.join(" "),
            i % 20_000,
            (i + 1) % 20_000
        ));
    }
    std::fs::write(dir.path().join("news.tsv"), &news).unwrap();
    std::fs::write(dir.path().join("behaviors.tsv"), &behaviors).unwrap();
    let seen = Mutex::new(Vec::new());
    let progress = |done: u64, total: u64| seen.lock().unwrap().push((done, total));
    let opts = LoadOptions {
        progress: Some(&progress),
        ..LoadOptions::default()
    };
    let ds = load_dir(dir.path(), FormatChoice::Mind, &opts).unwrap();
    assert_eq!(ds.sequences.len(), 5_000);
    assert_eq!(ds.catalogue.len(), 20_000);
    let seen = seen.into_inner().unwrap();
    let total = (news.len() + 2 * behaviors.len()) as u64;
    assert!(seen.len() > 5, "{seen:?}");
    assert_eq!(seen.last().copied(), Some((total, total)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert!(seen.iter().all(|&(done, t)| done <= t && t == total));
}

#[test]
fn real_mind_sample_counts_and_unresolved_reporting() {
    let Some(dir) = shared("mind_sample") else {
        return;
    };
    let ds = load(&dir);
    let r = &ds.report;
    assert_eq!(ds.catalogue.len(), 2000);
    assert_eq!(r.rows_read, 2000 + 5000);
    assert_eq!(r.skipped["behaviors.tsv: empty history"], 107);
    assert_eq!(
        r.skipped["behaviors.tsv: later impression of a user (the first is kept)"],
        357
    );
    // Counted independently (Python) over each user's earliest row: history ids and
    // shown-not-clicked impression ids absent from this news.tsv.
    assert_eq!(r.unresolved_ids, 293_428);
    assert_eq!(
        r.skipped["behaviors.tsv: no history id resolves in news.tsv"],
        2148
    );
    assert_eq!(ds.sequences.len(), 2388);
    assert!(r.examples.iter().any(|e| e.contains("behaviors.tsv:")
        && e.contains("field `history`")
        && e.contains("is not in news.tsv")));
    assert_resolved(&ds);
    // 99 empty abstracts load as empty fields, not skips.
    let empty_abstracts = ds
        .catalogue
        .items()
        .iter()
        .filter(|i| i.field("abstract") == Some(""))
        .count();
    assert_eq!(empty_abstracts, 99);
}

#[test]
fn real_amazon_sessions_without_products() {
    let Some(dir) = shared("amazon_m2_sessions") else {
        return;
    };
    assert_eq!(detect_format(&dir).unwrap(), Format::AmazonM2);
    // The sample has no UK rows: the default filter keeps nothing, and says why.
    let uk = load(&dir);
    assert_eq!(uk.sequences.len(), 0);
    assert_eq!(uk.report.rows_read, 34_688);
    let filtered: u64 = uk.report.skipped.values().sum();
    assert_eq!(filtered, 34_688);
    assert!(uk
        .report
        .notes
        .iter()
        .any(|n| n.contains("no products_train.csv")));

    let opts = LoadOptions {
        locale: Some("ES".into()),
        ..LoadOptions::default()
    };
    let es = load_dir(&dir, FormatChoice::AmazonM2, &opts).unwrap();
    assert_eq!(es.sequences.len(), 8176);
    assert_eq!(es.report.unresolved_ids, 0);
    assert_resolved(&es);
    assert!(es.catalogue.items().iter().all(|i| i.fields.is_empty()));
    // First ES row of the file: ['B07GTS7SWK' 'B07GTS7SWK'] -> B087DJQ8ST.
    assert_eq!(es.sequences[0].items, vec!["B07GTS7SWK", "B07GTS7SWK"]);
    assert_eq!(es.sequences[0].next_item.as_deref(), Some("B087DJQ8ST"));
}

#[test]
fn real_amazon_sessions_rewrapped_as_numpy_prints_them() {
    let Some(dir) = shared("amazon_m2_sessions") else {
        return;
    };
    // Rewrap every list the way numpy does for long arrays (line breaks inside the
    // quoted field) and check the loader reads the same sessions.
    let text =
        std::fs::read_to_string(dir.join("sessions_task2_public_with_next_item.csv")).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let (list, rest) = line.rsplit_once("],").unwrap();
        let wrapped = list.replace("' '", "'\n '");
        out.push_str(&format!("\"{wrapped}]\",{rest}\n"));
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("sessions_train.csv"), out).unwrap();
    let opts = LoadOptions {
        locale: Some("FR".into()),
        ..LoadOptions::default()
    };
    let a = load_dir(&dir, FormatChoice::AmazonM2, &opts).unwrap();
    let b = load_dir(tmp.path(), FormatChoice::AmazonM2, &opts).unwrap();
    assert_eq!(a.sequences.len(), 12_520);
    assert_eq!(a.sequences, b.sequences);
}
