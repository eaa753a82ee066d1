//! Streaming readers shared by the loaders: numbered lines with progress and
//! cancellation, field splitting, and an RFC 4180 CSV record reader that follows
//! quoted fields over line breaks and reports an unclosed quote.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{DataError, LoadOptions};

/// Progress over all the files of one load, and the cancel check. Files may be
/// read at the same time, on several threads: each reader adds the bytes it read,
/// and the progress shown never goes back.
pub(crate) struct Meter<'o, 'a> {
    opts: &'o LoadOptions<'a>,
    read_bytes: AtomicU64,
    /// The last progress shown; the lock keeps the calls in order.
    shown: Mutex<u64>,
    total_bytes: u64,
}

impl<'o, 'a> Meter<'o, 'a> {
    /// `files`: every file the load will read (missing ones count as 0 bytes).
    pub fn new(opts: &'o LoadOptions<'a>, files: &[&Path]) -> Self {
        let total_bytes = files
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        Self {
            opts,
            read_bytes: AtomicU64::new(0),
            shown: Mutex::new(0),
            total_bytes,
        }
    }

    /// Counts `bytes` more read, shows the progress, and checks for cancellation.
    fn advance(&self, bytes: u64) -> Result<(), DataError> {
        let done = self.read_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(cancel) = &self.opts.cancel {
            if cancel.is_cancelled() {
                return Err(DataError::Cancelled);
            }
        }
        if let Some(cb) = self.opts.progress {
            let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
            *shown = (*shown).max(done);
            cb(*shown, self.total_bytes.max(*shown));
        }
        Ok(())
    }
}

/// Bytes of one file counted into a [`Meter`] so far.
#[derive(Default)]
struct Counted {
    /// Bytes read.
    bytes: u64,
    /// Bytes passed to the meter.
    metered: u64,
}

impl Counted {
    /// Counts `n` bytes read; passes them on to the meter every [`TICK_BYTES`].
    fn read(&mut self, n: usize, meter: &Meter) -> Result<(), DataError> {
        self.bytes += n as u64;
        if self.bytes - self.metered >= TICK_BYTES {
            self.finish(self.bytes, meter)?;
        }
        Ok(())
    }

    /// Passes the file's bytes up to `total` on to the meter.
    fn finish(&mut self, total: u64, meter: &Meter) -> Result<(), DataError> {
        let n = total.saturating_sub(self.metered);
        self.metered = self.metered.max(total);
        meter.advance(n)
    }
}

const TICK_BYTES: u64 = 1 << 20;

/// Opens `path` and its length; a missing or 0-byte file is an error that names it.
fn open_nonempty(path: &Path) -> Result<(File, u64), DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    if len == 0 {
        return Err(DataError::file(path, "file is empty (0 bytes)"));
    }
    Ok((file, len))
}

/// Reads a file line by line (without line endings), counting lines and bytes.
pub(crate) struct LineReader<'m, 'o, 'a> {
    path: PathBuf,
    inner: BufReader<File>,
    line_no: u64,
    counted: Counted,
    finished: bool,
    meter: &'m Meter<'o, 'a>,
}

impl<'m, 'o, 'a> LineReader<'m, 'o, 'a> {
    /// Opens `path`; a missing or 0-byte file is an error that names it.
    pub fn open(path: &Path, meter: &'m Meter<'o, 'a>) -> Result<Self, DataError> {
        let (file, _) = open_nonempty(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            inner: BufReader::with_capacity(1 << 20, file),
            line_no: 0,
            counted: Counted::default(),
            finished: false,
            meter,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of the line last read (1-based).
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// Reads the next line into `buf` (cleared first), without `\n` / `\r\n`.
    /// Returns `false` at the end of the file.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, DataError> {
        buf.clear();
        if self.finished {
            return Ok(false);
        }
        let n = (&mut self.inner)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', buf)
            .map_err(|e| DataError::io(&self.path, e))?;
        if n > MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
            return Err(line_too_long(&self.path, self.line_no + 1));
        }
        if n == 0 {
            self.finished = true;
            self.counted.finish(self.counted.bytes, self.meter)?;
            return Ok(false);
        }
        self.line_no += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        self.counted.read(n, self.meter)?;
        Ok(true)
    }
}

