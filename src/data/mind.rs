//! MIND: raw `news.tsv` + `behaviors.tsv` (tab-separated, no header, no quoting).
//!
//! Sequences as the paper builds them: one impression row per user (the earliest
//! by its time; equal times keep the earlier line), whose history clicks become the
//! sequence (the last click is the target at `prepare` time). The impression's
//! shown-but-not-clicked items (`id-0`) are kept as an alternative negative source.
//! History or impression ids absent from `news.tsv` are counted and left out.

use std::path::Path;

use super::detect::required;
use super::index::IdIndex;
use super::read::{split_into, utf8, LineReader, Meter};
use super::{Catalogue, DataError, Dataset, Format, Item, LoadOptions, LoadReport, Sequence};

/// Column names of `news.tsv`, in order.
pub const NEWS_COLUMNS: [&str; 8] = [
    "id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
];

/// Column names of `behaviors.tsv`, in order.
pub const BEHAVIOR_COLUMNS: [&str; 5] = ["impression_id", "user", "time", "history", "impressions"];

/// Loads `dir/news.tsv` (optional: without it items have no text, reported) and
/// `dir/behaviors.tsv`.
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let behaviors = required(dir, "behaviors.tsv", Format::Mind)?;
    let news = dir.join("news.tsv");
    let has_news = news.is_file();
    // behaviors.tsv is read twice (see `read_behaviors`).
    let meter = Meter::new(
        opts,
        &[news.as_path(), behaviors.as_path(), behaviors.as_path()],
    );
    let mut report = LoadReport::default();
    let mut catalogue = Catalogue::new();
    if has_news {
        report.files.push(news.clone());
        read_news(&news, &meter, &mut report, &mut catalogue)?;
    } else {
        report.notes.push(format!(
            "{} is missing: items are known by id only and have no text",
            news.display()
        ));
    }
    report.files.push(behaviors.clone());
    let sequences = read_behaviors(&behaviors, &meter, &mut report, &mut catalogue, !has_news)?;
    Ok(Dataset::loaded(
        Format::Mind,
        catalogue,
        sequences,
        report,
        None,
    ))
}

fn read_news(
    path: &Path,
    meter: &Meter,
    report: &mut LoadReport,
    catalogue: &mut Catalogue,
) -> Result<(), DataError> {
    let mut lines = LineReader::open(path, meter)?;
    let mut buf = Vec::new();
    let mut cols = Vec::new();
    'rows: while lines.next_line(&mut buf)? {
        let line = lines.line_no();
        if buf.is_empty() {
            continue;
        }
        report.rows_read += 1;
        split_into(&buf, b'\t', &mut cols);
        if cols.len() != NEWS_COLUMNS.len() {
            let (reason, field) = if cols.len() < NEWS_COLUMNS.len() {
                ("news.tsv: too few columns", NEWS_COLUMNS[cols.len()])
            } else {
                ("news.tsv: too many columns", "(end of row)")
            };
            let n = cols.len();
            report.skip(reason, || {
                format!(
                    "{}:{line}: field `{field}`: expected 8 tab-separated columns, found {n}",
                    path.display()
                )
            });
            continue;
        }
        let mut vals = [""; 5];
        for (i, v) in vals.iter_mut().enumerate() {
            let (a, b) = cols[i];
            match utf8(&buf[a..b], path, line, NEWS_COLUMNS[i]) {
                Ok(s) => *v = s.trim(),
                Err(msg) => {
                    report.skip("news.tsv: not valid UTF-8", || msg);
                    continue 'rows;
                }
            }
        }
        if vals[0].is_empty() {
            report.skip("news.tsv: empty id", || {
                format!("{}:{line}: field `id`: empty", path.display())
            });
            continue;
        }
        let item = Item {
            id: vals[0].to_string(),
            fields: NEWS_COLUMNS[1..5]
                .iter()
                .zip(&vals[1..])
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        if !catalogue.insert(item) {
            let id = vals[0];
            report.skip(
                "news.tsv: duplicate id (the later row replaces the earlier)",
                || format!("{}:{line}: field `id`: `{id}` seen before", path.display()),
            );
        }
    }
    Ok(())
}

/// The earliest impression row of one user (pass 1).
struct Best {
    time_s: i64,
    line: u64,
}

