//! Our own JSONL format: `items.jsonl` + `cases.jsonl` (DESIGN.md).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Case, Catalogue, DataError, Item, Prepared};

fn open(path: &Path) -> Result<BufReader<std::fs::File>, DataError> {
    std::fs::File::open(path)
        .map(BufReader::new)
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Parses one `items.jsonl` line: `{"id": "N1", "title": "...", ...}`.
pub fn parse_item_line(line: &str, path: &Path, line_no: u64) -> Result<Item, DataError> {
    let row_err = |field: &str, message: String| DataError::Row {
        path: path.to_path_buf(),
        line: line_no,
        field: field.to_string(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| row_err("(json)", format!("invalid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| row_err("(json)", "expected a JSON object".into()))?;
    let id = match obj.get("id") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(_) => return Err(row_err("id", "must be a non-empty string".into())),
        None => return Err(row_err("id", "missing".into())),
    };
    let mut fields = Vec::with_capacity(obj.len().saturating_sub(1));
    for (k, v) in obj {
        if k == "id" {
            continue;
        }
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => other.to_string(),
        };
        fields.push((k.clone(), text));
    }
    Ok(Item { id, fields })
}

/// Reads `items.jsonl`. Blank lines are skipped.
pub fn read_items(path: &Path) -> Result<Catalogue, DataError> {
    let mut cat = Catalogue::new();
    for (i, line) in open(path)?.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|e| DataError::Row {
            path: path.to_path_buf(),
            line: line_no,
            field: "(line)".into(),
            message: format!("not valid UTF-8 text: {e}"),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        cat.insert(parse_item_line(&line, path, line_no)?);
    }
    Ok(cat)
}

/// Reads `cases.jsonl`.
pub fn read_cases(path: &Path) -> Result<Vec<Case>, DataError> {
    let mut cases = Vec::new();
    for (i, line) in open(path)?.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|e| DataError::Row {
            path: path.to_path_buf(),
            line: line_no,
            field: "(line)".into(),
            message: format!("not valid UTF-8 text: {e}"),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let case: Case = serde_json::from_str(&line).map_err(|e| DataError::Row {
            path: path.to_path_buf(),
            line: line_no,
            field: "(case)".into(),
            message: e.to_string(),
        })?;
        cases.push(case);
    }
    Ok(cases)
}

/// Loads a prepared folder (`items.jsonl` + `cases.jsonl`).
pub fn load_prepared(dir: &Path) -> Result<Prepared, DataError> {
    let items = dir.join("items.jsonl");
    let cases = dir.join("cases.jsonl");
    for p in [&items, &cases] {
        if !p.is_file() {
            return Err(DataError::File {
                path: p.clone(),
                message: "missing file (run `trsr prepare --input RAW --out DIR` to make a prepared folder)"
                    .into(),
            });
        }
    }
    Ok(Prepared {
        dir: dir.to_path_buf(),
        catalogue: read_items(&items)?,
        cases: read_cases(&cases)?,
    })
}

/// Writes one JSON value per line to `path` (created or replaced).
pub fn write_jsonl<T: serde::Serialize>(
    path: &Path,
    rows: impl IntoIterator<Item = T>,
) -> Result<(), DataError> {
    let io = |source| DataError::Io {
        path: PathBuf::from(path),
        source,
    };
    let mut w = BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for row in rows {
        serde_json::to_writer(&mut w, &row).map_err(|e| io(e.into()))?;
        w.write_all(b"\n").map_err(io)?;
    }
    w.flush().map_err(io)
}

/// An item as its `items.jsonl` object (id first, then fields in order).
pub fn item_to_json(item: &Item) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("id".into(), item.id.clone().into());
    for (k, v) in &item.fields {
        map.insert(k.clone(), v.clone().into());
    }
    serde_json::Value::Object(map)
}