/// Bytes a [`ChunkReader`] reads at a time.
const CHUNK_BYTES: usize = 1 << 20;

/// The longest line a dataset file may have (64 MiB). Real rows are kilobytes; the
/// readers hold a line in memory whole, so a file without line ends would otherwise be
/// read into memory entire.
pub const MAX_LINE_BYTES: usize = 64 << 20;

fn line_too_long(path: &Path, line: u64) -> DataError {
    DataError::file(
        path,
        format!("line {line} is longer than {MAX_LINE_BYTES} bytes (not a line-based text file?)"),
    )
}

/// Reads a file in chunks of whole lines into buffers the caller owns, so that
/// one chunk can be read while another is parsed, and lines are scanned in place
/// rather than copied out one by one. Lines end at `\n`, as for [`LineReader`].
pub(crate) struct ChunkReader<'m, 'o, 'a> {
    path: PathBuf,
    file: File,
    /// The start of a line that the last chunk did not end.
    carry: Vec<u8>,
    counted: Counted,
    len: u64,
    eof: bool,
    finished: bool,
    meter: &'m Meter<'o, 'a>,
}

impl<'m, 'o, 'a> ChunkReader<'m, 'o, 'a> {
    /// Opens `path`; a missing or 0-byte file is an error that names it.
    pub fn open(path: &Path, meter: &'m Meter<'o, 'a>) -> Result<Self, DataError> {
        let (file, len) = open_nonempty(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            carry: Vec::new(),
            counted: Counted::default(),
            len,
            eof: false,
            finished: false,
            meter,
        })
    }

    /// Reads the next chunk into `out` (cleared first): whole lines, each ending in
    /// `\n` except a last line that the file does not end. `false` at the end of
    /// the file.
    pub fn read_chunk(&mut self, out: &mut Vec<u8>) -> Result<bool, DataError> {
        out.clear();
        if self.finished {
            return Ok(false);
        }
        out.extend_from_slice(&self.carry);
        self.carry.clear();
        // The carried bytes hold no line end.
        let mut searched = out.len();
        while !self.eof {
            out.reserve(CHUNK_BYTES);
            let n = (&mut self.file)
                .take(CHUNK_BYTES as u64)
                .read_to_end(out)
                .map_err(|e| DataError::io(&self.path, e))?;
            self.eof = n == 0;
            self.counted.read(n, self.meter)?;
            if let Some(p) = memchr::memrchr(b'\n', &out[searched..]) {
                let end = searched + p + 1;
                self.carry.extend_from_slice(&out[end..]);
                out.truncate(end);
                return Ok(true);
            }
            if out.len() > MAX_LINE_BYTES {
                // No line end in more than a line's worth: the line the chunk starts
                // with is too long (its number is not known here; the bytes are).
                let at = self.counted.bytes.saturating_sub(out.len() as u64);
                return Err(DataError::file(
                    &self.path,
                    format!("a line starting at byte {at} is longer than {MAX_LINE_BYTES} bytes (not a line-based text file?)"),
                ));
            }
            searched = out.len();
        }
        if out.is_empty() {
            self.finished = true;
            self.counted.finish(self.counted.bytes, self.meter)?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Stops reading before the end: the progress counts the whole file as read.
    pub fn finish(mut self) -> Result<(), DataError> {
        if !self.finished {
            self.finished = true;
            self.counted
                .finish(self.len.max(self.counted.bytes), self.meter)?;
        }
        Ok(())
    }
}

/// Splits `line` at `sep` into `out` (cleared first) as byte ranges.
pub(crate) fn split_into(line: &[u8], sep: u8, out: &mut Vec<(usize, usize)>) {
    out.clear();
    let mut start = 0;
    for i in memchr::memchr_iter(sep, line) {
        out.push((start, i));
        start = i + 1;
    }
    out.push((start, line.len()));
}

/// `bytes` as UTF-8, or a message naming where it is not.
pub(crate) fn utf8<'b>(
    bytes: &'b [u8],
    path: &Path,
    line: u64,
    field: &str,
) -> Result<&'b str, String> {
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "{}:{line}: field `{field}`: not valid UTF-8 (bad byte at offset {})",
            path.display(),
            e.valid_up_to()
        )
    })
}

