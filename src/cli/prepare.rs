//! `trsr prepare`: a raw dataset folder in, `items.jsonl` + `cases.jsonl` out.

use std::path::PathBuf;

use anyhow::Context;

use crate::data::prepare::{
    assign_split_counts, parse_split, parse_split_counts, prepare, write_prepared, LongHistory,
    NegativeSource, PrepareOptions,
};
use crate::data::{detect_format, load_dir, FormatChoice, LoadOptions};
use crate::preset::{PrepareMeta, Preset, ReferenceWording, PREPARE_META_FILE};

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
    #[arg(long, conflicts_with = "split_counts")]
    pub split: Option<String>,
    /// Split by counts: the first TRAIN cases train, the next VAL val, the next TEST
    /// test, later ones none (the reference's 2400,300,300); see --shuffle.
    #[arg(long, value_name = "TRAIN,VAL,TEST")]
    pub split_counts: Option<String>,
    /// With --split-counts: put the cases in a random order (seeded by --seed) first.
    #[arg(long, requires = "split_counts")]
    pub shuffle: bool,
    /// Amazon-M2 locale to keep; `all` keeps every locale.
    #[arg(long, default_value = "UK")]
    pub locale: String,
    /// `workbench` or `reference` (as the reference code prepares: negatives uniform
    /// over the catalogue, target and history not excluded); recorded in
    /// `prepare.json`, which later `--preset reference` commands read.
    #[arg(long, value_enum, default_value_t = Preset::Workbench)]
    pub preset: Preset,
    /// With `--preset reference` on a RecBole or JSONL folder: which dataset's reference
    /// wording later commands use (`mind` or `amazon`).
    #[arg(long, value_enum)]
    pub reference_wording: Option<ReferenceWording>,
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
    let reference_wording = match args.preset {
        Preset::Workbench => None,
        Preset::Reference => Some(
            args.reference_wording
                .or_else(|| ReferenceWording::for_format(format))
                .ok_or_else(|| {
                    crate::preset::no_reference_wording(&format!(
                        "{} is a {format} folder",
                        args.input.display()
                    ))
                })?,
        ),
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
    let split_counts = args
        .split_counts
        .as_deref()
        .map(parse_split_counts)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--split-counts: {e}"))?;
    let load_opts = LoadOptions {
        locale: (!args.locale.eq_ignore_ascii_case("all")).then(|| args.locale.clone()),
        progress: Some(&progress),
        cancel: None,
        reference_rows: args.preset == Preset::Reference,
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
    opts.reference_sampling = args.reference_sampling || args.preset == Preset::Reference;
    opts.negatives_with_text = args.preset == Preset::Reference;
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
    let (mut cases, report) = prepare(&ds, &opts)?;
    println!("prepare: {}", report.summary());
    if let Some(counts) = split_counts {
        let none = assign_split_counts(&mut cases, counts, args.shuffle.then_some(args.seed));
        let got = |name: &str| {
            cases
                .iter()
                .filter(|c| c.split.as_deref() == Some(name))
                .count()
        };
        println!(
            "split by counts{}: train {}, val {}, test {}, none {none}",
            if args.shuffle {
                " after a seeded shuffle"
            } else {
                ""
            },
            got("train"),
            got("val"),
            got("test")
        );
        if got("train") + got("val") + got("test") < counts.iter().sum::<usize>() {
            println!(
                "note: only {} cases for --split-counts {},{},{}",
                cases.len(),
                counts[0],
                counts[1],
                counts[2]
            );
        }
    }
    if cases.is_empty() {
        anyhow::bail!(
            "no case kept from {}: see the counts above (loosen --min-history / --max-history, \
             or check the locale with --locale)",
            args.input.display()
        );
    }
    write_prepared(&args.out, &ds.catalogue, &cases)
        .with_context(|| format!("writing {}", args.out.display()))?;
    // The source format (and a RecBole / JSONL folder's chosen reference wording), so
    // later `--preset reference` commands need not be told again.
    let meta = PrepareMeta {
        format: format.name().into(),
        preset: args.preset,
        reference_wording,
    };
    let meta_path = args.out.join(PREPARE_META_FILE);
    let text = serde_json::to_string_pretty(&meta).context("could not encode prepare.json")?;
    std::fs::write(&meta_path, text + "\n")
        .with_context(|| format!("could not write {}", meta_path.display()))?;
    println!(
        "wrote {} ({} items) and {} ({} cases)",
        args.out.join("items.jsonl").display(),
        ds.catalogue.len(),
        args.out.join("cases.jsonl").display(),
        cases.len()
    );
    Ok(())
}
