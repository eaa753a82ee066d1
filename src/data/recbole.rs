//! RecBole atomic files: `NAME.inter` + `NAME.item`, tab-separated, with typed
//! headers such as `user_id:token`, `item_id:token`, `movie_title:token_seq`,
//! `timestamp:float`. Sequences are per user, ordered by timestamp (file order when
//! there is no timestamp column, or between equal timestamps). Item fields are the
//! `.item` columns other than `item_id`, named without their type.

use std::path::{Path, PathBuf};

use super::detect::files_matching;
use super::index::IdIndex;
use super::read::{check_width, split_into, utf8, LineReader, Meter};
use super::{
    Catalogue, DataError, Dataset, Format, Item, ItemId, LoadOptions, LoadReport, Sequence,
};

/// One typed header column: `name:type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: String,
}

/// Parses a RecBole header line (`user_id:token\titem_id:token\t...`).
pub fn parse_header(line: &str) -> Vec<Column> {
    line.trim_start_matches('\u{feff}')
        .split('\t')
        .map(|c| match c.trim().split_once(':') {
            Some((n, k)) => Column {
                name: n.to_string(),
                kind: k.to_string(),
            },
            None => Column {
                name: c.trim().to_string(),
                kind: "token".to_string(),
            },
        })
        .collect()
}

fn pick_inter(dir: &Path) -> Result<PathBuf, DataError> {
    let found = files_matching(dir, |n| n.ends_with(".inter"))?;
    if let [one] = found.as_slice() {
        return Ok(dir.join(one));
    }
    // Prefer `NAME.inter` over split files such as `NAME.train.inter`.
    let plain: Vec<&String> = found
        .iter()
        .filter(|n| !n.trim_end_matches(".inter").contains('.'))
        .collect();
    match plain.as_slice() {
        [one] => Ok(dir.join(one)),
        _ if found.is_empty() => Err(DataError::file(
            dir,
            "missing file: the recbole format needs a `NAME.inter` file",
        )),
        _ => Err(DataError::file(
            dir,
            format!(
                "several interaction files ({}): keep one NAME.inter in the folder",
                found.join(", ")
            ),
        )),
    }
}

/// Loads a RecBole folder.
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let inter = pick_inter(dir)?;
    let stem = inter
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".inter").to_string())
        .unwrap_or_default();
    let item_path = dir.join(format!("{stem}.item"));
    let has_items = item_path.is_file();
    let meter = Meter::new(opts, &[item_path.as_path(), inter.as_path()]);
    let mut report = LoadReport::default();
    let mut catalogue = Catalogue::new();
    if has_items {
        report.files.push(item_path.clone());
        read_items(&item_path, &meter, &mut report, &mut catalogue)?;
    } else {
        report.notes.push(format!(
            "{} is missing: items are known by id only and have no text",
            item_path.display()
        ));
    }
    report.files.push(inter.clone());
    let sequences = read_inter(&inter, &meter, &mut report, &mut catalogue, !has_items)?;
    Ok(Dataset::loaded(
        Format::RecBole,
        catalogue,
        sequences,
        report,
        None,
    ))
}

fn read_header(lines: &mut LineReader, buf: &mut Vec<u8>) -> Result<Vec<Column>, DataError> {
    if !lines.next_line(buf)? {
        return Err(DataError::file(lines.path(), "no header line"));
    }
    let text = std::str::from_utf8(buf)
        .map_err(|_| DataError::row(lines.path(), 1, "(header)", "header is not valid UTF-8"))?;
    Ok(parse_header(text))
}

fn find(cols: &[Column], name: &str, path: &Path) -> Result<usize, DataError> {
    cols.iter().position(|c| c.name == name).ok_or_else(|| {
        let found: Vec<String> = cols
            .iter()
            .map(|c| format!("{}:{}", c.name, c.kind))
            .collect();
        DataError::row(
            path,
            1,
            name,
            format!(
                "missing column `{name}:token` in the header (found: {})",
                found.join(", ")
            ),
        )
    })
}

fn read_items(
    path: &Path,
    meter: &Meter,
    report: &mut LoadReport,
    catalogue: &mut Catalogue,
) -> Result<(), DataError> {
    let mut lines = LineReader::open(path, meter)?;
    let mut buf = Vec::new();
    let header = read_header(&mut lines, &mut buf)?;
    let id_col = find(&header, "item_id", path)?;
    let names: Vec<String> = header.iter().map(|c| c.name.clone()).collect();
    let label = format!("{}", path.file_name().unwrap_or_default().to_string_lossy());
    let mut cols = Vec::new();
    'rows: while lines.next_line(&mut buf)? {
        let line = lines.line_no();
        if buf.is_empty() {
            continue;
        }
        report.rows_read += 1;
        split_into(&buf, b'\t', &mut cols);
        if cols.len() != names.len() {
            check_width(report, path, line, &names, cols.len(), "tab-separated");
            continue;
        }
        let mut id = String::new();
        let mut fields = Vec::with_capacity(names.len().saturating_sub(1));
        for (i, &(a, b)) in cols.iter().enumerate() {
            let v = match utf8(&buf[a..b], path, line, &names[i]) {
                Ok(v) => v.trim(),
                Err(msg) => {
                    report.skip(&format!("{label}: not valid UTF-8"), || msg);
                    continue 'rows;
                }
            };
            if i == id_col {
                id = v.to_string();
            } else {
                fields.push((names[i].clone(), v.to_string()));
            }
        }
        if id.is_empty() {
            report.skip(&format!("{label}: empty item_id"), || {
                format!("{}:{line}: field `item_id`: empty", path.display())
            });
            continue;
        }
        let dup = id.clone();
        if !catalogue.insert(Item { id, fields }) {
            report.skip(
                &format!("{label}: duplicate item_id (the later row replaces the earlier)"),
                || {
                    format!(
                        "{}:{line}: field `item_id`: `{dup}` seen before",
                        path.display()
                    )
                },
            );
        }
    }
    Ok(())
}

