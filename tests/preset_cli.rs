//! `--preset reference` on the command line: the bad-input cases (a dataset the reference
//! has no prompts for) and what `prepare` records.

mod common;

use std::path::Path;

use common::trsr;

fn sample(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn reference_on_recbole_needs_a_reference_wording() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("p");
    let dir = dir.to_str().unwrap();
    let (ok, _, err) = trsr(&[
        "prepare",
        "--preset",
        "reference",
        "--input",
        &sample("recbole"),
        "--out",
        dir,
    ]);
    assert!(!ok);
    assert!(
        err.contains("MIND and Amazon-M2 only") && err.contains("--reference-wording"),
        "{err}"
    );
    // With the wording it prepares, and prepare.json records it.
    let (ok, _, err) = trsr(&[
        "prepare",
        "--preset",
        "reference",
        "--reference-wording",
        "mind",
        "--input",
        &sample("recbole"),
        "--out",
        dir,
    ]);
    assert!(ok, "{err}");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(dir).join("prepare.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["format"], "recbole");
    assert_eq!(meta["preset"], "reference");
    assert_eq!(meta["reference_wording"], "mind");
}

#[test]
fn reference_on_a_folder_of_unknown_origin_is_refused_before_any_model_loads() {
    // sample_data/jsonl is a prepared folder without prepare.json.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("s.jsonl");
    let (ok, _, err) = trsr(&[
        "summarize",
        "--preset",
        "reference",
        "--model",
        "/no/such/model.gguf",
        "--data",
        &sample("jsonl"),
        "--method",
        "recurrent",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("--preset reference") && err.contains("prepare.json"),
        "{err}"
    );
}

#[test]
fn prepare_records_the_preset_and_splits_by_counts() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("p");
    let dir = dir.to_str().unwrap();
    let (ok, stdout, err) = trsr(&[
        "prepare",
        "--preset",
        "reference",
        "--input",
        &sample("mind"),
        "--out",
        dir,
        "--min-history",
        "1",
        "--split-counts",
        "2,1,1",
        "--shuffle",
    ]);
    assert!(ok, "{err}");
    assert!(
        stdout.contains("split by counts after a seeded shuffle: train 2, val 1, test 1"),
        "{stdout}"
    );
    let meta = std::fs::read_to_string(Path::new(dir).join("prepare.json")).unwrap();
    assert!(meta.contains("\"preset\": \"reference\""), "{meta}");
    let cases = std::fs::read_to_string(Path::new(dir).join("cases.jsonl")).unwrap();
    let splits: Vec<Option<String>> = cases
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["split"].as_str().map(String::from)
        })
        .collect();
    // Consecutive: train, train, val, test, then none.
    assert_eq!(splits[0].as_deref(), Some("train"));
    assert_eq!(splits[1].as_deref(), Some("train"));
    assert_eq!(splits[2].as_deref(), Some("val"));
    assert_eq!(splits[3].as_deref(), Some("test"));
    assert!(splits[4..].iter().all(Option::is_none), "{splits:?}");
}
