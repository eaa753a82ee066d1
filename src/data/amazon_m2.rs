//! Amazon-M2 (KDD Cup 2023): `products_train.csv` + `sessions_train.csv`.
//!
//! Products: `id,locale,title,price,brand,color,size,model,material,author,desc`
//! (`desc` becomes the field `description`). Sessions: `prev_items,next_item,locale`,
//! where `prev_items` is a numpy-repr list string such as `['B08GYKNCCP' 'B08HCPTMJG']`,
//! possibly wrapped over several lines inside its quotes. Only rows of the chosen
//! locale are kept (UK by default, as in the paper). Any `sessions*.csv` is accepted
//! (`sessions_train.csv` is preferred when there are several); without a products
//! file the items are known by id only (reported).

use std::path::{Path, PathBuf};

use super::detect::files_matching;
use super::read::{check_width, utf8, CsvReader, CsvRecord, LineReader, Meter};
use super::{
    Catalogue, DataError, Dataset, Format, Item, ItemId, LoadOptions, LoadReport, Sequence,
};

/// Product columns kept as item text, as (column in the CSV, field name).
pub const PRODUCT_FIELDS: [(&str, &str); 9] = [
    ("title", "title"),
    ("price", "price"),
    ("brand", "brand"),
    ("color", "color"),
    ("size", "size"),
    ("model", "model"),
    ("material", "material"),
    ("author", "author"),
    ("desc", "description"),
];

fn pick_sessions(dir: &Path) -> Result<PathBuf, DataError> {
    let found = files_matching(dir, |n| n.starts_with("sessions") && n.ends_with(".csv"))?;
    if found.iter().any(|n| n == "sessions_train.csv") {
        return Ok(dir.join("sessions_train.csv"));
    }
    match found.as_slice() {
        [one] => Ok(dir.join(one)),
        [] => Err(DataError::file(
            dir,
            "missing file: the amazon-m2 format needs a `sessions*.csv` (e.g. sessions_train.csv)",
        )),
        many => Err(DataError::file(
            dir,
            format!(
                "several session files ({}) and no sessions_train.csv: keep one in the folder",
                many.join(", ")
            ),
        )),
    }
}

fn pick_products(dir: &Path) -> Result<Option<PathBuf>, DataError> {
    if dir.join("products_train.csv").is_file() {
        return Ok(Some(dir.join("products_train.csv")));
    }
    let found = files_matching(dir, |n| n.starts_with("products") && n.ends_with(".csv"))?;
    Ok(found.first().map(|n| dir.join(n)))
}

/// Loads an Amazon-M2 folder.
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let sessions = pick_sessions(dir)?;
    let products = pick_products(dir)?;
    let mut files: Vec<&Path> = vec![sessions.as_path()];
    if let Some(p) = &products {
        files.push(p.as_path());
    }
    let meter = Meter::new(opts, &files);
    let mut report = LoadReport::default();
    let mut catalogue = Catalogue::new();
    let locale = opts.locale.as_deref();
    match &products {
        Some(p) => {
            report.files.push(p.clone());
            read_products(p, locale, &meter, &mut report, &mut catalogue)?;
        }
        None => report.notes.push(format!(
            "no products_train.csv in {}: items are known by id only and have no text",
            dir.display()
        )),
    }
    report.files.push(sessions.clone());
    let sequences = read_sessions(
        &sessions,
        locale,
        &meter,
        &mut report,
        &mut catalogue,
        products.is_none(),
    )?;
    if products.is_none() {
        report.notes.push(format!(
            "{} items built from session ids have no text",
            catalogue.len()
        ));
    }
    Ok(Dataset::loaded(
        Format::AmazonM2,
        catalogue,
        sequences,
        report,
        None,
    ))
}

fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_products(
    path: &Path,
    locale: Option<&str>,
    meter: &Meter,
    report: &mut LoadReport,
    catalogue: &mut Catalogue,
) -> Result<(), DataError> {
    let mut csv = CsvReader::new(LineReader::open(path, meter)?);
    csv.read_header()?;
    let id_col = csv.column("id")?;
    let locale_col = csv.header.iter().position(|h| h == "locale");
    if locale.is_some() && locale_col.is_none() {
        return Err(DataError::row(
            path,
            1,
            "locale",
            "missing column `locale` in the header, needed by the locale filter \
             (load with no locale filter to keep all rows)",
        ));
    }
    let cols: Vec<(usize, &str)> = PRODUCT_FIELDS
        .iter()
        .filter_map(|(col, name)| csv.header.iter().position(|h| h == col).map(|i| (i, *name)))
        .collect();
    let label = file_label(path);
    let header = csv.header.clone();
    let mut rec = CsvRecord::default();
    'rows: while csv.next_record(&mut rec)? {
        let line = rec.line;
        if rec.len() == 1 && rec.get(0).is_empty() {
            continue;
        }
        report.rows_read += 1;
        if !check_width(
            report,
            path,
            rec.line,
            &header,
            rec.len(),
            "comma-separated",
        ) {
            continue;
        }
        if let (Some(want), Some(c)) = (locale, locale_col) {
            if rec.get(c) != want.as_bytes() {
                *report
                    .skipped
                    .entry(format!("{label}: locale is not {want} (filtered)"))
                    .or_default() += 1;
                continue;
            }
        }
        let id = match utf8(rec.get(id_col), path, line, "id") {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            Ok(_) => {
                report.skip(&format!("{label}: empty id"), || {
                    format!("{}:{line}: field `id`: empty", path.display())
                });
                continue;
            }
            Err(msg) => {
                report.skip(&format!("{label}: not valid UTF-8"), || msg);
                continue;
            }
        };
        let mut fields = Vec::with_capacity(cols.len());
        for &(c, name) in &cols {
            match utf8(rec.get(c), path, line, &header[c]) {
                Ok(v) => fields.push((name.to_string(), v.trim().to_string())),
                Err(msg) => {
                    report.skip(&format!("{label}: not valid UTF-8"), || msg);
                    continue 'rows;
                }
            }
        }
        let dup_id = id.clone();
        if !catalogue.insert(Item { id, fields }) {
            report.skip(
                &format!("{label}: duplicate id (the later row replaces the earlier)"),
                || {
                    format!(
                        "{}:{line}: field `id`: `{dup_id}` seen before",
                        path.display()
                    )
                },
            );
        }
    }
    Ok(())
}

/// Parses a numpy-repr (or Python list) string of ids: `['A' 'B'\n 'C']`, `['A', 'B']`.
pub fn parse_id_list(raw: &str) -> Result<Vec<&str>, String> {
    let s = raw.trim();
    let inner = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .ok_or_else(|| "expected a list in brackets like ['A' 'B']".to_string())?;
    let mut out = Vec::new();
    let mut rest = inner;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            return Ok(out);
        }
        let quote = rest.chars().next().unwrap_or('\'');
        if quote != '\'' && quote != '"' {
            let shown: String = rest.chars().take(20).collect();
            return Err(format!("expected a quoted id, found `{shown}`"));
        }
        let body = &rest[1..];
        let end = body
            .find(quote)
            .ok_or_else(|| format!("an id opened with {quote} is never closed"))?;
        let id = &body[..end];
        if id.is_empty() {
            return Err("empty id in the list".into());
        }
        out.push(id);
        rest = &body[end + 1..];
    }
}

