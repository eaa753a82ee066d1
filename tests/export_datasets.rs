//! Exported SFT files load with Hugging Face `datasets` (as TRL reads them).
//!
//! Runs `scripts/check_export_datasets.py` with the Python in `TRSR_PYTHON`
//! (default `python3`); skips with a note when that Python lacks `datasets`.
//! Set up: `python3 -m venv .venv-export && .venv-export/bin/pip install datasets`,
//! then `TRSR_PYTHON=.venv-export/bin/python cargo test --test export_datasets`.

use std::process::Command;

use trsr::curate::{Curation, Edit, Key, Status, StepKind};
use trsr::data::{Case, Catalogue, Item};
use trsr::export::{
    recommender_examples, summarizer_examples, write_sft_jsonl, ExportOptions, PlainRenderer,
    SftForm,
};

fn python() -> String {
    std::env::var("TRSR_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn has_datasets(py: &str) -> bool {
    Command::new(py)
        .args(["-c", "import datasets"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn exports_load_with_datasets_load_dataset_json() {
    let py = python();
    if !has_datasets(&py) {
        eprintln!(
            "note: skipped: `{py}` cannot import datasets (set TRSR_PYTHON to a Python that can)"
        );
        return;
    }
    let mut cat = Catalogue::new();
    for i in 1..=8 {
        cat.insert(Item {
            id: format!("N{i}"),
            fields: vec![("title".into(), format!("Headline \"{i}\" — ünïcode"))],
        });
    }
    let cases: Vec<Case> = ["c1", "c2"]
        .iter()
        .map(|c| Case {
            case: c.to_string(),
            user: format!("U{c}"),
            history: (1..=6).map(|i| format!("N{i}")).collect(),
            target: "N7".into(),
            negatives: vec!["N8".into()],
            split: None,
        })
        .collect();
    let mut cur = Curation::new();
    for c in ["c1", "c2"] {
        cur.register_trace(
            c,
            "hierarchical",
            vec![
                (
                    StepKind::Block,
                    vec!["N1".into(), "N2".into(), "N3".into()],
                    "likes news".into(),
                ),
                (
                    StepKind::Block,
                    vec!["N4".into(), "N5".into(), "N6".into()],
                    "likes sports".into(),
                ),
                (StepKind::Merge, vec![], format!("{c}: news and sports")),
            ],
            if c == "c1" {
                Some("SmolLM2".into())
            } else {
                None
            },
        )
        .unwrap();
    }
    let k = Key::final_of("c1", "hierarchical");
    cur.apply_at(&k, Edit::SetText(Some("mostly sports\nand news".into())), 5)
        .unwrap();
    cur.apply_at(&k, Edit::SetStatus(Status::Accepted), 6)
        .unwrap();
    let opts = ExportOptions {
        include_unreviewed: true,
        ..ExportOptions::default()
    };
    let (rec, _) = recommender_examples(&cur, &cases, &cat, &PlainRenderer, &opts).unwrap();
    let (sum, _) = summarizer_examples(&cur, &cases, &cat, &PlainRenderer, &opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, ex) in [("rec", &rec), ("sum", &sum)] {
        for (fname, form) in [
            ("pc", SftForm::PromptCompletion),
            ("msg", SftForm::Messages),
        ] {
            let p = dir.path().join(format!("{name}-{fname}.jsonl"));
            write_sft_jsonl(std::fs::File::create(&p).unwrap(), ex, form).unwrap();
            files.push(p);
        }
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/check_export_datasets.py"
    );
    let o = Command::new(&py).arg(script).args(&files).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out.lines().filter(|l| l.contains(" examples, ")).count(),
        4,
        "{out}"
    );
    assert!(
        out.contains("rec-pc.jsonl: 4 examples, prompt-completion"),
        "{out}"
    );
}
