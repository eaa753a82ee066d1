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
use super::read::{check_width, split_into, utf8, ChunkReader, LineReader, Meter};
use super::{
    Catalogue, DataError, Dataset, Format, Item, ItemId, LoadOptions, LoadReport, Sequence,
    MAX_REPORT_EXAMPLES,
};

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
    // behaviors.tsv is read twice (see `first_rows` and `read_behaviors`).
    let meter = Meter::new(
        opts,
        &[news.as_path(), behaviors.as_path(), behaviors.as_path()],
    );
    let mut report = LoadReport::default();
    let mut catalogue = Catalogue::new();
    let keep = if has_news {
        report.files.push(news.clone());
        // The first pass over behaviors.tsv needs no item, so it runs beside
        // news.tsv, counting into a report of its own.
        let mut first_report = LoadReport::default();
        let (news_read, keep) = rayon::join(
            || read_news(&news, &meter, &mut report, &mut catalogue),
            || first_rows(&behaviors, &meter, &mut first_report, opts.reference_rows),
        );
        news_read?;
        let keep = keep?;
        append_report(&mut report, first_report);
        keep
    } else {
        report.notes.push(format!(
            "{} is missing: items are known by id only and have no text",
            news.display()
        ));
        first_rows(&behaviors, &meter, &mut report, opts.reference_rows)?
    };
    report.files.push(behaviors.clone());
    let sequences = read_behaviors(
        &behaviors,
        &keep,
        &meter,
        &mut report,
        &mut catalogue,
        !has_news,
        opts.reference_rows && has_news,
    )?;
    Ok(Dataset::loaded(
        Format::Mind,
        catalogue,
        sequences,
        report,
        None,
    ))
}

