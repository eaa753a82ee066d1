//! `trsr eval --ties all` and the count of cases whose target is tied with a negative,
//! on a hand-made tie case.

mod common;

fn eval(args: &[&str]) -> (bool, String, String) {
    common::trsr(&[&["eval"], args].concat())
}

// c1: the target (0.5) is tied with two negatives (0.5, 0.5), one negative above (0.9):
// ranks 2..4 -> pessimistic 4, optimistic 2, average over the three places.
// c2: no tie, the target first.
const SCORES: &str = r#"{"case": "c1", "scorer": "llm:m", "candidates": [{"id": "T", "label": 1, "score": 0.5}, {"id": "A", "label": 0, "score": 0.9}, {"id": "B", "label": 0, "score": 0.5}, {"id": "C", "label": 0, "score": 0.5}, {"id": "D", "label": 0, "score": 0.1}]}
{"case": "c2", "scorer": "llm:m", "candidates": [{"id": "T", "label": 1, "score": 0.8}, {"id": "A", "label": 0, "score": 0.1}]}
"#;

#[test]
fn ties_all_prints_the_three_policies_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.jsonl");
    std::fs::write(&p, SCORES).unwrap();
    let (ok, out, err) = eval(&[
        "--scores",
        p.to_str().unwrap(),
        "--k",
        "2",
        "--ties",
        "all",
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "scorer,metric,pessimistic,average,optimistic,tied cases"
    );
    // recall@2: c1 is in the top 2 only optimistically (rank 2); average: rank 2, 3 or
    // 4 equally likely -> 1/3. c2: 1. Means: 0.5, 0.6667, 1.0.
    assert_eq!(lines[1], "llm:m,recall@2,0.5000,0.6667,1.0000,1 of 2");
    // mrr@2: c1 pessimistic 0, optimistic 1/2, average (1/2)/3; c2 1.
    assert_eq!(lines[2], "llm:m,mrr@2,0.5000,0.5833,0.7500,1 of 2");

    let (ok, out, _) = eval(&[
        "--scores",
        p.to_str().unwrap(),
        "--k",
        "2",
        "--ties",
        "all",
        "--json",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["llm:m"]["tied_cases"], 1);
    assert_eq!(v["llm:m"]["optimistic"]["recall@2"], 1.0);
    assert_eq!(v["llm:m"]["pessimistic"]["recall@2"], 0.5);
}

#[test]
fn eval_reports_the_tied_cases_per_scorer() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.jsonl");
    std::fs::write(&p, SCORES).unwrap();
    let (ok, _, err) = eval(&["--scores", p.to_str().unwrap(), "--k", "2"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("ties: scorer `llm:m`: 1 of 2 case(s) have the target tied with a negative"),
        "{err}"
    );
}
