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

/// Loads a folder: a prepared folder (`items.jsonl` + `cases.jsonl`).
pub fn load(dir: &Path, progress: &dyn Fn(&str, f32)) -> anyhow::Result<LoadedData> {
    anyhow::ensure!(dir.is_dir(), "not a folder: {}", dir.display());
    let prepared = crate::data::jsonl::load_prepared(dir)?;
    progress("indexing", 0.8);
    let report = LoadReport {
        files: vec![dir.join("items.jsonl"), dir.join("cases.jsonl")],
        rows_read: (prepared.catalogue.len() + prepared.cases.len()) as u64,
        items: prepared.catalogue.len() as u64,
        sequences: prepared.cases.len() as u64,
        ..LoadReport::default()
    };
    Ok(LoadedData::new(
        dir.to_path_buf(),
        "jsonl".into(),
        prepared.catalogue,
        prepared.cases,
        report,
    ))
}
