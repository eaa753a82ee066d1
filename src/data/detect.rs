//! Format detection and the one entry point that loads any dataset folder.

use std::path::{Path, PathBuf};

use crate::cancel::CancelToken;

use super::{amazon_m2, jsonl, mind, recbole, DataError, Dataset, Format};

/// The `--format` choice: one format, or detect it from the folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatChoice {
    #[default]
    Auto,
    Mind,
    #[value(name = "amazon-m2")]
    AmazonM2,
    #[value(name = "recbole")]
    RecBole,
    Jsonl,
}

impl FormatChoice {
    /// The format this choice names, `None` for `Auto`.
    pub fn format(self) -> Option<Format> {
        match self {
            FormatChoice::Auto => None,
            FormatChoice::Mind => Some(Format::Mind),
            FormatChoice::AmazonM2 => Some(Format::AmazonM2),
            FormatChoice::RecBole => Some(Format::RecBole),
            FormatChoice::Jsonl => Some(Format::Jsonl),
        }
    }
}

/// Load progress: `(bytes_read, total_bytes)` over all the files of the load.
pub type ProgressFn<'a> = dyn Fn(u64, u64) + Sync + 'a;

/// How to load a dataset folder.
#[derive(Clone)]
pub struct LoadOptions<'a> {
    /// Amazon-M2 locale to keep (`"UK"` by default, as in the paper); `None` keeps all.
    pub locale: Option<String>,
    /// Called about every megabyte read, and at the end of each file.
    pub progress: Option<&'a ProgressFn<'a>>,
    /// When cancelled, the load stops with [`DataError::Cancelled`].
    pub cancel: Option<CancelToken>,
    /// MIND rows as the reference's `build_dataset.py` takes them (`--preset
    /// reference`): each user's first row in file order (not the earliest in time), and
    /// history ids absent from news.tsv kept (as items without text), so that history
    /// lengths count every id as the reference counts them.
    pub reference_rows: bool,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        Self {
            locale: Some("UK".to_string()),
            progress: None,
            cancel: None,
            reference_rows: false,
        }
    }
}

impl std::fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("locale", &self.locale)
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .finish()
    }
}

const LOOKED_FOR: &str = "jsonl (items.jsonl + cases.jsonl or sequences.jsonl), \
     MIND (behaviors.tsv + news.tsv), Amazon-M2 (sessions*.csv, optionally products*.csv), \
     RecBole (NAME.inter, optionally NAME.item)";

fn file_names(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        if entry.path().is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Says which format a folder holds, by its file names.
pub fn detect_format(dir: &Path) -> Result<Format, DataError> {
    if !dir.is_dir() {
        return Err(DataError::file(
            dir,
            "not a folder (give the dataset's folder)",
        ));
    }
    let names = file_names(dir)?;
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("items.jsonl") && (has("cases.jsonl") || has("sequences.jsonl")) {
        return Ok(Format::Jsonl);
    }
    if has("behaviors.tsv") {
        return Ok(Format::Mind);
    }
    if names
        .iter()
        .any(|n| n.starts_with("sessions") && n.ends_with(".csv"))
    {
        return Ok(Format::AmazonM2);
    }
    if names.iter().any(|n| n.ends_with(".inter")) {
        return Ok(Format::RecBole);
    }
    Err(DataError::UnknownFormat {
        path: dir.to_path_buf(),
        looked_for: LOOKED_FOR.to_string(),
        found: names.into_iter().take(12).collect(),
    })
}

/// Loads a dataset folder in the chosen (or detected) format.
pub fn load_dir(
    dir: &Path,
    format: FormatChoice,
    opts: &LoadOptions,
) -> Result<Dataset, DataError> {
    if !dir.is_dir() {
        return Err(DataError::file(
            dir,
            "not a folder (give the dataset's folder)",
        ));
    }
    let format = match format.format() {
        Some(f) => f,
        None => detect_format(dir)?,
    };
    match format {
        Format::Mind => mind::load(dir, opts),
        Format::AmazonM2 => amazon_m2::load(dir, opts),
        Format::RecBole => recbole::load(dir, opts),
        Format::Jsonl => jsonl::load_dir(dir, opts),
    }
}

/// `dir/name` when it is a file, else an error saying what the format needs.
pub(crate) fn required(dir: &Path, name: &str, format: Format) -> Result<PathBuf, DataError> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(DataError::file(
            &p,
            format!("missing file: the {format} format needs `{name}` in the folder"),
        ))
    }
}

/// Sorted names of files in `dir` for which `pred` holds.
pub(crate) fn files_matching(
    dir: &Path,
    pred: impl Fn(&str) -> bool,
) -> Result<Vec<String>, DataError> {
    Ok(file_names(dir)?.into_iter().filter(|n| pred(n)).collect())
}
