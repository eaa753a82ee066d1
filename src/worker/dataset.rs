//! Dataset loading and preparing on a background thread (named `trsr-dataset`).
//!
//! The UI starts a load with [`spawn_load`] and polls the returned [`DatasetLoad`] each
//! frame; the thread wakes the UI after every message.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, TryRecvError};

use super::Wake;
use crate::data::{Case, Catalogue, LoadReport};

/// A loaded dataset, ready for the window: the catalogue, the cases, and indexes for search.
#[derive(Clone, Debug)]
pub struct LoadedData {
    pub dir: PathBuf,
    /// `jsonl` (prepared) or the raw format that was prepared on load.
    pub format: String,
    pub catalogue: Arc<Catalogue>,
    pub cases: Arc<Vec<Case>>,
    pub report: LoadReport,
    /// Lower-cased rendered text of each catalogue item (by catalogue position), for search.
    pub item_text_lower: Arc<Vec<String>>,
    /// The format's usual item text template.
    pub text_template: crate::data::ItemTextTemplate,
    /// Popularity counts and the BM25 index of the baselines.
    pub baselines: Arc<crate::rank::BaselineStats>,
}

impl LoadedData {
    /// Builds the search and popularity indexes.
    pub fn new(
        dir: PathBuf,
        format: String,
        catalogue: Catalogue,
        cases: Vec<Case>,
        report: LoadReport,
    ) -> Self {
        let text = crate::data::ItemTextTemplate::default();
        let item_text_lower = catalogue
            .items()
            .iter()
            .map(|it| text.render(it).to_lowercase())
            .collect();
        let baselines = crate::rank::BaselineStats::build(&cases, &catalogue, &text);
        Self {
            dir,
            format,
            catalogue: Arc::new(catalogue),
            cases: Arc::new(cases),
            report,
            item_text_lower: Arc::new(item_text_lower),
            baselines: Arc::new(baselines),
            text_template: crate::data::ItemTextTemplate::default(),
        }
    }
}

/// Messages from the loading thread.
#[derive(Debug)]
pub enum LoadMsg {
    Progress { stage: String, fraction: f32 },
    Done(Box<LoadedData>),
    Failed(String),
}

/// A load in flight.
pub struct DatasetLoad {
    pub dir: PathBuf,
    rx: Receiver<LoadMsg>,
}

impl DatasetLoad {
    /// The next message, without waiting.
    pub fn poll(&self) -> Option<LoadMsg> {
        match self.rx.try_recv() {
            Ok(m) => Some(m),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(LoadMsg::Failed(format!(
                "the loading thread for {} stopped unexpectedly",
                self.dir.display()
            ))),
        }
    }

    /// Waits for the end of the load (tests and headless use only).
    pub fn wait(self) -> Result<LoadedData, String> {
        loop {
            match self.rx.recv() {
                Ok(LoadMsg::Progress { .. }) => continue,
                Ok(LoadMsg::Done(d)) => return Ok(*d),
                Ok(LoadMsg::Failed(e)) => return Err(e),
                Err(_) => return Err("the loading thread stopped".into()),
            }
        }
    }
}

/// Loads `dir` on a background thread.
pub fn spawn_load(dir: PathBuf, wake: Wake) -> std::io::Result<DatasetLoad> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let d = dir.clone();
    std::thread::Builder::new()
        .name("trsr-dataset".into())
        .spawn(move || {
            let send = |m: LoadMsg| {
                let _ = tx.send(m);
                wake();
            };
            send(LoadMsg::Progress {
                stage: format!("reading {}", d.display()),
                fraction: 0.1,
            });
            match load(&d, &|stage, fraction| {
                send(LoadMsg::Progress {
                    stage: stage.to_string(),
                    fraction,
                })
            }) {
                Ok(data) => send(LoadMsg::Done(Box::new(data))),
                Err(e) => send(LoadMsg::Failed(format!("{e:#}"))),
            }
        })?;
    Ok(DatasetLoad { dir, rx })
}

/// Loads a folder of any supported format (detected), then prepares evaluation cases
/// as `trsr prepare` does (a prepared folder keeps its cases).
pub fn load(dir: &Path, progress: &(dyn Fn(&str, f32) + Sync)) -> anyhow::Result<LoadedData> {
    use crate::data::prepare::{prepare, PrepareOptions};
    anyhow::ensure!(dir.is_dir(), "not a folder: {}", dir.display());
    let on_bytes = |done: u64, total: u64| {
        let f = if total > 0 {
            done as f32 / total as f32
        } else {
            0.0
        };
        progress(
            &format!("reading {} MB", done / 1_000_000),
            0.1 + 0.6 * f.min(1.0),
        );
    };
    let opts = crate::data::LoadOptions {
        progress: Some(&on_bytes),
        ..crate::data::LoadOptions::default()
    };
    let ds = crate::data::load_dir(dir, crate::data::FormatChoice::Auto, &opts)?;
    progress("preparing cases", 0.75);
    let (cases, prep) = prepare(&ds, &PrepareOptions::for_format(ds.format))?;
    progress("indexing", 0.9);
    let mut report = ds.report.clone();
    for (why, n) in &prep.dropped {
        *report
            .skipped
            .entry(format!("users dropped: {why}"))
            .or_default() += n;
    }
    if prep.truncated > 0 {
        report.examples.push(format!(
            "{} histories cut to their most recent items",
            prep.truncated
        ));
    }
    let format = ds.format;
    let mut data = LoadedData::new(
        dir.to_path_buf(),
        format.name().to_string(),
        ds.catalogue,
        cases,
        report,
    );
    data.text_template = format.default_text_template();
    Ok(data)
}
