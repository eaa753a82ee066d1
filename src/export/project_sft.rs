//! An SFT export of a whole curation project: the request the CLI's `trsr export` and the
//! window's Export dialog both make, the templates it renders with, and the atomic write.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{ExportOptions, SftForm, TemplateRenderer};
use crate::preset::Preset;
use crate::project::Project;
use crate::prompt::{Templates, Wording};

/// The project names no dataset and the request names none either.
#[derive(Debug, thiserror::Error)]
#[error(
    "the project names no dataset: choose a prepared dataset folder (items.jsonl + cases.jsonl)"
)]
pub struct NoDataset;

/// The prompt templates an SFT export renders with: `--templates FILE`, else the
/// built-in wording (`--wording`, else guessed from the items) with the project's
/// named templates (`summarize_block`, `summarize_update`, `summarize_merge`,
/// `recommend`, `system`, `yes`, `no`) laid over it.
pub fn export_templates(
    templates: Option<&Path>,
    wording: Option<Wording>,
    project: &Project,
    catalogue: &crate::data::Catalogue,
) -> anyhow::Result<Templates> {
    if let Some(p) = templates {
        return Templates::load(p);
    }
    let wording = wording
        .or_else(|| crate::prompt::guess_wording(catalogue))
        .unwrap_or(Wording::News);
    let mut t = Templates::for_wording(wording);
    for (name, text) in &project.templates {
        match name.as_str() {
            "system" => t.system = Some(text.clone()),
            "summarize_block" => t.summarize_block = text.clone(),
            "summarize_update" => t.summarize_update = text.clone(),
            "summarize_merge" => t.summarize_merge = text.clone(),
            "recommend" => t.recommend = text.clone(),
            "yes" => t.yes = text.clone(),
            "no" => t.no = text.clone(),
            _ => {}
        }
    }
    t.validate()
        .context("the project's templates (its `templates` section)")?;
    Ok(t)
}

/// One SFT export (the CLI's and the window's Export dialog's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftRequest {
    /// Recommender data (else summarizer data).
    pub recommender: bool,
    pub form: SftForm,
    pub include_unreviewed: bool,
    pub methods: Vec<String>,
    pub seed: u64,
    /// Prepared dataset folder; defaults to the project's.
    pub dataset: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    pub wording: Option<Wording>,
}

/// Renders the SFT JSONL of `project` (saved at `project_path`, which relative
/// dataset paths are resolved against); returns the bytes and a one-line report.
pub fn sft_export(
    project_path: &Path,
    project: &Project,
    req: &SftRequest,
) -> anyhow::Result<(Vec<u8>, String)> {
    let dataset = match (&req.dataset, &project.dataset) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => Project::resolve(project_path, &d.path),
        (None, None) => return Err(NoDataset.into()),
    };
    let prepared = crate::data::jsonl::load_prepared(&dataset)
        .with_context(|| format!("could not load the dataset {}", dataset.display()))?;
    let reference = match project.settings.preset {
        Preset::Workbench => None,
        Preset::Reference => Some(
            project
                .settings
                .reference_wording
                .or(crate::preset::PrepareMeta::read(&dataset)?.and_then(|m| m.reference_wording()))
                .ok_or_else(|| {
                    crate::preset::no_reference_wording(&format!(
                        "the dataset {} was not prepared from either",
                        dataset.display()
                    ))
                })?,
        ),
    };
    let opts = ExportOptions {
        include_unreviewed: req.include_unreviewed,
        methods: req.methods.clone(),
        seed: req.seed,
        item_text: match reference {
            Some(w) => crate::data::ItemTextTemplate::reference(w),
            None => project.settings.item_text.clone(),
        },
        ..ExportOptions::default()
    };
    let templates = match (reference, &req.templates) {
        (Some(w), None) => Templates::reference(w),
        _ => export_templates(
            req.templates.as_deref(),
            req.wording,
            project,
            &prepared.catalogue,
        )?,
    };
    let renderer = TemplateRenderer::new(templates);
    let (examples, report) = if req.recommender {
        super::recommender_examples(
            &project.curation,
            &prepared.cases,
            &prepared.catalogue,
            &renderer,
            &opts,
        )?
    } else {
        super::summarizer_examples(
            &project.curation,
            &prepared.cases,
            &prepared.catalogue,
            &renderer,
            &opts,
        )?
    };
    let mut buf = Vec::new();
    super::write_sft_jsonl(&mut buf, &examples, req.form)?;
    Ok((buf, report.summary()))
}

/// Writes `bytes` to `out` through a temporary sibling file and a rename.
pub fn write_out(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp_name = out.as_os_str().to_owned();
    tmp_name.push(".part");
    let tmp = PathBuf::from(tmp_name);
    let mut f = std::fs::File::create(&tmp)
        .with_context(|| format!("could not create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("could not write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("could not write {}", out.display()))
}