fn read_sessions(
    path: &Path,
    locale: Option<&str>,
    meter: &Meter,
    report: &mut LoadReport,
    catalogue: &mut Catalogue,
    bare_items: bool,
) -> Result<Vec<Sequence>, DataError> {
    let mut csv = CsvReader::new(LineReader::open(path, meter)?);
    csv.read_header()?;
    let prev_col = csv.column("prev_items")?;
    let next_col = csv.column("next_item")?;
    let locale_col = csv.header.iter().position(|h| h == "locale");
    if locale.is_some() && locale_col.is_none() {
        return Err(DataError::row(
            path,
            1,
            "locale",
            "missing column `locale` in the header, needed by the locale filter",
        ));
    }
    let label = file_label(path);
    let header = csv.header.clone();
    let mut rec = CsvRecord::default();
    let mut sequences = Vec::new();
    let mut session_no = 0u64;
    let resolve = |id: &str, catalogue: &mut Catalogue| -> Option<ItemId> {
        if catalogue.contains(id) {
            return Some(ItemId::new(id));
        }
        if bare_items {
            catalogue.insert(Item {
                id: id.to_string(),
                fields: Vec::new(),
            });
            return Some(ItemId::new(id));
        }
        None
    };
    while csv.next_record(&mut rec)? {
        let line = rec.line;
        if rec.len() == 1 && rec.get(0).is_empty() {
            continue;
        }
        report.rows_read += 1;
        session_no += 1;
        if !check_width(
            report,
            path,
            rec.line,
            &header,
            rec.len(),
            "comma-separated",
        ) {
            continue;
        }
        if let (Some(want), Some(c)) = (locale, locale_col) {
            if rec.get(c) != want.as_bytes() {
                *report
                    .skipped
                    .entry(format!("{label}: locale is not {want} (filtered)"))
                    .or_default() += 1;
                continue;
            }
        }
        let (prev, next) = match (
            utf8(rec.get(prev_col), path, line, "prev_items"),
            utf8(rec.get(next_col), path, line, "next_item"),
        ) {
            (Ok(p), Ok(n)) => (p, n.trim()),
            (Err(msg), _) | (_, Err(msg)) => {
                report.skip(&format!("{label}: not valid UTF-8"), || msg);
                continue;
            }
        };
        let ids = match parse_id_list(prev) {
            Ok(ids) => ids,
            Err(why) => {
                report.skip(&format!("{label}: unreadable prev_items"), || {
                    format!("{}:{line}: field `prev_items`: {why}", path.display())
                });
                continue;
            }
        };
        if ids.is_empty() {
            report.skip(&format!("{label}: empty prev_items"), || {
                format!("{}:{line}: field `prev_items`: empty list", path.display())
            });
            continue;
        }
        if next.is_empty() {
            report.skip(&format!("{label}: empty next_item"), || {
                format!("{}:{line}: field `next_item`: empty", path.display())
            });
            continue;
        }
        let Some(next_item) = resolve(next, catalogue) else {
            report.unresolved_ids += 1;
            report.skip(
                &format!("{label}: next_item not in the products file"),
                || {
                    format!(
                        "{}:{line}: field `next_item`: `{next}` unresolved",
                        path.display()
                    )
                },
            );
            continue;
        };
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            match resolve(id, catalogue) {
                Some(id) => items.push(id),
                None => report.unresolved(|| {
                    format!(
                        "{}:{line}: field `prev_items`: id `{id}` is not in the products file (left out)",
                        path.display()
                    )
                }),
            }
        }
        if items.is_empty() {
            report.skip(&format!("{label}: no prev_items id resolves"), || {
                format!(
                    "{}:{line}: field `prev_items`: no id resolves",
                    path.display()
                )
            });
            continue;
        }
        sequences.push(Sequence {
            user: format!("S{session_no}"),
            items,
            shown_not_clicked: Vec::new(),
            next_item: Some(next_item),
        });
    }
    Ok(sequences)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_lists_parse_with_wraps_and_commas() {
        assert_eq!(
            parse_id_list("['B08GYKNCCP' 'B08HCPTMJG']").unwrap(),
            vec!["B08GYKNCCP", "B08HCPTMJG"]
        );
        assert_eq!(
            parse_id_list("['A1' 'B2'\n 'C3']").unwrap(),
            vec!["A1", "B2", "C3"]
        );
        assert_eq!(parse_id_list("['A1', \"B2\"]").unwrap(), vec!["A1", "B2"]);
        assert!(parse_id_list("[]").unwrap().is_empty());
        assert!(parse_id_list("'A1' 'B2'").is_err());
        assert!(parse_id_list("['A1' 'B2]").is_err());
        assert!(parse_id_list("[A1 B2]").is_err());
    }
}
