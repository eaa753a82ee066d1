//! `trsr export`: SFT data from a curated project, and result tables.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::export::{self, sft_export, write_out, SftForm, SftRequest, TableFormat};
use crate::metrics::TiePolicy;
use crate::preset::{Preset, ReferenceWording};
use crate::project::Project;
use crate::prompt::Wording;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    /// Recommender SFT data: per case 1 positive and 1 negative, prompt -> yes / no.
    Recommender,
    /// Summarizer SFT data: prompt -> accepted or edited summary.
    Summarizer,
    /// The project's final summaries (JSONL or CSV).
    Summaries,
    /// Scores from `--scores` files (JSONL or CSV).
    Scores,
    /// Metrics per scorer from `--scores` files (CSV or Markdown), as `trsr eval` computes them.
    Metrics,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// `{"prompt": ..., "completion": ...}` (SFT kinds).
    PromptCompletion,
    /// `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}` (SFT kinds).
    Messages,
    /// One JSON object per line (tables).
    Jsonl,
    Csv,
    Markdown,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// The project file (RON). Needed for recommender, summarizer and summaries.
    #[arg(long)]
    pub project: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub kind: ExportKind,
    /// prompt-completion or messages for SFT data; jsonl, csv or markdown for tables.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Output file (written whole, then moved into place).
    #[arg(long)]
    pub out: PathBuf,
    /// Also export summaries nobody reviewed (rejected and flagged ones never are).
    #[arg(long)]
    pub include_unreviewed: bool,
    /// Only this summarization method (repeatable; all when absent).
    #[arg(long = "method")]
    pub methods: Vec<String>,
    /// Seed for choosing each case's negative (recommender data).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Prepared dataset folder (items.jsonl + cases.jsonl); defaults to the project's.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Prompt templates file (RON), as `trsr summarize` / `trsr score` take it;
    /// default: the project's templates over the wording's built-in ones.
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// Wording of the built-in templates; default: guessed from the item fields.
    #[arg(long, value_enum)]
    pub wording: Option<Wording>,
    /// scores.jsonl files for `--kind scores` and `--kind metrics`.
    #[arg(long, num_args = 1..)]
    pub scores: Vec<PathBuf>,
    /// Cut-offs for `--kind metrics`.
    #[arg(long, value_delimiter = ',', default_value = "3,5,10")]
    pub k: Vec<usize>,
    /// Tie policy for `--kind metrics`.
    #[arg(long, value_enum, default_value_t = TiePolicy::Pessimistic)]
    pub ties: TiePolicy,
    /// Prompts of the SFT data: `workbench` or `reference` (the reference code's,
    /// byte for byte); default: the project's preset.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// With `--preset reference`: `mind` or `amazon` wording, when neither the project
    /// nor the dataset's prepare.json tells.
    #[arg(long, value_enum)]
    pub reference_wording: Option<ReferenceWording>,
}

/// A value's command-line spelling (`prompt-completion`, not `PromptCompletion`).
fn name<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

fn load_project(args: &ExportArgs) -> anyhow::Result<(PathBuf, Project)> {
    let Some(path) = &args.project else {
        bail!("--kind {} needs --project FILE", name(&args.kind));
    };
    let project = Project::load(path).with_context(|| "could not open the project".to_string())?;
    Ok((path.clone(), project))
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let message = match args.kind {
        ExportKind::Recommender | ExportKind::Summarizer => {
            let form = match args.format {
                ExportFormat::PromptCompletion => SftForm::PromptCompletion,
                ExportFormat::Messages => SftForm::Messages,
                other => bail!(
                    "--kind {:?} writes SFT data: use --format prompt-completion or messages, not {}",
                    name(&args.kind),
                    name(&other)
                ),
            };
            let (path, project) = load_project(&args)?;
            let req = SftRequest {
                recommender: args.kind == ExportKind::Recommender,
                form,
                include_unreviewed: args.include_unreviewed,
                methods: args.methods.clone(),
                seed: args.seed,
                dataset: args.dataset.clone(),
                templates: args.templates.clone(),
                wording: args.wording,
            };
            let mut project = project;
            if let Some(p) = args.preset {
                project.settings.preset = p;
            }
            if args.reference_wording.is_some() {
                project.settings.reference_wording = args.reference_wording;
            }
            let (bytes, message) = sft_export(&path, &project, &req).map_err(|e| {
                if e.is::<export::NoDataset>() {
                    e.context("pass --dataset DIR")
                } else {
                    e
                }
            })?;
            buf = bytes;
            message
        }
        ExportKind::Summaries => {
            let (_, project) = load_project(&args)?;
            match args.format {
                ExportFormat::Jsonl => export::write_summaries_jsonl(&mut buf, &project.curation)?,
                ExportFormat::Csv => {
                    buf = export::summaries_table(&project.curation)
                        .render(TableFormat::Csv)
                        .into_bytes()
                }
                ExportFormat::Markdown => {
                    buf = export::summaries_table(&project.curation)
                        .render(TableFormat::Markdown)
                        .into_bytes()
                }
                other => bail!(
                    "--kind summaries writes a table: use --format jsonl, csv or markdown, not {}",
                    name(&other)
                ),
            }
            format!("{} summaries", project.curation.traces().count())
        }
        ExportKind::Scores => {
            if args.scores.is_empty() {
                bail!("--kind scores needs --scores FILE...");
            }
            let (records, _) = super::eval::read_all(&args.scores)?;
            let table = || export::scores_table(&records);
            match args.format {
                ExportFormat::Jsonl => export::write_scores_jsonl(&mut buf, &records)?,
                ExportFormat::Csv => buf = table().render(TableFormat::Csv).into_bytes(),
                ExportFormat::Markdown => buf = table().render(TableFormat::Markdown).into_bytes(),
                other => bail!(
                    "--kind scores writes a table: use --format jsonl, csv or markdown, not {}",
                    name(&other)
                ),
            }
            format!("{} score records", records.len())
        }
        ExportKind::Metrics => {
            if args.scores.is_empty() {
                bail!("--kind metrics needs --scores FILE...");
            }
            if args.k.is_empty() || args.k.contains(&0) {
                bail!("--k takes positive cut-offs such as 3,5,10");
            }
            let (records, order) = super::eval::read_all(&args.scores)?;
            let summaries = crate::metrics::evaluate(&records, &args.k, args.ties);
            let ordered: Vec<_> = order
                .iter()
                .filter_map(|s| summaries.get(s).map(|m| (s.clone(), m.clone())))
                .collect();
            let table = export::metrics_table(&ordered, &args.k);
            buf = match args.format {
                ExportFormat::Csv => table.render(TableFormat::Csv),
                ExportFormat::Markdown => table.render(TableFormat::Markdown),
                ExportFormat::Jsonl => {
                    let mut s = serde_json::to_string(&export::metrics_json(&ordered, &args.k))?;
                    s.push('\n');
                    s
                }
                other => bail!(
                    "--kind metrics writes a table: use --format csv, markdown or jsonl, not {}",
                    name(&other)
                ),
            }
            .into_bytes();
            format!("metrics of {} scorers", ordered.len())
        }
    };
    write_out(&args.out, &buf)?;
    eprintln!("wrote {message} to {}", args.out.display());
    Ok(())
}
