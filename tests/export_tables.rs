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
