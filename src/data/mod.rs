//! Items, catalogue, sequences, evaluation cases, and the loaders per format.
//!
//! Shared types live here; each format's parsing lives in its own file.

pub mod amazon_m2;
mod detect;
mod id;
mod index;
pub mod jsonl;
pub mod mind;
pub mod prepare;
pub(crate) mod read;
pub mod recbole;
pub mod text;

pub use detect::{detect_format, load_dir, FormatChoice, LoadOptions, ProgressFn};
pub use id::ItemId;
pub use text::ItemTextTemplate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One item: an id plus ordered text fields (`title`, `category`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    /// Ordered `(field, value)` pairs; the order is the rendering order by default.
    pub fields: Vec<(String, String)>,
}

impl Item {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// All items of a dataset, indexed by id.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    items: Vec<Item>,
    index: index::IdIndex,
}

impl Catalogue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an item; a later item with the same id replaces the earlier one.
    /// Returns `true` if the id was new.
    pub fn insert(&mut self, item: Item) -> bool {
        match self.index.insert(&item.id) {
            (i, false) => {
                self.items[i] = item;
                false
            }
            (_, true) => {
                self.items.push(item);
                true
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&Item> {
        self.index.get(id).map(|i| &self.items[i])
    }

    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.index.contains(id)
    }

    /// Whether each of `ids` is in the catalogue, into `out` (cleared first); faster
    /// than one [`Self::contains`] after another on a large catalogue.
    pub fn contains_each(&self, ids: &[&str], out: &mut Vec<bool>) {
        self.index.contains_each(ids, out);
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// One user's behaviour sequence, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub user: String,
    /// Item ids in time order (history followed by what came next, when known).
    pub items: Vec<ItemId>,
    /// Items shown but not clicked (MIND impressions), an alternative negative source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shown_not_clicked: Vec<ItemId>,
    /// The next item when the format gives it apart from the history (Amazon-M2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_item: Option<ItemId>,
}

/// One evaluation case: a line of `cases.jsonl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub case: String,
    pub user: String,
    pub history: Vec<String>,
    pub target: String,
    #[serde(default)]
    pub negatives: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
}

impl Case {
    /// Target first, then negatives: the candidate list to score.
    pub fn candidates(&self) -> Vec<&str> {
        std::iter::once(self.target.as_str())
            .chain(self.negatives.iter().map(String::as_str))
            .collect()
    }
}

/// Dataset formats the workbench reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    Mind,
    AmazonM2,
    RecBole,
    Jsonl,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Mind => "mind",
            Format::AmazonM2 => "amazon-m2",
            Format::RecBole => "recbole",
            Format::Jsonl => "jsonl",
        }
    }

    /// The item fields the paper renders for this format (DESIGN.md); RecBole and
    /// JSONL render all of an item's fields in their order.
    pub fn default_text_template(self) -> ItemTextTemplate {
        match self {
            Format::Mind => ItemTextTemplate::with_fields(MIND_FIELDS),
            Format::AmazonM2 => ItemTextTemplate::with_fields(AMAZON_M2_FIELDS),
            Format::RecBole | Format::Jsonl => ItemTextTemplate::default(),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a load read, kept and skipped. Nothing is dropped silently.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub files: Vec<PathBuf>,
    pub rows_read: u64,
    pub items: u64,
    pub sequences: u64,
    /// Skipped rows by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Ids referenced but absent from the catalogue.
    pub unresolved_ids: u64,
    /// First few concrete problems, each naming file, line and field.
    pub examples: Vec<String>,
    /// Facts about the load that are not row problems (a missing optional file, ...).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// How many concrete examples a [`LoadReport`] keeps.
pub const MAX_REPORT_EXAMPLES: usize = 20;
/// How many examples a [`LoadReport`] keeps for one reason.
pub const EXAMPLES_PER_REASON: u64 = 3;

impl LoadReport {
    /// Counts one skipped row (or token) under `reason`, keeping the example while
    /// there is room.
    /// At most [`EXAMPLES_PER_REASON`] examples are kept per reason, so that every
    /// kind of problem shows.
    pub fn skip(&mut self, reason: &str, example: impl FnOnce() -> String) {
        let n = self.skipped.entry(reason.to_string()).or_default();
        *n += 1;
        if *n <= EXAMPLES_PER_REASON {
            self.example(example);
        }
    }

    /// Counts one id that does not resolve in the catalogue.
    pub fn unresolved(&mut self, example: impl FnOnce() -> String) {
        self.unresolved_ids += 1;
        if self.unresolved_ids <= EXAMPLES_PER_REASON {
            self.example(example);
        }
    }

    fn example(&mut self, example: impl FnOnce() -> String) {
        if self.examples.len() < MAX_REPORT_EXAMPLES {
            self.examples.push(example());
        }
    }

    /// Total rows skipped, over all reasons.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// A multi-line human summary: counts, skips by reason, notes, examples.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "read {} rows from {} file(s): {} items, {} sequences; {} unresolved ids",
            self.rows_read,
            self.files.len(),
            self.items,
            self.sequences,
            self.unresolved_ids
        );
        for (reason, n) in &self.skipped {
            out.push_str(&format!("\n  skipped {n}: {reason}"));
        }
        for note in &self.notes {
            out.push_str(&format!("\n  note: {note}"));
        }
        if !self.examples.is_empty() {
            out.push_str("\n  examples:");
            for e in &self.examples {
                out.push_str(&format!("\n    {e}"));
            }
        }
        out
    }
}

