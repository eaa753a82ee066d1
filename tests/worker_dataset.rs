//! Dataset loading on the background thread: raw formats are detected and prepared.

use std::path::Path;
use std::sync::Arc;

use trsr::worker::dataset::spawn_load;

fn load(dir: &str) -> Result<trsr::worker::dataset::LoadedData, String> {
    let wakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = wakes.clone();
    let l = spawn_load(
        Path::new(dir).to_path_buf(),
        Arc::new(move || {
            w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }),
    )
    .unwrap();
    let r = l.wait();
    assert!(
        wakes.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the UI was never woken"
    );
    r
}

#[test]
fn raw_mind_folder_is_detected_and_prepared_into_cases() {
    let d = load("sample_data/mind").expect("sample_data/mind loads");
    assert_eq!(d.format, "mind");
    assert!(!d.cases.is_empty());
    assert!(
        d.cases.iter().all(|c| (10..=25).contains(&c.history.len())),
        "paper's MIND filter"
    );
    assert!(!d.report.files.is_empty());
    assert_eq!(d.item_text_lower.len(), d.catalogue.len());
    assert!(d.text_template.fields.iter().any(|f| f == "title"));
}

#[test]
fn prepared_jsonl_folder_keeps_its_cases() {
    let d = load("sample_data/jsonl").expect("sample_data/jsonl loads");
    assert_eq!(d.format, "jsonl");
    assert!(!d.cases.is_empty());
}

#[test]
fn a_folder_without_a_dataset_gives_a_message_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(dir.path().to_str().unwrap()).unwrap_err();
    assert!(!err.is_empty());
    let err = load("/definitely/not/here").unwrap_err();
    assert!(err.contains("/definitely/not/here"), "{err}");
}