/// Adds `later`, the report of a file read after those of `report`, to `report`,
/// as if one report had counted both. Their skip reasons differ (each names its
/// file), so only the cap on examples links them.
fn append_report(report: &mut LoadReport, later: LoadReport) {
    report.files.extend(later.files);
    report.rows_read += later.rows_read;
    for (reason, n) in later.skipped {
        *report.skipped.entry(reason).or_default() += n;
    }
    report.unresolved_ids += later.unresolved_ids;
    let room = MAX_REPORT_EXAMPLES.saturating_sub(report.examples.len());
    report
        .examples
        .extend(later.examples.into_iter().take(room));
    report.notes.extend(later.notes);
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
        if !check_width(
            report,
            path,
            line,
            &NEWS_COLUMNS,
            cols.len(),
            "tab-separated",
        ) {
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
    /// Where the row is in the file, without its line end.
    span: RowSpan,
}

/// Where a row is in the file: its first byte and its length without the line end.
#[derive(Clone, Copy)]
struct RowSpan {
    offset: u64,
    len: usize,
}

/// Pass 2 over `behaviors.tsv`: builds the sequences of the rows `keep` names (the
/// rows [`first_rows`] found, in file order), so that no work or memory goes to
/// rows that are not kept. The file is read in large chunks and the kept rows are
/// taken from them in place, by where pass 1 found them; the next chunk is read
/// while the kept rows of the current one are built in parallel.
fn read_behaviors(
    path: &Path,
    keep: &[(u64, RowSpan)],
    meter: &Meter,
    report: &mut LoadReport,
    catalogue: &mut Catalogue,
    bare_items: bool,
    keep_unresolved: bool,
) -> Result<Vec<Sequence>, DataError> {
    let mut chunks = ChunkReader::open(path, meter)?;
    let mut sequences = Vec::with_capacity(keep.len());
    let mut next = keep.iter().copied().peekable();
    let (mut chunk, mut next_chunk) = (Vec::new(), Vec::new());
    let changed = || DataError::file(path, "the file changed while it was read");
    let mut have = next.peek().is_some() && chunks.read_chunk(&mut chunk)?;
    // Where the chunk starts in the file.
    let mut chunk_offset = 0u64;
    while next.peek().is_some() {
        if !have {
            return Err(changed());
        }
        let mut batch: Vec<(u64, &[u8])> = Vec::new();
        let chunk_end = chunk_offset + chunk.len() as u64;
        while let Some(&(line, span)) = next.peek() {
            if span.offset >= chunk_end {
                break;
            }
            // The row and its line end, as pass 1 saw them: a row never spans two
            // chunks, and starts a line.
            let start = span.offset.saturating_sub(chunk_offset) as usize;
            let end = start + span.len;
            let before_ok = start == 0 || chunk.get(start - 1) == Some(&b'\n');
            let after_ok = matches!(chunk.get(end), None | Some(b'\n' | b'\r'));
            if span.offset < chunk_offset || end > chunk.len() || !before_ok || !after_ok {
                return Err(changed());
            }
            batch.push((line, &chunk[start..end]));
            next.next();
        }
        let more = next.peek().is_some();
        let cat: &Catalogue = catalogue;
        let (rows, read) = rayon::join(
            || {
                use rayon::prelude::*;
                batch
                    .par_iter()
                    .map_init(Scratch::default, |scratch, &(line, bytes)| {
                        build_row(bytes, line, path, cat, bare_items, keep_unresolved, scratch)
                    })
                    .collect::<Vec<Row>>()
            },
            || {
                if more {
                    chunks.read_chunk(&mut next_chunk)
                } else {
                    Ok(false)
                }
            },
        );
        for row in rows {
            apply_row(
                row,
                path,
                report,
                catalogue,
                bare_items || keep_unresolved,
                &mut sequences,
            )?;
        }
        have = read?;
        chunk_offset = chunk_end;
        std::mem::swap(&mut chunk, &mut next_chunk);
    }
    chunks.finish()?;
    Ok(sequences)
}

/// Pass 1 over `behaviors.tsv`: the line and place of each user's earliest row, in
/// file order, from the first three columns only. Three chunks are in flight: one
/// is scanned for users and times (then the next one is read) while the one before
/// is matched against the users seen so far.
fn first_rows(
    path: &Path,
    meter: &Meter,
    report: &mut LoadReport,
    first_in_file: bool,
) -> Result<Vec<(u64, RowSpan)>, DataError> {
    let mut chunks = ChunkReader::open(path, meter)?;
    let mut scan = Scan {
        path,
        report,
        line: 0,
        offset: 0,
    };
    let mut users = Users {
        first_in_file,
        ..Users::default()
    };
    // Scanned (to match), read (to scan), and free (to read into).
    let (mut scanned, mut read, mut free) = (Vec::new(), Vec::new(), Vec::new());
    let (mut scanned_rows, mut read_rows) = (Vec::new(), Vec::new());
    let mut have_read = chunks.read_chunk(&mut read)?;
    while have_read || !scanned_rows.is_empty() {
        let (read_more, ()) = rayon::join(
            || {
                read_rows.clear();
                if have_read {
                    scan.chunk(&read, &mut read_rows);
                    chunks.read_chunk(&mut free)
                } else {
                    Ok(false)
                }
            },
            || users.keep(&scanned, &scanned_rows),
        );
        have_read = read_more?;
        std::mem::swap(&mut scanned, &mut read);
        std::mem::swap(&mut read, &mut free);
        std::mem::swap(&mut scanned_rows, &mut read_rows);
    }
    let Users {
        best, later_rows, ..
    } = users;
    if later_rows > 0 {
        scan.report.skipped.insert(
            "behaviors.tsv: later impression of a user (the first is kept)".into(),
            later_rows,
        );
    }
    let mut keep: Vec<(u64, RowSpan)> = best.into_iter().map(|b| (b.line, b.span)).collect();
    keep.sort_unstable_by_key(|k| k.0);
    Ok(keep)
}

/// A row that names a user and a time: where the user is in its chunk, the time,
/// the line, and where the row is in the file.
struct UserRow {
    user: (usize, usize),
    time_s: i64,
    line: u64,
    span: RowSpan,
}

/// Pass 1's scan: rows, their users and times, and the skipped rows counted.
struct Scan<'p, 'r> {
    path: &'p Path,
    report: &'r mut LoadReport,
    /// Lines scanned so far.
    line: u64,
    /// Where the next chunk starts in the file.
    offset: u64,
}

impl Scan<'_, '_> {
    /// Scans one chunk of whole lines into `rows`.
    fn chunk(&mut self, chunk: &[u8], rows: &mut Vec<UserRow>) {
        // One scan finds both the line ends and the tabs of each line.
        let mut start = 0;
        let mut tabs = [0usize; 4];
        let mut n_tabs = 0;
        for i in memchr::memchr2_iter(b'\t', b'\n', chunk) {
            if chunk[i] == b'\t' {
                if n_tabs < tabs.len() {
                    tabs[n_tabs] = i;
                }
                n_tabs += 1;
                continue;
            }
            self.line += 1;
            let end = if i > start && chunk[i - 1] == b'\r' {
                i - 1
            } else {
                i
            };
            rows.extend(self.row(chunk, start, end, &tabs, n_tabs));
            start = i + 1;
            n_tabs = 0;
        }
        if start < chunk.len() {
            // The file's last line, without a line end.
            self.line += 1;
            rows.extend(self.row(chunk, start, chunk.len(), &tabs, n_tabs));
        }
        self.offset += chunk.len() as u64;
    }

    /// Reads the user and time of the row `chunk[start..end]`, or counts why the
    /// row is skipped. `tabs` holds where the row's first tabs are (up to 4),
    /// `n_tabs` their number.
    fn row(
        &mut self,
        chunk: &[u8],
        start: usize,
        end: usize,
        tabs: &[usize; 4],
        n_tabs: usize,
    ) -> Option<UserRow> {
        let (path, report, line) = (self.path, &mut *self.report, self.line);
        if start == end {
            return None;
        }
        report.rows_read += 1;
        let n = n_tabs + 1;
        if !check_width(report, path, line, &BEHAVIOR_COLUMNS, n, "tab-separated") {
            return None;
        }
        let span = |i: usize| {
            let a = if i == 0 { start } else { tabs[i - 1] + 1 };
            let b = if i < 4 { tabs[i] } else { end };
            (a, b)
        };
        let col = |i: usize| {
            let (a, b) = span(i);
            &chunk[a..b]
        };
        let raw_user = match utf8(col(1), path, line, "user") {
            Ok(u) if !u.trim().is_empty() => u,
            Ok(_) => {
                report.skip("behaviors.tsv: empty user", || {
                    format!("{}:{line}: field `user`: empty", path.display())
                });
                return None;
            }
            Err(msg) => {
                report.skip("behaviors.tsv: not valid UTF-8", || msg);
                return None;
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
            return None;
        };
        if col(3).trim_ascii().is_empty() {
            report.skip("behaviors.tsv: empty history", || {
                format!("{}:{line}: field `history`: empty", path.display())
            });
            return None;
        }
        // The trimmed user, as a span of the chunk.
        let user_start = span(1).0 + (raw_user.len() - raw_user.trim_start().len());
        Some(UserRow {
            user: (user_start, user_start + raw_user.trim().len()),
            time_s,
            line,
            span: RowSpan {
                offset: self.offset + start as u64,
                len: end - start,
            },
        })
    }
}

/// Pass 1's users: the earliest row of each so far (or the first in file order, as
/// the reference's `drop_duplicates(keep='first')` keeps, with `first_in_file`).
#[derive(Default)]
struct Users {
    index: IdIndex,
    best: Vec<Best>,
    later_rows: u64,
    first_in_file: bool,
}

impl Users {
    /// Keeps each user's earliest row among `rows` (of `chunk`) and those before.
    fn keep(&mut self, chunk: &[u8], rows: &[UserRow]) {
        let user = |r: &UserRow| &chunk[r.user.0..r.user.1];
        // The users' slots, then the earliest rows of those found, are loaded for
        // all rows before any is matched, so that their cache misses overlap.
        let mut acc = 0;
        for r in rows {
            if let Some(i) = self.index.home_position(user(r)) {
                acc ^= self.best.get(i).map_or(0, |b| b.line);
            }
        }
        std::hint::black_box(acc);
        for r in rows {
            let row = Best {
                time_s: r.time_s,
                line: r.line,
                span: r.span,
            };
            match self.index.insert_bytes(user(r)) {
                (_, true) => self.best.push(row),
                (i, false) => {
                    self.later_rows += 1;
                    let b = &mut self.best[i];
                    if !self.first_in_file && (row.time_s, row.line) < (b.time_s, b.line) {
                        *b = row;
                    }
                }
            }
        }
    }
}

/// What pass 2 made of one kept row.
struct Row {
    line: u64,
    seq: Option<Sequence>,
    /// Skipped tokens or the skipped row: (reason, example).
    skips: Vec<(&'static str, String)>,
    unresolved: u64,
    unresolved_example: Option<String>,
}

/// Buffers [`build_row`] reuses from row to row.
#[derive(Default)]
struct Scratch<'b> {
    ids: Vec<&'b str>,
    found: Vec<bool>,
}

/// Builds one kept row's sequence (pure: runs on any thread). With `bare_items`,
/// ids absent from the catalogue are kept (and added by [`apply_row`]).
fn build_row<'b>(
    bytes: &'b [u8],
    line: u64,
    path: &Path,
    catalogue: &Catalogue,
    bare_items: bool,
    keep_unresolved: bool,
    scratch: &mut Scratch<'b>,
) -> Row {
    let mut row = Row {
        line,
        seq: None,
        skips: Vec::new(),
        unresolved: 0,
        unresolved_example: None,
    };
    let mut cols = [(0usize, 0usize); 5];
    let mut n = 0;
    let mut start = 0;
    for i in memchr::memchr_iter(b'\t', bytes) {
        if n < cols.len() {
            cols[n] = (start, i);
        }
        n += 1;
        start = i + 1;
    }
    if n + 1 != BEHAVIOR_COLUMNS.len() {
        row.skips.push((
            "behaviors.tsv: changed while it was read",
            format!(
                "{}:{line}: the row changed between the two passes",
                path.display()
            ),
        ));
        return row;
    }
    cols[4] = (start, bytes.len());
    let col = |i: usize| &bytes[cols[i].0..cols[i].1];
    let mut seq = Sequence {
        user: String::from_utf8_lossy(col(1)).trim().to_string(),
        ..Sequence::default()
    };
    // Per field: the ids first, then one batched catalogue check (its cache misses
    // overlap), then the kept ids in order.
    let Scratch { ids, found } = scratch;
    for field in [3usize, 4] {
        let name = BEHAVIOR_COLUMNS[field];
        let raw = col(field);
        // Checked as a whole; token by token only when it is not UTF-8, for the message.
        let text = std::str::from_utf8(raw).ok();
        let mut bad_utf8 = None;
        ids.clear();
        let mut start = 0;
        for end in SpacesThenEnd::new(raw) {
            let (a, b) = (start, end);
            start = end + 1;
            if a == b {
                continue;
            }
            // `a` and `b` are at spaces or the ends: char boundaries.
            let tok = match text {
                Some(t) => &t[a..b],
                None => match utf8(&raw[a..b], path, line, name) {
                    Ok(t) => t,
                    Err(msg) => {
                        bad_utf8 = Some(msg);
                        break;
                    }
                },
            };
            let id = if field == 3 {
                tok
            } else {
                // `id-0` is shown but not clicked, `id-1` clicked.
                match (tok.strip_suffix("-0"), tok.strip_suffix("-1")) {
                    (Some(id), _) if !id.is_empty() => id,
                    (_, Some(id)) if !id.is_empty() => continue,
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
            ids.push(id);
        }
        if bare_items {
            found.clear();
            found.resize(ids.len(), true);
        } else {
            catalogue.contains_each(ids, found);
        }
        let out = if field == 3 {
            &mut seq.items
        } else {
            &mut seq.shown_not_clicked
        };
        out.reserve_exact(found.iter().filter(|&&f| f).count());
        for (&id, &f) in ids.iter().zip(found.iter()) {
            if f {
                out.push(ItemId::new(id));
            } else {
                row.unresolved += 1;
                if row.unresolved_example.is_none() {
                    row.unresolved_example = Some(format!(
                        "{}:{line}: field `{name}`: id `{id}` is not in news.tsv ({})",
                        path.display(),
                        if keep_unresolved {
                            "kept as an item without text, as the reference counts it"
                        } else {
                            "left out"
                        }
                    ));
                }
                if keep_unresolved {
                    out.push(ItemId::new(id));
                }
            }
        }
        if let Some(msg) = bad_utf8 {
            row.skips.push(("behaviors.tsv: not valid UTF-8", msg));
            return row;
        }
    }
    row.seq = Some(seq);
    row
}

/// Positions of the spaces in a field, then its length. Ids are a few bytes long,
/// so the field is read a word at a time (a memchr call per id costs more).
struct SpacesThenEnd<'b> {
    bytes: &'b [u8],
    /// Where the word in `spaces` starts.
    at: usize,
    /// One high bit per space byte of the current word.
    spaces: u64,
    ended: bool,
}

impl<'b> SpacesThenEnd<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        let mut s = Self {
            bytes,
            at: 0,
            spaces: 0,
            ended: false,
        };
        s.spaces = s.word_spaces(0);
        s
    }

    /// The spaces of the (up to) 8 bytes at `at`: the high bit of each byte that
    /// is a space (exact: no carry crosses a byte).
    fn word_spaces(&self, at: usize) -> u64 {
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        let rest = self.bytes.get(at..).unwrap_or_default();
        let w = match rest.first_chunk::<8>() {
            Some(w) => *w,
            None => {
                // Padding bytes are not spaces.
                let mut w = [b'x'; 8];
                w[..rest.len()].copy_from_slice(rest);
                w
            }
        };
        let x = u64::from_le_bytes(w) ^ 0x2020_2020_2020_2020;
        !(((x & LOW7) + LOW7) | x | LOW7)
    }
}