/// Reads `behaviors.tsv` in two passes: the first finds each user's earliest row
/// from the first three columns only; the second builds sequences for those rows
/// alone, so no work or memory goes to rows that are not kept.
fn read_behaviors(
    path: &Path,
    meter: &Meter,
    report: &mut LoadReport,
    catalogue: &mut Catalogue,
    bare_items: bool,
) -> Result<Vec<Sequence>, DataError> {
    let mut lines = LineReader::open(path, meter)?;
    let mut buf = Vec::new();
    let mut cols = Vec::new();
    let mut users = IdIndex::default();
    let mut later_rows = 0u64;
    let mut best: Vec<Best> = Vec::new();
    while lines.next_line(&mut buf)? {
        let line = lines.line_no();
        if buf.is_empty() {
            continue;
        }
        report.rows_read += 1;
        split_into(&buf, b'\t', &mut cols);
        if cols.len() != BEHAVIOR_COLUMNS.len() {
            let (reason, field) = if cols.len() < BEHAVIOR_COLUMNS.len() {
                (
                    "behaviors.tsv: too few columns",
                    BEHAVIOR_COLUMNS[cols.len()],
                )
            } else {
                ("behaviors.tsv: too many columns", "(end of row)")
            };
            let n = cols.len();
            report.skip(reason, || {
                format!(
                    "{}:{line}: field `{field}`: expected 5 tab-separated columns, found {n}",
                    path.display()
                )
            });
            continue;
        }
        let col = |i: usize| &buf[cols[i].0..cols[i].1];
        let user = match utf8(col(1), path, line, "user") {
            Ok(u) if !u.trim().is_empty() => u.trim(),
            Ok(_) => {
                report.skip("behaviors.tsv: empty user", || {
                    format!("{}:{line}: field `user`: empty", path.display())
                });
                continue;
            }
            Err(msg) => {
                report.skip("behaviors.tsv: not valid UTF-8", || msg);
                continue;
            }
        };
        let Some(time_s) = parse_time(col(2)) else {
            let raw = String::from_utf8_lossy(col(2)).into_owned();
            report.skip("behaviors.tsv: unreadable time", || {
                format!(
                    "{}:{line}: field `time`: `{raw}` is not M/D/YYYY h:mm:ss AM|PM",
                    path.display()
                )
            });
            continue;
        };
        if col(3).trim_ascii().is_empty() {
            report.skip("behaviors.tsv: empty history", || {
                format!("{}:{line}: field `history`: empty", path.display())
            });
            continue;
        }
        match users.get(user) {
            Some(i) => {
                later_rows += 1;
                if (time_s, line) < (best[i].time_s, best[i].line) {
                    best[i] = Best { time_s, line };
                }
            }
            None => {
                users.insert(user, best.len());
                best.push(Best { time_s, line });
            }
        }
    }
    drop(users);
    if later_rows > 0 {
        report.skipped.insert(
            "behaviors.tsv: later impression of a user (the first is kept)".into(),
            later_rows,
        );
    }
    let mut keep: Vec<u64> = best.into_iter().map(|b| b.line).collect();
    keep.sort_unstable();

    // Pass 2: build the kept rows' sequences, in file order, in parallel batches.
    let mut lines = LineReader::open(path, meter)?;
    let mut sequences = Vec::with_capacity(keep.len());
    let mut next = keep.iter().copied().peekable();
    let mut batch: Vec<(u64, Vec<u8>)> = Vec::with_capacity(BATCH_ROWS);
    loop {
        let more = match next.peek() {
            Some(&want) => {
                if !lines.next_line(&mut buf)? {
                    return Err(DataError::file(path, "the file changed while it was read"));
                }
                if lines.line_no() == want {
                    next.next();
                    batch.push((want, std::mem::take(&mut buf)));
                }
                true
            }
            None => false,
        };
        if batch.len() == BATCH_ROWS || (!more && !batch.is_empty()) {
            let rows: Vec<Row> = {
                use rayon::prelude::*;
                let cat: &Catalogue = catalogue;
                batch
                    .par_iter()
                    .map(|(line, bytes)| build_row(bytes, *line, path, cat, bare_items))
                    .collect()
            };
            batch.clear();
            for row in rows {
                apply_row(row, path, report, catalogue, bare_items, &mut sequences)?;
            }
        }
        if !more {
            break;
        }
    }
    lines.finish()?;
    Ok(sequences)
}

const BATCH_ROWS: usize = 4096;

