//! Our own JSONL format: `items.jsonl` + `cases.jsonl` (DESIGN.md).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::detect::required;
use super::read::{LineReader, Meter};
use super::{
    Case, Catalogue, DataError, Dataset, Format, Item, ItemId, LoadOptions, LoadReport, Prepared,
    Sequence,
};

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

/// Reads `items.jsonl`. Blank lines are skipped; a 0-byte file is an error.
pub fn read_items(path: &Path) -> Result<Catalogue, DataError> {
    let opts = LoadOptions::default();
    let meter = Meter::new(&opts, &[path]);
    read_items_with(path, &meter)
}

fn utf8_line<'b>(buf: &'b [u8], path: &Path, line_no: u64) -> Result<&'b str, DataError> {
    std::str::from_utf8(buf).map_err(|e| {
        DataError::row(
            path,
            line_no,
            "(line)",
            format!(
                "not valid UTF-8 text (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

fn read_items_with(path: &Path, meter: &Meter) -> Result<Catalogue, DataError> {
    let mut cat = Catalogue::new();
    let mut lines = LineReader::open(path, meter)?;
    let mut buf = Vec::new();
    while lines.next_line(&mut buf)? {
        let line_no = lines.line_no();
        let line = utf8_line(&buf, path, line_no)?;
        if line.trim().is_empty() {
            continue;
        }
        cat.insert(parse_item_line(line, path, line_no)?);
    }
    Ok(cat)
}

/// Reads `cases.jsonl`. Blank lines are skipped; a 0-byte file is an error.
pub fn read_cases(path: &Path) -> Result<Vec<Case>, DataError> {
    let opts = LoadOptions::default();
    let meter = Meter::new(&opts, &[path]);
    read_rows_with(path, &meter, "(case)")
}

fn read_rows_with<T: serde::de::DeserializeOwned>(
    path: &Path,
    meter: &Meter,
    what: &str,
) -> Result<Vec<T>, DataError> {
    let mut rows = Vec::new();
    let mut lines = LineReader::open(path, meter)?;
    let mut buf = Vec::new();
    while lines.next_line(&mut buf)? {
        let line_no = lines.line_no();
        let line = utf8_line(&buf, path, line_no)?;
        if line.trim().is_empty() {
            continue;
        }
        let row: T = serde_json::from_str(line)
            .map_err(|e| DataError::row(path, line_no, what, e.to_string()))?;
        rows.push(row);
    }
    Ok(rows)
}

/// Loads a JSONL folder: `items.jsonl` plus either `cases.jsonl` (already prepared:
/// the cases are kept as they are, ids that do not resolve are reported) or
/// `sequences.jsonl` (`{"user": "U1", "items": ["N1", ...]}` per line; ids that do
/// not resolve are reported and left out).
pub fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let items = required(dir, "items.jsonl", Format::Jsonl)?;
    let cases_path = dir.join("cases.jsonl");
    let seq_path = dir.join("sequences.jsonl");
    let rows_path = if cases_path.is_file() {
        cases_path
    } else if seq_path.is_file() {
        seq_path
    } else {
        return Err(DataError::file(
            dir,
            "missing file: the jsonl format needs `cases.jsonl` or `sequences.jsonl` beside items.jsonl",
        ));
    };
    let meter = Meter::new(opts, &[items.as_path(), rows_path.as_path()]);
    let mut report = LoadReport {
        files: vec![items.clone(), rows_path.clone()],
        ..LoadReport::default()
    };
    let catalogue = read_items_with(&items, &meter)?;
    let label = |p: &Path| p.display().to_string();
    let (sequences, prepared_cases) = if rows_path.ends_with("cases.jsonl") {
        let cases: Vec<Case> = read_rows_with(&rows_path, &meter, "(case)")?;
        report.rows_read = cases.len() as u64;
        for c in &cases {
            let ids = c.history.iter().chain([&c.target]).chain(&c.negatives);
            for id in ids {
                if !catalogue.contains(id) {
                    let case = &c.case;
                    report.unresolved(|| {
                        format!(
                            "{}: case `{case}`: id `{id}` is not in items.jsonl",
                            label(&rows_path)
                        )
                    });
                }
            }
        }
        let sequences = cases
            .iter()
            .map(|c| Sequence {
                user: c.user.clone(),
                items: c
                    .history
                    .iter()
                    .chain([&c.target])
                    .map(ItemId::from)
                    .collect(),
                shown_not_clicked: Vec::new(),
                next_item: None,
            })
            .collect();
        (sequences, Some(cases))
    } else {
        let raw: Vec<Sequence> = read_rows_with(&rows_path, &meter, "(sequence)")?;
        report.rows_read = raw.len() as u64;
        let mut sequences = Vec::with_capacity(raw.len());
        for mut s in raw {
            let user = s.user.clone();
            let keep = |id: &ItemId, field: &str, report: &mut LoadReport| {
                let ok = catalogue.contains(id);
                if !ok {
                    report.unresolved(|| {
                        format!(
                            "{}: user `{user}`: field `{field}`: id `{id}` is not in items.jsonl (left out)",
                            label(&rows_path)
                        )
                    });
                }
                ok
            };
            s.items.retain(|id| keep(id, "items", &mut report));
            s.shown_not_clicked
                .retain(|id| keep(id, "shown_not_clicked", &mut report));
            if let Some(n) = &s.next_item {
                if !keep(n, "next_item", &mut report) {
                    s.next_item = None;
                }
            }
            if s.items.is_empty() {
                report.skip("sequences.jsonl: empty (or fully unresolved) items", || {
                    format!(
                        "{}: user `{user}`: field `items`: no item",
                        label(&rows_path)
                    )
                });
                continue;
            }
            sequences.push(s);
        }
        (sequences, None)
    };
    Ok(Dataset::loaded(
        Format::Jsonl,
        catalogue,
        sequences,
        report,
        prepared_cases,
    ))
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