impl Iterator for SpacesThenEnd<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            if self.spaces != 0 {
                let i = self.at + self.spaces.trailing_zeros() as usize / 8;
                self.spaces &= self.spaces - 1;
                return Some(i);
            }
            if self.at + 8 >= self.bytes.len() {
                if self.ended {
                    return None;
                }
                self.ended = true;
                return Some(self.bytes.len());
            }
            self.at += 8;
            self.spaces = self.word_spaces(self.at);
        }
    }
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
                    id: id.to_string(),
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
    parse_time_plain(raw).or_else(|| parse_time_lenient(raw))
}

/// [`parse_time`] for the common spelling: ASCII digits, single separators, no
/// surrounding space. It gives the same value as [`parse_time_lenient`] for every
/// input it accepts; anything else goes to that one.
fn parse_time_plain(s: &[u8]) -> Option<i64> {
    let mut i = 0;
    let mut num = |end: u8, max_digits: usize| -> Option<i64> {
        let start = i;
        let mut v = 0i64;
        while i < s.len() && i - start < max_digits && s[i].is_ascii_digit() {
            v = v * 10 + i64::from(s[i] - b'0');
            i += 1;
        }
        if i == start || s.get(i) != Some(&end) {
            return None;
        }
        i += 1;
        Some(v)
    };
    let (month, day, year) = (num(b'/', 2)?, num(b'/', 2)?, num(b' ', 4)?);
    let (hour, minute, second) = (num(b':', 2)?, num(b':', 2)?, num(b' ', 2)?);
    let pm = match &s[i..] {
        b"AM" => false,
        b"PM" => true,
        _ => return None,
    };
    seconds(year, month, day, hour, minute, second, pm)
}