fn read_inter(
    path: &Path,
    meter: &Meter,
    report: &mut LoadReport,
    catalogue: &mut Catalogue,
    bare_items: bool,
) -> Result<Vec<Sequence>, DataError> {
    let mut lines = LineReader::open(path, meter)?;
    let mut buf = Vec::new();
    let header = read_header(&mut lines, &mut buf)?;
    let user_col = find(&header, "user_id", path)?;
    let item_col = find(&header, "item_id", path)?;
    let ts_col = header.iter().position(|c| c.name == "timestamp");
    let names: Vec<String> = header.iter().map(|c| c.name.clone()).collect();
    let label = format!("{}", path.file_name().unwrap_or_default().to_string_lossy());
    let mut users = IdIndex::default();
    // Per user: (timestamp, catalogue position) in file order.
    let mut events: Vec<(String, Vec<(f64, u32)>)> = Vec::new();
    let mut cols = Vec::new();
    while lines.next_line(&mut buf)? {
        let line = lines.line_no();
        if buf.is_empty() {
            continue;
        }
        report.rows_read += 1;
        split_into(&buf, b'\t', &mut cols);
        if cols.len() != names.len() {
            check_width(report, path, line, &names, cols.len(), "tab-separated");
            continue;
        }
        let col = |i: usize| &buf[cols[i].0..cols[i].1];
        let (user, item) = match (
            utf8(col(user_col), path, line, "user_id"),
            utf8(col(item_col), path, line, "item_id"),
        ) {
            (Ok(u), Ok(i)) => (u.trim(), i.trim()),
            (Err(msg), _) | (_, Err(msg)) => {
                report.skip(&format!("{label}: not valid UTF-8"), || msg);
                continue;
            }
        };
        if user.is_empty() || item.is_empty() {
            let field = if user.is_empty() {
                "user_id"
            } else {
                "item_id"
            };
            report.skip(&format!("{label}: empty {field}"), || {
                format!("{}:{line}: field `{field}`: empty", path.display())
            });
            continue;
        }
        let ts = match ts_col {
            None => 0.0,
            Some(c) => match std::str::from_utf8(col(c))
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|t| t.is_finite())
            {
                Some(t) => t,
                None => {
                    let raw = String::from_utf8_lossy(col(c)).into_owned();
                    report.skip(&format!("{label}: unreadable timestamp"), || {
                        format!(
                            "{}:{line}: field `timestamp`: `{raw}` is not a number",
                            path.display()
                        )
                    });
                    continue;
                }
            },
        };
        let pos = match catalogue.position(item) {
            Some(p) => p,
            None if bare_items => {
                catalogue.insert(Item {
                    id: item.to_string(),
                    fields: Vec::new(),
                });
                catalogue.len() - 1
            }
            None => {
                report.unresolved(|| {
                    format!(
                        "{}:{line}: field `item_id`: id `{item}` is not in the .item file (left out)",
                        path.display()
                    )
                });
                continue;
            }
        };
        let Ok(pos) = u32::try_from(pos) else {
            return Err(DataError::file(path, "more than 4 billion items"));
        };
        let (slot, new) = users.insert(user);
        if new {
            events.push((user.to_string(), Vec::new()));
        }
        events[slot].1.push((ts, pos));
    }
    let items = catalogue.items();
    let sequences = events
        .into_iter()
        .map(|(user, mut ev)| {
            // Stable: equal timestamps keep file order.
            ev.sort_by(|a, b| a.0.total_cmp(&b.0));
            Sequence {
                user,
                items: ev
                    .iter()
                    .map(|&(_, p)| ItemId::new(&items[p as usize].id))
                    .collect(),
                shown_not_clicked: Vec::new(),
                next_item: None,
            }
        })
        .collect();
    Ok(sequences)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_header_names_and_kinds() {
        let h = parse_header("user_id:token\tmovie_title:token_seq\ttimestamp:float\tplain");
        assert_eq!(h[1].name, "movie_title");
        assert_eq!(h[1].kind, "token_seq");
        assert_eq!(h[3].kind, "token");
    }
}
