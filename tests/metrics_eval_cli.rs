//! `trsr eval`: tables, JSON, Markdown, CSV, and errors naming file, line and field.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn eval(args: &[&str]) -> (bool, String, String) {
    common::trsr(&[&["eval"], args].concat())
}

const A: &str = r#"{"case": "c1", "scorer": "llm:smol", "candidates": [{"id": "N9", "label": 1, "score": 0.5}, {"id": "N1", "label": 0, "score": 0.9}, {"id": "N2", "label": 0, "score": 0.5}]}
{"case": "c2", "scorer": "llm:smol", "candidates": [{"id": "N9", "label": 1, "score": 0.8}, {"id": "N1", "label": 0, "score": 0.1}]}
"#;
const B: &str = r#"{"case": "c1", "scorer": "random", "candidates": [{"id": "N9", "label": 1, "score": 0.1}, {"id": "N1", "label": 0, "score": 0.2}, {"id": "N2", "label": 0, "score": 0.3}]}
"#;

#[test]
fn json_is_one_object_per_scorer_with_the_named_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.jsonl", A);
    let b = write(dir.path(), "b.jsonl", B);
    let (ok, out, err) = eval(&[
        "--scores",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--k",
        "1,2",
        "--json",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "exactly one JSON object: {out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let smol = v["llm:smol"].as_object().unwrap();
    let keys: Vec<&str> = smol.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["recall@1", "mrr@1", "ndcg@1", "recall@2", "mrr@2", "ndcg@2", "auc", "cases"]
    );
    // c1 (pessimistic): N1 .9 first, then the tie {N9, N2}: N2 before N9 -> rank 3.
    //   recall@1 0, recall@2 0, AUC: loses to .9, ties .5 (0) -> 0.
    // c2: rank 1 -> 1s, AUC 1.
    // Means: recall@1 = 0.5, mrr@2 = 0.5, auc = 0.5.
    assert_eq!(smol["recall@1"], 0.5);
    assert_eq!(smol["mrr@2"], 0.5);
    assert_eq!(smol["auc"], 0.5);
    assert_eq!(smol["cases"], 2);
    // random: rank 3 of 3 -> 0s.
    assert_eq!(v["random"]["recall@2"], 0.0);
    assert_eq!(v["random"]["cases"], 1);

    // Optimistic: c1's positive wins the tie -> rank 2: recall@2 = (1 + 1)/2.
    let (ok, out, _) = eval(&[
        "--scores",
        a.to_str().unwrap(),
        "--k",
        "2",
        "--ties",
        "optimistic",
        "--json",
    ]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["llm:smol"]["recall@2"], 1.0);
    assert_eq!(v["llm:smol"]["mrr@2"], 0.75);
}

#[test]
fn tables_in_text_markdown_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.jsonl", A);
    let (ok, out, _) = eval(&["--scores", a.to_str().unwrap(), "--k", "1"]);
    assert!(ok);
    assert_eq!(
        out,
        "scorer    recall@1   mrr@1  ndcg@1     auc  cases\n\
         --------  --------  ------  ------  ------  -----\n\
         llm:smol    0.5000  0.5000  0.5000  0.5000      2\n"
    );
    let (ok, out, _) = eval(&[
        "--scores",
        a.to_str().unwrap(),
        "--k",
        "1",
        "--format",
        "markdown",
    ]);
    assert!(ok);
    assert!(
        out.starts_with("| scorer | recall@1 | mrr@1 | ndcg@1 | auc | cases |\n| --- |"),
        "{out}"
    );
    let (ok, out, _) = eval(&[
        "--scores",
        a.to_str().unwrap(),
        "--k",
        "1",
        "--format",
        "csv",
    ]);
    assert!(ok);
    assert_eq!(
        out,
        "scorer,recall@1,mrr@1,ndcg@1,auc,cases\nllm:smol,0.5000,0.5000,0.5000,0.5000,2\n"
    );
}

#[test]
fn bad_lines_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "{\"case\": \"c1\", \"scorer\": \"s\", \"candidates\": [{\"id\": \"N1\", \"label\": 1, \"score\": \"high\"}]}\n",
            ":1: field `candidates[0].score`",
        ),
        ("\n{\"case\": \"c1\", \"candidates\": []}\n", ":2: field `scorer`"),
        ("{\"case\": \"c1\", \"scorer\": \"s\", \"candidates\": [{\"id\": \"N1\", \"label\": 2, \"score\": 1}]}", ":1: field `candidates[0].label`"),
        ("{not json", ":1: field `(json)`"),
        ("", "no score records"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = write(dir.path(), &format!("bad{i}.jsonl"), text);
        let (ok, _, err) = eval(&["--scores", p.to_str().unwrap()]);
        assert!(!ok);
        assert!(err.contains(want), "want {want:?} in {err}");
        assert!(err.contains(&format!("bad{i}.jsonl")), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_case_scored_twice_by_one_scorer_is_an_error_naming_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.jsonl", A);
    let a2 = write(dir.path(), "a2.jsonl", A);
    let (ok, _, err) = eval(&["--scores", a.to_str().unwrap(), a2.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("a2.jsonl:1") && err.contains("a.jsonl:1"),
        "{err}"
    );
}

#[test]
fn cases_without_a_positive_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "s.jsonl",
        "{\"case\": \"c1\", \"scorer\": \"s\", \"candidates\": [{\"id\": \"N1\", \"label\": 0, \"score\": 1}]}\n\
         {\"case\": \"c2\", \"scorer\": \"s\", \"candidates\": [{\"id\": \"N1\", \"label\": 1, \"score\": 1}]}\n",
    );
    let (ok, out, err) = eval(&["--scores", p.to_str().unwrap(), "--json", "--k", "1"]);
    assert!(ok, "{err}");
    assert!(err.contains("1 case(s) without a positive"), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["s"]["cases"], 1);
    assert_eq!(v["s"]["auc"], Value::Null);
}
