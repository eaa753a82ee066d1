//! Result tables: scores and summaries as JSONL/CSV, tables as text/Markdown/CSV.

use trsr::curate::{Curation, Edit, Key, Status, StepKind};
use trsr::export::{
    scores_table, summaries_table, write_scores_jsonl, write_summaries_jsonl, Table, TableFormat,
};
use trsr::metrics::{ScoreRecord, ScoredCandidate};

fn table() -> Table {
    let mut t = Table::new(["scorer", "recall@3", "cases"]);
    t.push(vec!["llm:smol".into(), "0.5000".into(), "10".into()]);
    t.push(vec!["random|x".into(), "0.1429".into(), "7".into()]);
    t
}

#[test]
fn text_table_is_aligned() {
    assert_eq!(
        table().render(TableFormat::Table),
        "scorer    recall@3  cases\n\
         --------  --------  -----\n\
         llm:smol    0.5000     10\n\
         random|x    0.1429      7\n"
    );
}

#[test]
fn markdown_table_escapes_pipes_and_right_aligns_numbers() {
    assert_eq!(
        table().render(TableFormat::Markdown),
        "| scorer | recall@3 | cases |\n\
         | --- | ---: | ---: |\n\
         | llm:smol | 0.5000 | 10 |\n\
         | random\\|x | 0.1429 | 7 |\n"
    );
}

#[test]
fn csv_table_quotes_when_needed() {
    let mut t = Table::new(["a", "b"]);
    t.push(vec!["x, y".into(), "say \"hi\"".into()]);
    assert_eq!(
        t.render(TableFormat::Csv),
        "a,b\n\"x, y\",\"say \"\"hi\"\"\"\n"
    );
}

#[test]
fn scores_table_has_one_row_per_candidate_with_ranks() {
    let r = ScoreRecord {
        case: "c1".into(),
        scorer: "llm:m".into(),
        preset: None,
        candidates: vec![
            ScoredCandidate {
                id: "N9".into(),
                label: 1,
                score: 0.5,
            },
            ScoredCandidate {
                id: "N3".into(),
                label: 0,
                score: 0.9,
            },
            ScoredCandidate {
                id: "N4".into(),
                label: 0,
                score: 0.5,
            },
        ],
    };
    let t = scores_table(std::slice::from_ref(&r));
    assert_eq!(
        t.header,
        ["case", "scorer", "candidate", "label", "score", "rank"]
    );
    let ranks: Vec<(&str, &str)> = t
        .rows
        .iter()
        .map(|r| (r[2].as_str(), r[5].as_str()))
        .collect();
    assert_eq!(ranks, vec![("N9", "2"), ("N3", "1"), ("N4", "2")]);
    let mut buf = Vec::new();
    write_scores_jsonl(&mut buf, std::slice::from_ref(&r)).unwrap();
    let back: ScoreRecord = serde_json::from_slice(buf.trim_ascii_end()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn summaries_export_the_text_that_stands_beside_the_models() {
    let mut c = Curation::new();
    c.register_trace(
        "c1",
        "hierarchical",
        vec![
            (StepKind::Block, vec!["N1".into()], "b".into()),
            (StepKind::Merge, vec![], "model, summary".into()),
        ],
        Some("smol".into()),
    )
    .unwrap();
    let k = Key::final_of("c1", "hierarchical");
    c.apply_at(&k, Edit::SetText(Some("human summary".into())), 1)
        .unwrap();
    c.apply_at(&k, Edit::SetStatus(Status::Accepted), 1)
        .unwrap();
    let mut buf = Vec::new();
    write_summaries_jsonl(&mut buf, &c).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"case": "c1", "method": "hierarchical", "model": "smol", "steps": 2,
            "status": "accepted", "edited": true, "stale": false,
            "summary": "human summary", "model_summary": "model, summary"})
    );
    let csv = summaries_table(&c).render(TableFormat::Csv);
    assert_eq!(
        csv,
        "case,method,model,steps,status,edited,stale,summary,model_summary\n\
         c1,hierarchical,smol,2,accepted,true,false,human summary,\"model, summary\"\n"
    );
}

#[test]
fn trsr_export_writes_metrics_and_score_tables() {
    let dir = tempfile::tempdir().unwrap();
    let scores = dir.path().join("s.jsonl");
    // Positive 2nd of 3 -> recall@1 0, mrr@1 0; recall@3 1, mrr@3 0.5; AUC 0.5.
    std::fs::write(
        &scores,
        "{\"case\": \"c1\", \"scorer\": \"s\", \"candidates\": [{\"id\": \"N9\", \"label\": 1, \"score\": 0.5}, {\"id\": \"N1\", \"label\": 0, \"score\": 0.9}, {\"id\": \"N2\", \"label\": 0, \"score\": 0.1}]}\n",
    )
    .unwrap();
    let run = |args: &[&str], out: &std::path::Path| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_trsr"))
            .arg("export")
            .args(args)
            .args([
                "--scores",
                scores.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(out).unwrap()
    };
    let md = run(
        &["--kind", "metrics", "--format", "markdown", "--k", "1,3"],
        &dir.path().join("m.md"),
    );
    assert_eq!(
        md,
        "| scorer | recall@1 | mrr@1 | ndcg@1 | recall@3 | mrr@3 | ndcg@3 | auc | cases |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n\
         | s | 0.0000 | 0.0000 | 0.0000 | 1.0000 | 0.5000 | 0.6309 | 0.5000 | 1 |\n"
    );
    let csv = run(
        &["--kind", "scores", "--format", "csv"],
        &dir.path().join("s.csv"),
    );
    assert_eq!(
        csv,
        "case,scorer,candidate,label,score,rank\nc1,s,N9,1,0.5,2\nc1,s,N1,0,0.9,1\nc1,s,N2,0,0.1,3\n"
    );
}