/// [`parse_time`] for any spelling Rust's integer parsing and `str::trim` accept.
fn parse_time_lenient(raw: &[u8]) -> Option<i64> {
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
    if d.next().is_some() || c.next().is_some() {
        return None;
    }
    let pm = match ampm {
        "AM" => false,
        "PM" => true,
        _ => return None,
    };
    seconds(year, month, day, hour, minute, second, pm)
}

/// Seconds since 1970 of a checked 12-hour date and time.
fn seconds(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    pm: bool,
) -> Option<i64> {
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(1..=12).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return None;
    }
    let hour24 = hour % 12 + if pm { 12 } else { 0 };
    crate::calendar::days_from_civil(year, month, day)?
        .checked_mul(24)?
        .checked_add(hour24)?
        .checked_mul(3600)?
        .checked_add(minute * 60 + second)
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

    #[test]
    fn plain_and_lenient_time_parsing_agree() {
        for s in [
            "11/12/2019 2:14:46 PM",
            "1/1/1970 12:00:00 AM",
            "2/29/2019 1:00:00 PM",
            "12/31/9999 11:59:60 PM",
            "01/02/0003 04:05:06 AM",
        ] {
            let plain = parse_time_plain(s.as_bytes());
            assert!(plain.is_some(), "{s}");
            assert_eq!(plain, parse_time_lenient(s.as_bytes()), "{s}");
        }
        // Spellings only the lenient parser reads still parse, to the same time.
        let t = parse_time(b"11/12/2019 2:14:46 PM");
        for s in [
            "+11/12/2019 2:14:46 PM",
            " 11/12/2019 2:14:46 PM ",
            "11/12/02019 2:14:46 PM",
        ] {
            assert!(parse_time_plain(s.as_bytes()).is_none(), "{s}");
            assert_eq!(parse_time(s.as_bytes()), t, "{s}");
        }
        for s in [
            "11/12/2019 13:00:00 PM",
            "11/12/2019 1:00:00 pm",
            "11/12/2019 1:00 PM",
            "11/12/2019 1:00:00 PM x",
        ] {
            assert_eq!(parse_time(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn spaces_then_end_finds_every_space() {
        let mut text = Vec::new();
        for n in 0..40u8 {
            let naive: Vec<usize> = text
                .iter()
                .enumerate()
                .filter(|&(_, &b)| b == b' ')
                .map(|(i, _)| i)
                .chain([text.len()])
                .collect();
            assert_eq!(
                SpacesThenEnd::new(&text).collect::<Vec<_>>(),
                naive,
                "{text:?}"
            );
            // Spaces beside bytes that differ from a space by one bit or carry.
            text.push([b' ', b'!', b'\0', b'\xa0', b' ', b'0', 0x1f, b' '][n as usize % 8]);
        }
    }

    #[test]
    fn years_out_of_range_are_unreadable_not_a_panic() {
        assert_eq!(parse_time(b"11/12/9000000000000000000 1:00:00 PM"), None);
        assert_eq!(parse_time(b"1/12/-9223372036854775808 1:00:00 PM"), None);
        assert!(parse_time(b"11/12/-2019 1:00:00 PM").is_some());
    }
}