/// A loaded raw dataset, before case preparation.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub format: Format,
    pub catalogue: Catalogue,
    pub sequences: Vec<Sequence>,
    pub report: LoadReport,
    /// Cases as a prepared JSONL folder holds them (`items.jsonl` + `cases.jsonl`);
    /// `prepare` keeps them as they are.
    pub prepared_cases: Option<Vec<Case>>,
}

impl Dataset {
    /// A loaded dataset; the report's item and sequence counts are taken from the parts.
    pub(crate) fn loaded(
        format: Format,
        catalogue: Catalogue,
        sequences: Vec<Sequence>,
        mut report: LoadReport,
        prepared_cases: Option<Vec<Case>>,
    ) -> Self {
        report.items = catalogue.len() as u64;
        report.sequences = sequences.len() as u64;
        Self {
            format,
            catalogue,
            sequences,
            report,
            prepared_cases,
        }
    }
}

/// A prepared folder (`items.jsonl` + `cases.jsonl`), as `trsr prepare` writes it.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub dir: PathBuf,
    pub catalogue: Catalogue,
    pub cases: Vec<Case>,
}

/// The paper's item fields for news (MIND), in rendering order.
pub const MIND_FIELDS: &[&str] = &["id", "category", "subcategory", "title"];
/// The paper's item fields for products (Amazon-M2), in rendering order.
pub const AMAZON_M2_FIELDS: &[&str] = &[
    "id",
    "title",
    "price",
    "brand",
    "color",
    "size",
    "model",
    "material",
    "author",
    "description",
];

/// A user-caused data error: what, where (file, line, field), and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}:{line}: field `{field}`: {message}")]
    Row {
        path: PathBuf,
        line: u64,
        field: String,
        message: String,
    },
    #[error("{message}: {path}")]
    File { path: PathBuf, message: String },
    #[error("could not read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A folder in none of the formats the workbench reads.
    #[error(
        "no recognizable dataset format in {path}: looked for {looked_for}; found {}",
        if found.is_empty() { "no files".to_string() } else { found.join(", ") }
    )]
    UnknownFormat {
        path: PathBuf,
        looked_for: String,
        found: Vec<String>,
    },
    /// Options that cannot work together or with this dataset.
    #[error("{0}")]
    Invalid(String),
    #[error("cancelled")]
    Cancelled,
}

impl DataError {
    pub(crate) fn row(path: &Path, line: u64, field: &str, message: impl Into<String>) -> Self {
        DataError::Row {
            path: path.to_path_buf(),
            line,
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Self {
        DataError::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