/// What pass 2 made of one kept row.
struct Row {
    line: u64,
    seq: Option<Sequence>,
    /// Skipped tokens or the skipped row: (reason, example).
    skips: Vec<(&'static str, String)>,
    unresolved: u64,
    unresolved_example: Option<String>,
}

/// Builds one kept row's sequence (pure: runs on any thread). With `bare_items`,
/// ids absent from the catalogue are kept (and added by [`apply_row`]).
fn build_row(bytes: &[u8], line: u64, path: &Path, catalogue: &Catalogue, bare_items: bool) -> Row {
    let mut row = Row {
        line,
        seq: None,
        skips: Vec::new(),
        unresolved: 0,
        unresolved_example: None,
    };
    let mut cols = Vec::with_capacity(5);
    split_into(bytes, b'\t', &mut cols);
    if cols.len() != BEHAVIOR_COLUMNS.len() {
        row.skips.push((
            "behaviors.tsv: changed while it was read",
            format!(
                "{}:{line}: the row changed between the two passes",
                path.display()
            ),
        ));
        return row;
    }
    let col = |i: usize| &bytes[cols[i].0..cols[i].1];
    let mut seq = Sequence {
        user: String::from_utf8_lossy(col(1)).trim().to_string(),
        ..Sequence::default()
    };
    for field in [3usize, 4] {
        let name = BEHAVIOR_COLUMNS[field];
        for tok in col(field).split(|&b| b == b' ') {
            if tok.is_empty() {
                continue;
            }
            let tok = match utf8(tok, path, line, name) {
                Ok(t) => t,
                Err(msg) => {
                    row.skips.push(("behaviors.tsv: not valid UTF-8", msg));
                    return row;
                }
            };
            let id = if field == 3 {
                tok
            } else {
                match tok.rsplit_once('-') {
                    Some((id, "0")) if !id.is_empty() => id,
                    Some((id, "1")) if !id.is_empty() => continue,
                    _ => {
                        row.skips.push((
                            "behaviors.tsv: impression token without -0/-1 label (token left out)",
                            format!(
                                "{}:{line}: field `impressions`: token `{tok}`",
                                path.display()
                            ),
                        ));
                        continue;
                    }
                }
            };
            // Copy the token (it equals the catalogue's id) rather than the
            // catalogue's own string: that would be a cache miss per id.
            if bare_items || catalogue.contains(id) {
                if field == 3 {
                    seq.items.push(id.to_string());
                } else {
                    seq.shown_not_clicked.push(id.to_string());
                }
            } else {
                row.unresolved += 1;
                if row.unresolved_example.is_none() {
                    row.unresolved_example = Some(format!(
                        "{}:{line}: field `{name}`: id `{id}` is not in news.tsv (left out)",
                        path.display()
                    ));
                }
            }
        }
    }
    seq.items.shrink_to_fit();
    seq.shown_not_clicked.shrink_to_fit();
    row.seq = Some(seq);
    row
}

/// Counts one built row into the report and keeps its sequence.
fn apply_row(
    row: Row,
    path: &Path,
    report: &mut LoadReport,
    catalogue: &mut Catalogue,
    bare_items: bool,
    sequences: &mut Vec<Sequence>,
) -> Result<(), DataError> {
    for (reason, example) in row.skips {
        if reason == "behaviors.tsv: changed while it was read" {
            return Err(DataError::file(path, "the file changed while it was read"));
        }
        report.skip(reason, || example);
    }
    if let Some(e) = row.unresolved_example {
        if report.unresolved_ids < super::EXAMPLES_PER_REASON
            && report.examples.len() < super::MAX_REPORT_EXAMPLES
        {
            report.examples.push(e);
        }
    }
    report.unresolved_ids += row.unresolved;
    let Some(seq) = row.seq else {
        return Ok(());
    };
    if bare_items {
        for id in seq.items.iter().chain(&seq.shown_not_clicked) {
            if !catalogue.contains(id) {
                catalogue.insert(Item {
                    id: id.clone(),
                    fields: Vec::new(),
                });
            }
        }
    }
    if seq.items.is_empty() {
        let line = row.line;
        report.skip("behaviors.tsv: no history id resolves in news.tsv", || {
            format!(
                "{}:{line}: field `history`: none of its ids is in news.tsv",
                path.display()
            )
        });
        return Ok(());
    }
    sequences.push(seq);
    Ok(())
}

/// Parses MIND's `M/D/YYYY h:mm:ss AM|PM` into seconds (an ordering key).
pub fn parse_time(raw: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(raw).ok()?.trim();
    let (date, rest) = s.split_once(' ')?;
    let (clock, ampm) = rest.trim().split_once(' ')?;
    let mut d = date.split('/');
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let year: i64 = d.next()?.parse().ok()?;
    let mut c = clock.split(':');
    let hour: i64 = c.next()?.parse().ok()?;
    let minute: i64 = c.next()?.parse().ok()?;
    let second: i64 = c.next()?.parse().ok()?;
    if d.next().is_some()
        || c.next().is_some()
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(1..=12).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return None;
    }
    let hour24 = match ampm {
        "AM" => hour % 12,
        "PM" => hour % 12 + 12,
        _ => return None,
    };
    Some((days_from_civil(year, month, day) * 24 + hour24) * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_orders_am_pm_and_dates() {
        let t = |s: &str| parse_time(s.as_bytes()).unwrap();
        assert!(t("11/12/2019 2:14:46 PM") > t("11/12/2019 2:14:46 AM"));
        assert!(t("11/12/2019 12:00:00 AM") < t("11/12/2019 1:00:00 AM"));
        assert!(t("11/12/2019 12:00:00 PM") > t("11/12/2019 11:59:59 AM"));
        assert!(t("11/13/2019 12:00:01 AM") > t("11/12/2019 11:59:59 PM"));
        assert_eq!(t("1/1/1970 12:00:00 AM"), 0);
        assert!(parse_time(b"13/1/2019 1:00:00 PM").is_none());
        assert!(parse_time(b"yesterday").is_none());
    }
}
