//! MIND: raw `news.tsv` + `behaviors.tsv` (tab-separated, no header, no quoting).
//!
//! Sequences as the paper builds them: one impression row per user (the earliest
//! by its time; equal times keep the earlier line), whose history clicks become the
//! sequence (the last click is the target at `prepare` time). The impression's
//! shown-but-not-clicked items (`id-0`) are kept as an alternative negative source.
//! History or impression ids absent from `news.tsv` are counted and left out.

use std::collections::HashMap;
use std::path::Path;

use super::detect::required;
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
    let meter = Meter::new(opts, &[news.as_path(), behaviors.as_path()]);
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
    report.items = catalogue.len() as u64;
    report.sequences = sequences.len() as u64;
    Ok(Dataset {
        format: Format::Mind,
        catalogue,
        sequences,
        report,
        prepared_cases: None,
    })
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

/// The chosen (earliest) impression row of one user.
struct Chosen {
    time_s: i64,
    line: u64,
    seq: Sequence,
    unresolved: u32,
    unresolved_example: Option<String>,
}

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
    let mut users: HashMap<String, usize> = HashMap::new();
    let mut chosen: Vec<Chosen> = Vec::new();
    let mut examples_kept = 0usize;
    'rows: while lines.next_line(&mut buf)? {
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
        let history = col(3).trim_ascii();
        if history.is_empty() {
            report.skip("behaviors.tsv: empty history", || {
                format!("{}:{line}: field `history`: empty", path.display())
            });
            continue;
        }
        let slot = users.get(user).copied();
        if let Some(i) = slot {
            if (chosen[i].time_s, chosen[i].line) <= (time_s, line) {
                report
                    .skipped
                    .entry("behaviors.tsv: later impression of a user (the first is kept)".into())
                    .and_modify(|n| *n += 1)
                    .or_insert(1);
                continue;
            }
        }
        // This row is the user's earliest so far: build its sequence.
        let mut seq = Sequence {
            user: user.to_string(),
            ..Sequence::default()
        };
        let mut unresolved = 0u32;
        let mut unresolved_example = None;
        for field in [3usize, 4] {
            let name = BEHAVIOR_COLUMNS[field];
            for tok in col(field).split(|&b| b == b' ') {
                if tok.is_empty() {
                    continue;
                }
                let tok = match utf8(tok, path, line, name) {
                    Ok(t) => t,
                    Err(msg) => {
                        report.skip("behaviors.tsv: not valid UTF-8", || msg);
                        continue 'rows;
                    }
                };
                let id = if field == 3 {
                    tok
                } else {
                    match tok.rsplit_once('-') {
                        Some((id, "0")) if !id.is_empty() => id,
                        Some((id, "1")) if !id.is_empty() => continue,
                        _ => {
                            report.skip(
                                "behaviors.tsv: impression token without -0/-1 label (token left out)",
                                || {
                                    format!(
                                        "{}:{line}: field `impressions`: token `{tok}`",
                                        path.display()
                                    )
                                },
                            );
                            continue;
                        }
                    }
                };
                let resolved = match catalogue.position(id) {
                    Some(p) => Some(catalogue.items()[p].id.clone()),
                    None if bare_items => {
                        catalogue.insert(Item {
                            id: id.to_string(),
                            fields: Vec::new(),
                        });
                        Some(id.to_string())
                    }
                    None => None,
                };
                match resolved {
                    Some(id) if field == 3 => seq.items.push(id),
                    Some(id) => seq.shown_not_clicked.push(id),
                    None => {
                        unresolved += 1;
                        if unresolved_example.is_none()
                            && examples_kept < super::EXAMPLES_PER_REASON as usize
                        {
                            examples_kept += 1;
                            unresolved_example = Some(format!(
                                "{}:{line}: field `{name}`: id `{id}` is not in news.tsv (left out)",
                                path.display()
                            ));
                        }
                    }
                }
            }
        }
        seq.items.shrink_to_fit();
        seq.shown_not_clicked.shrink_to_fit();
        let row = Chosen {
            time_s,
            line,
            seq,
            unresolved,
            unresolved_example,
        };
        match slot {
            Some(i) => {
                report
                    .skipped
                    .entry("behaviors.tsv: later impression of a user (the first is kept)".into())
                    .and_modify(|n| *n += 1)
                    .or_insert(1);
                chosen[i] = row;
            }
            None => {
                users.insert(user.to_string(), chosen.len());
                chosen.push(row);
            }
        }
    }
    drop(users);
    chosen.sort_by_key(|c| c.line);
    let mut sequences = Vec::with_capacity(chosen.len());
    for c in chosen {
        report.unresolved_ids += u64::from(c.unresolved);
        if let Some(e) = c.unresolved_example {
            if report.examples.len() < super::MAX_REPORT_EXAMPLES {
                report.examples.push(e);
            }
        }
        if c.seq.items.is_empty() {
            let line = c.line;
            report.skip("behaviors.tsv: no history id resolves in news.tsv", || {
                format!(
                    "{}:{line}: field `history`: none of its ids is in news.tsv",
                    path.display()
                )
            });
            continue;
        }
        sequences.push(c.seq);
    }
    Ok(sequences)
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