/// The name of column `i` of `header`, or `column N` past its end.
pub(crate) fn field_name<S: AsRef<str>>(header: &[S], i: usize) -> String {
    header
        .get(i)
        .map(|s| s.as_ref().to_string())
        .unwrap_or_else(|| format!("column {}", i + 1))
}

/// Checks a row's column count against `header`; on a mismatch counts the row as
/// skipped (reason `LABEL: too few columns` / `too many columns`, detail naming the file,
/// line and the first missing field) and returns false. `sep` names the separator in the
/// message (`tab-separated`, `comma-separated`).
pub(crate) fn check_width<S: AsRef<str>>(
    report: &mut super::LoadReport,
    path: &std::path::Path,
    line: u64,
    header: &[S],
    got: usize,
    sep: &str,
) -> bool {
    let want = header.len();
    if want == got {
        return true;
    }
    let label = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (reason, field) = if got < want {
        (format!("{label}: too few columns"), field_name(header, got))
    } else {
        (
            format!("{label}: too many columns"),
            "(end of row)".to_string(),
        )
    };
    report.skip(&reason, || {
        format!(
            "{}:{line}: field `{field}`: expected {want} {sep} columns, found {got}",
            path.display()
        )
    });
    false
}

/// One CSV record: unescaped field bytes and the line it starts on.
#[derive(Default)]
pub(crate) struct CsvRecord {
    data: Vec<u8>,
    bounds: Vec<(usize, usize)>,
    /// Line the record starts on (1-based).
    pub line: u64,
}

impl CsvRecord {
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let (a, b) = self.bounds[i];
        &self.data[a..b]
    }
}

/// A quoted field may span at most this many lines before we call its quote unclosed.
const MAX_QUOTED_LINES: u64 = 10_000;

/// Reads comma-separated records (RFC 4180: `"` quotes a field, `""` inside quotes is
/// a literal quote, quoted fields may hold line breaks). A quote that is never
/// closed is an error naming the line and field where it opened.
pub(crate) struct CsvReader<'m, 'o, 'a> {
    lines: LineReader<'m, 'o, 'a>,
    line: Vec<u8>,
    /// Field names for messages (the header, once read).
    pub header: Vec<String>,
}

