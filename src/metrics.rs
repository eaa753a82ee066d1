//! Ranking metrics (Recall/MRR/NDCG@K, AUC), tie policies, aggregation, and the
//! `scores.jsonl` record.

use serde::{Deserialize, Serialize};

/// One candidate's score in a `scores.jsonl` line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredCandidate {
    pub id: String,
    /// 1 for a positive (the target), 0 for a negative.
    pub label: u8,
    pub score: f64,
}

/// One line of `scores.jsonl`: `{"case": "c1", "scorer": "llm:<model>", "candidates": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    pub case: String,
    pub scorer: String,
    pub candidates: Vec<ScoredCandidate>,
}

/// Parses one `scores.jsonl` line, naming the offending field on error
/// (`candidates[2].score`).
pub fn parse_score_line(
    line: &str,
    path: &std::path::Path,
    line_no: u64,
) -> Result<ScoreRecord, crate::data::DataError> {
    use serde_json::Value;
    let err = |field: &str, message: String| crate::data::DataError::Row {
        path: path.to_path_buf(),
        line: line_no,
        field: field.to_string(),
        message,
    };
    let value: Value =
        serde_json::from_str(line).map_err(|e| err("(json)", format!("invalid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| err("(json)", "expected a JSON object".into()))?;
    let string = |name: &str| -> Result<String, crate::data::DataError> {
        match obj.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) if name == "case" => Ok(n.to_string()),
            Some(_) => Err(err(name, "must be a non-empty string".into())),
            None => Err(err(name, "missing".into())),
        }
    };
    let case = string("case")?;
    let scorer = string("scorer")?;
    let list = match obj.get("candidates") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(err("candidates", "must be a list".into())),
        None => return Err(err("candidates", "missing".into())),
    };
    if list.is_empty() {
        return Err(err("candidates", "is empty".into()));
    }
    let mut candidates = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let f = |name: &str| format!("candidates[{i}].{name}");
        let c = c
            .as_object()
            .ok_or_else(|| err(&format!("candidates[{i}]"), "must be an object".into()))?;
        let id = match c.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(err(&f("id"), "must be a non-empty string".into())),
            None => return Err(err(&f("id"), "missing".into())),
        };
        let label = match c.get("label") {
            Some(Value::Number(n)) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                n.as_u64().unwrap_or(0) as u8
            }
            Some(Value::Bool(b)) => u8::from(*b),
            Some(v) => return Err(err(&f("label"), format!("must be 0 or 1, found {v}"))),
            None => return Err(err(&f("label"), "missing".into())),
        };
        let score = match c.get("score") {
            Some(Value::Number(n)) => n
                .as_f64()
                .ok_or_else(|| err(&f("score"), format!("not a finite number: {n}")))?,
            Some(v) => return Err(err(&f("score"), format!("must be a number, found {v}"))),
            None => return Err(err(&f("score"), "missing".into())),
        };
        candidates.push(ScoredCandidate { id, label, score });
    }
    Ok(ScoreRecord {
        case,
        scorer,
        candidates,
    })
}

/// Reads a `scores.jsonl` file. Blank lines are skipped; a bad line is an error
/// naming file, line and field.
pub fn read_scores(path: &std::path::Path) -> Result<Vec<ScoreRecord>, crate::data::DataError> {
    use std::io::BufRead;
    let io = |source| crate::data::DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|e| crate::data::DataError::Row {
            path: path.to_path_buf(),
            line: line_no,
            field: "(line)".into(),
            message: format!("not valid UTF-8 text: {e}"),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_score_line(&line, path, line_no)?);
    }
    Ok(out)
}
