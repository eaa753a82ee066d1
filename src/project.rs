//! The project file (RON): dataset reference, settings, templates, curation
//! (annotations with provenance, and the traces they review), cache index.
//!
//! Saves are atomic: the new content goes to a temporary file in the same folder,
//! is flushed to disk, and replaces the project file by rename; the previous save
//! is kept as `FILE.bak`. At every moment the project file is either the previous
//! complete save or the new complete save. A file that does not parse, or that a
//! newer version wrote, is reported and never overwritten.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::curate::Curation;
use crate::data::ItemTextTemplate;
use crate::lm::SamplingParams;
use crate::metrics::TiePolicy;
use crate::segment::BlockParams;

/// The project file format version this build writes and reads (and all older ones).
pub const PROJECT_VERSION: u32 = 1;

/// Where the project's dataset lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRef {
    /// A prepared folder (`items.jsonl` + `cases.jsonl`) or a raw dataset folder;
    /// relative paths are relative to the project file's folder.
    pub path: PathBuf,
    /// The format name (`jsonl`, `mind`, ...), when known.
    #[serde(default)]
    pub format: Option<String>,
}

/// Settings the workbench keeps per project. Missing fields take their defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `default` (the default model) or a path to a model file.
    pub model: String,
    /// Summarization methods in use (`hierarchical`, `recurrent`).
    pub methods: Vec<String>,
    pub block: BlockParams,
    pub sampling: SamplingParams,
    pub item_text: ItemTextTemplate,
    /// Cut-offs for Recall/MRR/NDCG@K.
    pub k: Vec<usize>,
    /// Tie policy of the metrics.
    pub ties: TiePolicy,
    /// Free-form settings of other panels.
    pub extra: BTreeMap<String, String>,
    /// `workbench` or `reference` (the reference code's prompts, item text and
    /// generation); the project's summaries and scores were made under it.
    pub preset: crate::preset::Preset,
    /// The reference wording (`mind` / `amazon`) when the dataset does not tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_wording: Option<crate::preset::ReferenceWording>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: "default".into(),
            methods: vec!["hierarchical".into(), "recurrent".into()],
            block: BlockParams::default(),
            sampling: SamplingParams::default(),
            item_text: ItemTextTemplate::default(),
            k: vec![3, 5, 10],
            ties: TiePolicy::Pessimistic,
            extra: BTreeMap::new(),
            preset: crate::preset::Preset::Workbench,
            reference_wording: None,
        }
    }
}

/// One cached artefact (summaries, scores) the project knows about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// What it holds, e.g. `summaries` or `scores`.
    pub kind: String,
    /// Its file, relative to the project file's folder unless absolute.
    pub path: PathBuf,
    #[serde(default)]
    pub model: Option<String>,
    pub created_at_ms: u64,
}

/// A workbench project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub version: u32,
    #[serde(default)]
    pub dataset: Option<DatasetRef>,
    #[serde(default)]
    pub settings: Settings,
    /// Prompt templates by name (the prompt module owns their meaning).
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    #[serde(default)]
    pub curation: Curation,
    /// Cache index by key.
    #[serde(default)]
    pub cache: BTreeMap<String, CacheEntry>,
}

impl Default for Project {
    fn default() -> Self {
        Self {
            version: PROJECT_VERSION,
            dataset: None,
            settings: Settings::default(),
            templates: BTreeMap::new(),
            curation: Curation::default(),
            cache: BTreeMap::new(),
        }
    }
}

/// Project file errors: what, where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the project file is corrupt at line {line}, column {column}: {message}; it was left \
         untouched (the previous save, if any, is in {path}.bak): {path}"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "the project file was written by a newer TRSR Workbench (format version {found}; this \
         build reads up to {supported}); it was left untouched, open it with a newer version: {path}"
    )]
    NewerVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("refusing to overwrite a file that is not a readable project ({reason}): {path}")]
    WouldOverwrite { path: PathBuf, reason: String },
    #[error("could not write the project as RON: {0}")]
    Serialize(String),
}

#[derive(Deserialize)]
struct VersionProbe {
    version: u32,
}

fn corrupt(path: &Path, e: &ron::error::SpannedError) -> ProjectError {
    ProjectError::Corrupt {
        path: path.to_path_buf(),
        line: e.span.start.line,
        column: e.span.start.col,
        message: e.code.to_string(),
    }
}

/// Parses project text; `path` is only for messages.
pub fn parse(text: &str, path: &Path) -> Result<Project, ProjectError> {
    let probe: VersionProbe = ron::from_str(text).map_err(|e| corrupt(path, &e))?;
    if probe.version > PROJECT_VERSION {
        return Err(ProjectError::NewerVersion {
            path: path.to_path_buf(),
            found: probe.version,
            supported: PROJECT_VERSION,
        });
    }
    ron::from_str(text).map_err(|e| corrupt(path, &e))
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ProjectError + 'a {
    move |source| ProjectError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// `dir/.NAME.SUFFIX`: a sibling used during a save.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".into());
    path.with_file_name(format!(".{name}.{suffix}"))
}

/// The backup of the previous save: `FILE.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".bak");
    PathBuf::from(s)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Flushes a folder's entries (the renames) to disk. A no-op where folders cannot
/// be opened as files.
fn sync_dir(dir: &Path) -> Result<(), ProjectError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("flush folder", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ProjectError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io("create", path))?;
    f.write_all(bytes).map_err(io("write", path))?;
    f.sync_all().map_err(io("flush", path))
}

