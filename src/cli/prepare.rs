//! `trsr prepare`: a raw dataset folder in, `items.jsonl` + `cases.jsonl` out.

use std::path::PathBuf;

use anyhow::Context;

use crate::data::prepare::{
    parse_split, prepare, write_prepared, LongHistory, NegativeSource, PrepareOptions,
};
use crate::data::{detect_format, load_dir, FormatChoice, LoadOptions};

#[derive(clap::Args, Debug, Clone)]
pub struct PrepareArgs {
    /// The dataset folder (MIND, Amazon-M2, RecBole atomic files, or JSONL).
    #[arg(long)]
    pub input: PathBuf,
    /// The folder's format; `auto` detects it and says which it found.
    #[arg(long, value_enum, default_value_t = FormatChoice::Auto)]
    pub format: FormatChoice,
    /// Where to write items.jsonl and cases.jsonl (created if absent).
    #[arg(long)]
    pub out: PathBuf,
    /// Fewest history items before the target (default per format: 10 for MIND and
    /// Amazon-M2, as in the paper; 5 otherwise).
    #[arg(long)]
    pub min_history: Option<usize>,
    /// Most history items before the target (default 25).
    #[arg(long)]
    pub max_history: Option<usize>,
    /// What to do with longer histories (default: drop for MIND and Amazon-M2, as
    /// in the paper; keep-recent otherwise).
    #[arg(long, value_enum)]
    pub long_history: Option<LongHistory>,
    /// Negatives per case.
    #[arg(long, default_value_t = 20)]
    pub negatives: usize,
    /// Seed of the negative sampling and of the split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where negatives come from: the whole catalogue, or the impression's
    /// shown-but-not-clicked items (MIND).
    #[arg(long, value_enum, default_value_t = NegativeSource::Catalog)]
    pub negative_source: NegativeSource,
    /// Sample as the reference code does: uniform over the whole catalogue, the
    /// target and history not excluded (collisions are reported).
    #[arg(long)]
    pub reference_sampling: bool,
    /// Split the cases, e.g. `train=0.8,val=0.1,test=0.1` (seeded shuffle).
    #[arg(long)]
    pub split: Option<String>,
    /// Amazon-M2 locale to keep; `all` keeps every locale.
    #[arg(long, default_value = "UK")]
    pub locale: String,
}

pub fn run(args: PrepareArgs) -> anyhow::Result<()> {
    let format = match args.format.format() {
        Some(f) => {
            println!("format: {f} (as given)");
            f
        }
        None => {
            let f = detect_format(&args.input)?;
            println!("format: {f} (detected in {})", args.input.display());
            f
        }
    };
    let split = args
        .split
        .as_deref()
        .map(parse_split)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--split: {e}"))?;

    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("loading {bar:30} {bytes}/{total_bytes} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let load_opts = LoadOptions {
        locale: (!args.locale.eq_ignore_ascii_case("all")).then(|| args.locale.clone()),
        progress: Some(&progress),
        cancel: None,
    };
    let choice = match format {
        crate::data::Format::Mind => FormatChoice::Mind,
        crate::data::Format::AmazonM2 => FormatChoice::AmazonM2,
        crate::data::Format::RecBole => FormatChoice::RecBole,
        crate::data::Format::Jsonl => FormatChoice::Jsonl,
    };
    let ds = load_dir(&args.input, choice, &load_opts)
        .with_context(|| format!("loading {}", args.input.display()))?;
    bar.finish_and_clear();
    println!("load: {}", ds.report.summary());

    let mut opts = PrepareOptions::for_format(format);
    if let Some(n) = args.min_history {
        opts.min_history = n;
    }
    if let Some(n) = args.max_history {
        opts.max_history = n;
    }
    if let Some(l) = args.long_history {
        opts.long_history = l;
    }
    opts.negatives = args.negatives;
    opts.seed = args.seed;
    opts.negative_source = args.negative_source;
    opts.reference_sampling = args.reference_sampling;
    opts.split = split;
    if ds.prepared_cases.is_none() {
        println!(
            "prepare: history {}..={} items ({:?} longer), {} negatives from {:?}{}, seed {}",
            opts.min_history,
            opts.max_history,
            opts.long_history,
            opts.negatives,
            opts.negative_source,
            if opts.reference_sampling {
                " (reference sampling: target and history not excluded)"
            } else {
                ""
            },
            opts.seed
        );
    }
    let (cases, report) = prepare(&ds, &opts)?;
    println!("prepare: {}", report.summary());
    if cases.is_empty() {
        anyhow::bail!(
            "no case kept from {}: see the counts above (loosen --min-history / --max-history, \
             or check the locale with --locale)",
            args.input.display()
        );
    }
    write_prepared(&args.out, &ds.catalogue, &cases)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({} items) and {} ({} cases)",
        args.out.join("items.jsonl").display(),
        ds.catalogue.len(),
        args.out.join("cases.jsonl").display(),
        cases.len()
    );
    Ok(())
}