impl<'m, 'o, 'a> CsvReader<'m, 'o, 'a> {
    pub fn new(lines: LineReader<'m, 'o, 'a>) -> Self {
        Self {
            lines,
            line: Vec::new(),
            header: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.lines.path()
    }

    /// Reads the next record into `rec`; `false` at the end of the file.
    pub fn next_record(&mut self, rec: &mut CsvRecord) -> Result<bool, DataError> {
        rec.data.clear();
        rec.bounds.clear();
        if !self.lines.next_line(&mut self.line)? {
            return Ok(false);
        }
        rec.line = self.lines.line_no();
        let mut field_start = 0usize;
        let mut at_field_start = true;
        let mut in_quotes = false;
        let mut just_closed = false;
        loop {
            let line = &self.line;
            let mut i = 0;
            while i < line.len() {
                let b = line[i];
                if just_closed && b != b',' {
                    // RFC 4180: a closing quote ends the field. Text after it means
                    // the quote pairs are off, most often an unclosed quote earlier.
                    let shown: String =
                        String::from_utf8_lossy(&line[i..line.len().min(i + 12)]).into_owned();
                    return Err(DataError::row(
                        self.lines.path(),
                        rec.line,
                        &field_name(&self.header, rec.bounds.len()),
                        format!(
                            "text `{shown}` follows a closing quote on line {}: probably an \
                             unclosed quote in this field; close it or double inner quotes (\"\")",
                            self.lines.line_no()
                        ),
                    ));
                }
                just_closed = false;
                if in_quotes {
                    if b == b'"' {
                        if line.get(i + 1) == Some(&b'"') {
                            rec.data.push(b'"');
                            i += 2;
                            continue;
                        }
                        in_quotes = false;
                        just_closed = true;
                    } else {
                        rec.data.push(b);
                    }
                } else if b == b',' {
                    rec.bounds.push((field_start, rec.data.len()));
                    field_start = rec.data.len();
                    at_field_start = true;
                } else if b == b'"' && at_field_start {
                    in_quotes = true;
                    at_field_start = false;
                } else {
                    rec.data.push(b);
                    at_field_start = false;
                }
                i += 1;
            }
            if !in_quotes {
                rec.bounds.push((field_start, rec.data.len()));
                return Ok(true);
            }
            // A quoted field continues on the next line.
            let field = field_name(&self.header, rec.bounds.len());
            let spanned = self.lines.line_no() - rec.line;
            if spanned >= MAX_QUOTED_LINES || !self.lines.next_line(&mut self.line)? {
                return Err(DataError::row(
                    self.lines.path(),
                    rec.line,
                    &field,
                    if spanned >= MAX_QUOTED_LINES {
                        format!(
                            "quoted field runs over {MAX_QUOTED_LINES} lines: \
                             probably an unclosed quote; fix the quote on this line"
                        )
                    } else {
                        "unclosed quote: the quoted field opened here never ends \
                         (the file ends inside it); close the quote or remove it"
                            .to_string()
                    },
                ));
            }
            rec.data.push(b'\n');
        }
    }

    /// Reads the header record into [`Self::header`]; an error when the file holds
    /// no header or the header is not UTF-8.
    pub fn read_header(&mut self) -> Result<(), DataError> {
        let mut rec = CsvRecord::default();
        if !self.next_record(&mut rec)? {
            return Err(DataError::file(self.path(), "no header line"));
        }
        let mut header = Vec::with_capacity(rec.len());
        for i in 0..rec.len() {
            let name = std::str::from_utf8(rec.get(i)).map_err(|_| {
                DataError::row(
                    self.path(),
                    1,
                    &format!("column {}", i + 1),
                    "header is not valid UTF-8",
                )
            })?;
            // A UTF-8 byte-order mark may precede the first name.
            header.push(name.trim_start_matches('\u{feff}').trim().to_string());
        }
        self.header = header;
        Ok(())
    }

    /// Position of a named header column, or an error listing the header.
    pub fn column(&self, name: &str) -> Result<usize, DataError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            DataError::row(
                self.path(),
                1,
                name,
                format!(
                    "missing column `{name}` in the header (found: {})",
                    self.header.join(", ")
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Result<Vec<Vec<String>>, DataError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        let opts = LoadOptions::default();
        let meter = Meter::new(&opts, &[path.as_path()]);
        let mut r = CsvReader::new(LineReader::open(&path, &meter)?);
        let mut rec = CsvRecord::default();
        let mut out = Vec::new();
        while r.next_record(&mut rec)? {
            out.push(
                (0..rec.len())
                    .map(|i| String::from_utf8(rec.get(i).to_vec()).unwrap())
                    .collect(),
            );
        }
        Ok(out)
    }

    #[test]
    fn csv_quotes_escapes_and_wrapped_fields() {
        let r = records("a,b\n\"x, y\",\"say \"\"hi\"\"\"\n\"one\ntwo\",3\r\n4,5\" in\n").unwrap();
        assert_eq!(r[1], vec!["x, y", "say \"hi\""]);
        assert_eq!(r[2], vec!["one\ntwo", "3"]);
        assert_eq!(r[3], vec!["4", "5\" in"]);
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn csv_unclosed_quote_names_line() {
        let err = records("a,b\n1,2\n3,\"open\n4,5\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(":3:"), "{msg}");
        assert!(msg.contains("unclosed quote"), "{msg}");
    }

    #[test]
    fn csv_text_after_closing_quote_is_an_error_at_the_record_start() {
        // The quote opened on line 2 is closed by the quote that opens line 3.
        let err = records("a,b\n\"x,1\n\"y\",2\n").unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("line 3"), "{err}");
        assert!(err.contains("unclosed quote"), "{err}");
    }

    /// The lines of a chunk, split as `LineReader` splits a file.
    fn chunk_lines(chunk: &[u8]) -> Vec<&[u8]> {
        let mut lines: Vec<&[u8]> = chunk.split(|&b| b == b'\n').collect();
        if chunk.ends_with(b"\n") {
            lines.pop();
        }
        let n = lines.len();
        for (i, l) in lines.iter_mut().enumerate() {
            if i + 1 < n || chunk.ends_with(b"\n") {
                *l = l.strip_suffix(b"\r").unwrap_or(l);
            }
        }
        lines
    }

    /// Lines of `bytes` as `ChunkReader` + `chunk_lines` give them, and as
    /// `LineReader` does, with the chunks' count and the progress seen.
    #[allow(clippy::type_complexity)]
    fn both_readers(bytes: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, usize, Vec<(u64, u64)>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tsv");
        std::fs::write(&path, bytes).unwrap();
        let seen = Mutex::new(Vec::new());
        let progress = |done: u64, total: u64| seen.lock().unwrap().push((done, total));
        let opts = LoadOptions {
            progress: Some(&progress),
            ..LoadOptions::default()
        };
        let meter = Meter::new(&opts, &[path.as_path(), path.as_path()]);
        let mut chunks = ChunkReader::open(&path, &meter).unwrap();
        let (mut chunked, mut n_chunks, mut chunk) = (Vec::new(), 0, Vec::new());
        while chunks.read_chunk(&mut chunk).unwrap() {
            n_chunks += 1;
            assert!(chunk.ends_with(b"\n") || !bytes.ends_with(b"\n"));
            chunked.extend(chunk_lines(&chunk).into_iter().map(<[u8]>::to_vec));
        }
        assert!(!chunks.read_chunk(&mut chunk).unwrap() && chunk.is_empty());
        let mut lines = LineReader::open(&path, &meter).unwrap();
        let (mut by_line, mut buf) = (Vec::new(), Vec::new());
        while lines.next_line(&mut buf).unwrap() {
            by_line.push(buf.clone());
        }
        let seen = seen.into_inner().unwrap();
        (chunked, by_line, n_chunks, seen)
    }

    #[test]
    fn chunked_lines_match_line_reader_across_chunk_ends() {
        // Lines around the chunk size, one longer than two chunks, CRLF and bare
        // CR, empty lines, and a last line without a line end that ends in CR.
        let mut bytes = Vec::new();
        for (i, len) in [10, CHUNK_BYTES - 20, 5, 0, 3 * CHUNK_BYTES + 7, 1, 0, 40]
            .into_iter()
            .enumerate()
        {
            bytes.extend(std::iter::repeat_n(b'a' + i as u8, len));
            bytes.extend_from_slice(if i % 2 == 0 { b"\r\n" } else { b"\n" });
        }
        bytes.extend_from_slice(b"x\ry\r");
        let (chunked, by_line, n_chunks, seen) = both_readers(&bytes);
        assert!(n_chunks >= 3, "{n_chunks}");
        assert_eq!(chunked.len(), 9);
        assert_eq!(chunked, by_line);
        assert_eq!(chunked[4].len(), 3 * CHUNK_BYTES + 7);
        assert_eq!(chunked[8], b"x\ry\r");
        // Both readers count the file once; the progress never goes back.
        let total = 2 * bytes.len() as u64;
        assert_eq!(seen.last().copied(), Some((total, total)));
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");

        let (chunked, by_line, n_chunks, _) = both_readers(b"only\n");
        assert_eq!((chunked, n_chunks), (by_line, 1));
    }

    #[test]
    fn split_fields() {
        let mut v = Vec::new();
        split_into(b"a\tb\t\tc", b'\t', &mut v);
        assert_eq!(v, vec![(0, 1), (2, 3), (4, 4), (5, 6)]);
    }
}