impl Project {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a project file. A corrupt or newer file is an error and stays untouched.
    pub fn load(path: &Path) -> Result<Project, ProjectError> {
        let bytes = fs::read(path).map_err(io("read", path))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let before = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.len()
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1)
                + 1;
            ProjectError::Corrupt {
                path: path.to_path_buf(),
                line,
                column,
                message: "not valid UTF-8 text".into(),
            }
        })?;
        parse(&text, path)
    }

    /// The project as RON text.
    pub fn to_ron(&self) -> Result<String, ProjectError> {
        let mut cfg = ron::ser::PrettyConfig::new().indentor("  ".to_string());
        cfg = cfg.struct_names(false);
        let mut text = ron::ser::to_string_pretty(self, cfg)
            .map_err(|e| ProjectError::Serialize(e.to_string()))?;
        text.push('\n');
        Ok(text)
    }

    /// Saves atomically to `path`, keeping the previous save as `FILE.bak`.
    ///
    /// Refuses (and touches nothing) when `path` holds something that is not a
    /// project this build can read: a corrupt file or a newer version's.
    pub fn save(&self, path: &Path) -> Result<(), ProjectError> {
        let text = self.to_ron()?;
        let exists = path.exists();
        if exists {
            let old = fs::read(path).map_err(io("read", path))?;
            let reason = match std::str::from_utf8(&old) {
                Err(_) => Some("not valid UTF-8".to_string()),
                Ok(t) => match ron::from_str::<VersionProbe>(t) {
                    Err(e) => Some(format!("does not parse: {e}")),
                    Ok(p) if p.version > PROJECT_VERSION => {
                        Some(format!("written by a newer version (format {})", p.version))
                    }
                    Ok(_) => None,
                },
            };
            if let Some(reason) = reason {
                return Err(ProjectError::WouldOverwrite {
                    path: path.to_path_buf(),
                    reason,
                });
            }
        }
        let dir = parent_dir(path);
        let tmp = sibling(path, "tmp");
        if let Err(e) = write_synced(&tmp, text.as_bytes()) {
            // A full disk: free what the partial file holds; the project file and its
            // backup were not touched.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if exists {
            // The backup is swapped in by rename too, so FILE.bak is always complete.
            let bak_tmp = sibling(path, "bak.tmp");
            let _ = fs::remove_file(&bak_tmp);
            if fs::hard_link(path, &bak_tmp).is_err() {
                let old = fs::read(path).map_err(io("read", path))?;
                if let Err(e) = write_synced(&bak_tmp, &old) {
                    let _ = fs::remove_file(&bak_tmp);
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
            }
            fs::rename(&bak_tmp, backup_path(path)).map_err(io("rename", &bak_tmp))?;
        }
        fs::rename(&tmp, path).map_err(io("rename", &tmp))?;
        sync_dir(&dir)
    }

    /// Resolves a path stored in the project (dataset, cache) against the project
    /// file's folder.
    pub fn resolve(project_path: &Path, stored: &Path) -> PathBuf {
        if stored.is_absolute() {
            stored.to_path_buf()
        } else {
            parent_dir(project_path).join(stored)
        }
    }
}

/// Debounced autosave: call [`Autosaver::changed`] after each change and
/// [`Autosaver::tick`] every frame (or timer); `tick` says when to save: once no
/// change came for `debounce`, or at the latest `max_wait` after the first unsaved
/// change (so steady typing still gets saved). On exit, save if [`Autosaver::is_dirty`].
#[derive(Clone, Debug)]
pub struct Autosaver {
    pub debounce: Duration,
    pub max_wait: Duration,
    first_unsaved: Option<Instant>,
    last_change: Option<Instant>,
}

impl Default for Autosaver {
    /// Save 1.5 s after the last change, or 15 s after the first unsaved one.
    fn default() -> Self {
        Self::new(Duration::from_millis(1500), Duration::from_secs(15))
    }
}

impl Autosaver {
    pub fn new(debounce: Duration, max_wait: Duration) -> Self {
        Self {
            debounce,
            max_wait,
            first_unsaved: None,
            last_change: None,
        }
    }

    /// Something changed now.
    pub fn changed(&mut self) {
        self.changed_at(Instant::now());
    }

    pub fn changed_at(&mut self, now: Instant) {
        self.first_unsaved.get_or_insert(now);
        self.last_change = Some(now);
    }

    pub fn is_dirty(&self) -> bool {
        self.first_unsaved.is_some()
    }

    /// Whether a save is due at `now`. When it returns true the state counts as
    /// saved; call [`Autosaver::save_failed`] if the save then fails.
    pub fn tick(&mut self, now: Instant) -> bool {
        let (Some(first), Some(last)) = (self.first_unsaved, self.last_change) else {
            return false;
        };
        let due = now.saturating_duration_since(last) >= self.debounce
            || now.saturating_duration_since(first) >= self.max_wait;
        if due {
            self.first_unsaved = None;
            self.last_change = None;
        }
        due
    }

    /// A due save failed: stay dirty and try again after another debounce.
    pub fn save_failed(&mut self, now: Instant) {
        self.first_unsaved = Some(now);
        self.last_change = Some(now);
    }

    /// Saves `project` to `path` if a save is due; `None` when nothing was due.
    pub fn save_if_due(
        &mut self,
        now: Instant,
        project: &Project,
        path: &Path,
    ) -> Option<Result<(), ProjectError>> {
        if !self.tick(now) {
            return None;
        }
        let result = project.save(path);
        if result.is_err() {
            self.save_failed(now);
        }
        Some(result)
    }
}
