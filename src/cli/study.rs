//! `trsr study --config study.ron --out DIR`: runs a whole grid of configurations
//! (see [`crate::study`]) through the same summarize and score code as `trsr sweep`
//! (with its result cache and resumable files, so a re-run continues and Ctrl-C keeps
//! finished work), then writes a report a paper can cite: `DIR/report.md` (settings,
//! model identities, every configuration's metrics with intervals, significance
//! against the best baseline), PNG charts, and the per-case `DIR/scores.jsonl`
//! (one scorer name per configuration, so `trsr eval --scores DIR/scores.jsonl
//! --ci 0.95 --compare A,B` works on it directly).
//!
//! Layout: `DIR/data/` (the prepared cases, when the dataset was raw),
//! `DIR/runs/baselines_s<seed>/`, `DIR/runs/m<i>_s<seed>_mb<max blocks>_r<recent>/`
//! (each a `trsr sweep` output folder), then the report files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::batch::{interrupt_token, load_models, read_jsonl, select_cases, CommonArgs, ModelArgs};
use super::eval_stats::metrics_ci_table;
use super::study_charts::{bar_chart_png, line_chart_png, BarChart, LineSeries, CHART_SIZE_PX};
use super::sweep::{sweep_parts, SweepParts, SweepPlan};
use crate::data::Prepared;
use crate::export::TableFormat;
use crate::lm::{CancelToken, ModelIdentity, SamplingParams};
use crate::metrics::{evaluate, ScoreRecord, Summary};
use crate::preset::Preset;
use crate::stats::{
    apply_holm, case_tables, compare, scorer_intervals, BootstrapParams, Comparison, Interval,
    DEFAULT_PERMUTATIONS, INTERVAL_METHOD, PAIRED_TEST,
};
use crate::study::{StudyConfig, KS};

#[derive(clap::Args, Debug, Clone)]
pub struct StudyArgs {
    /// The study file (RON): dataset, preset, methods, block sizes, models, baselines,
    /// seeds... (see assets/study_example.ron).
    #[arg(long)]
    pub config: PathBuf,
    /// Output folder: runs, report.md, charts, scores.jsonl. Re-running resumes.
    #[arg(long)]
    pub out: PathBuf,
    /// Cache folder (default: $TRSR_CACHE_DIR or ~/.cache/trsr/results).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Recompute even when the cache has the result.
    #[arg(long)]
    pub no_cache: bool,
    /// Device for the models: auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Hide progress.
    #[arg(long)]
    pub quiet: bool,
}

/// One configuration's scores and where they came from.
#[derive(Clone, Debug)]
pub struct ConfigRow {
    /// Unique scorer name in `scores.jsonl` and the report.
    pub label: String,
    pub baseline: bool,
    pub model: Option<usize>,
    pub method: Option<String>,
    pub block_size: Option<usize>,
    pub max_blocks: Option<usize>,
    pub recent: Option<usize>,
    pub seed: u64,
}

/// What a finished study produced.
#[derive(Clone, Debug)]
pub struct StudyOutcome {
    pub rows: Vec<ConfigRow>,
    pub summaries: BTreeMap<String, Summary>,
    pub report: PathBuf,
    pub charts: Vec<PathBuf>,
}

/// The prepared data of the study and the folder it is in: `data` itself when it is a
/// prepared folder, else `OUT/data`, prepared here under the study's preset (with the
/// `prepare.json` that `trsr prepare` writes).
fn prepared_data(
    cfg: &StudyConfig,
    preset: Preset,
    out: &Path,
) -> anyhow::Result<(Prepared, std::path::PathBuf)> {
    if cfg.data.join("cases.jsonl").is_file() && cfg.data.join("items.jsonl").is_file() {
        return Ok((
            crate::data::jsonl::load_prepared(&cfg.data)?,
            cfg.data.clone(),
        ));
    }
    let dir = out.join("data");
    if !(dir.join("cases.jsonl").is_file() && dir.join("items.jsonl").is_file()) {
        let format = crate::data::detect_format(&cfg.data)?;
        let choice = match format {
            crate::data::Format::Mind => crate::data::FormatChoice::Mind,
            crate::data::Format::AmazonM2 => crate::data::FormatChoice::AmazonM2,
            crate::data::Format::RecBole => crate::data::FormatChoice::RecBole,
            crate::data::Format::Jsonl => crate::data::FormatChoice::Jsonl,
        };
        let load = crate::data::LoadOptions {
            locale: Some("UK".into()),
            progress: None,
            cancel: None,
            reference_rows: preset == Preset::Reference,
        };
        let ds = crate::data::load_dir(&cfg.data, choice, &load)
            .with_context(|| format!("loading {}", cfg.data.display()))?;
        let mut opts = crate::data::prepare::PrepareOptions::for_format(format);
        opts.reference_sampling = preset == Preset::Reference;
        opts.negatives_with_text = preset == Preset::Reference;
        let (cases, report) = crate::data::prepare::prepare(&ds, &opts)?;
        eprintln!("prepare ({format}): {}", report.summary());
        if cases.is_empty() {
            anyhow::bail!("no case kept from {}", cfg.data.display());
        }
        crate::data::prepare::write_prepared(&dir, &ds.catalogue, &cases)?;
        let meta = crate::preset::PrepareMeta {
            format: format.name().into(),
            preset,
            reference_wording: match preset {
                Preset::Workbench => None,
                Preset::Reference => crate::preset::ReferenceWording::for_format(format),
            },
        };
        let meta_path = dir.join(crate::preset::PREPARE_META_FILE);
        std::fs::write(&meta_path, serde_json::to_string_pretty(&meta)? + "\n")
            .with_context(|| format!("could not write {}", meta_path.display()))?;
    }
    Ok((crate::data::jsonl::load_prepared(&dir)?, dir))
}

fn read_if(path: &Path) -> anyhow::Result<Vec<ScoreRecord>> {
    if path.is_file() {
        read_jsonl(path)
    } else {
        Ok(Vec::new())
    }
}

/// Runs the study into `args.out` and writes the report.
pub fn run_study(args: &StudyArgs, cancel: &CancelToken) -> anyhow::Result<StudyOutcome> {
    let cfg = StudyConfig::load(&args.config)?;
    let config_text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("could not read {}", args.config.display()))?;
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("could not create {}", out.display()))?;
    std::fs::write(out.join("study.ron"), &config_text)
        .with_context(|| format!("could not write {}", out.join("study.ron").display()))?;
    let say = |m: String| {
        if !args.quiet {
            eprintln!("{m}");
        }
    };

    let preset = cfg.preset()?;
    let (data, data_dir) = prepared_data(&cfg, preset, out)?;
    let mut common = CommonArgs {
        split: cfg.split.clone(),
        no_cache: args.no_cache,
        cache_dir: args.cache_dir.clone(),
        threads: cfg.threads,
        quiet: args.quiet,
        preset,
        ..CommonArgs::default()
    };
    common.resolve_preset(&data_dir)?;
    let templates = common.templates(&data.catalogue)?;
    let text = common.text_template(&data.catalogue);
    let cases = select_cases(&data, cfg.split.as_deref(), cfg.limit);
    if cases.is_empty() {
        anyhow::bail!("no cases in {} (split {:?})", cfg.data.display(), cfg.split);
    }
    let cache = common.cache();
    let ties = cfg.ties();
    let runs = out.join("runs");
    let plan_for =
        |seed: u64, max_blocks: usize, recent: usize, block_sizes: Vec<usize>| SweepPlan {
            data: &data,
            cases: cases.clone(),
            text: &text,
            templates: &templates,
            methods: cfg.methods(),
            block_sizes,
            max_blocks,
            recent,
            sampling: SamplingParams {
                seed,
                max_new_tokens: cfg.max_new_tokens,
                ..super::batch::SamplingArgs::default().params(preset)
            },
            seed,
            ties,
            cache: cache.as_ref(),
            read_cache: !args.no_cache,
            show_progress: !args.quiet,
        };

    let many_models = cfg.models.len() > 1;
    let many_seeds = cfg.seeds.len() > 1;
    let many_mb = cfg.max_blocks.len() > 1;
    let many_recent = cfg.recent.len() > 1;
    let mut rows: Vec<ConfigRow> = Vec::new();
    let mut records: Vec<ScoreRecord> = Vec::new();
    let mut push = |row: ConfigRow, recs: Vec<ScoreRecord>, rows: &mut Vec<ConfigRow>| {
        for mut r in recs {
            r.scorer = row.label.clone();
            records.push(r);
        }
        rows.push(row);
    };

    // Baselines: once per seed (only `random` depends on it).
    let baselines = cfg.baselines();
    for (si, &seed) in cfg.seeds.iter().enumerate() {
        let these: Vec<_> = baselines
            .iter()
            .copied()
            .filter(|b| si == 0 || *b == crate::rank::Baseline::Random)
            .collect();
        if these.is_empty() {
            continue;
        }
        let dir = runs.join(format!("baselines_s{seed}"));
        say(format!("baselines, seed {seed} -> {}", dir.display()));
        let parts = SweepParts {
            baselines: these.clone(),
            no_summary: false,
            with_summary: false,
        };
        let mut none: Vec<Box<dyn crate::lm::LanguageModel>> = Vec::new();
        sweep_parts(
            &mut none,
            &plan_for(seed, 5, 5, Vec::new()),
            &parts,
            &dir,
            cancel,
        )?;
        let recs = read_if(&dir.join("scores_baselines.jsonl"))?;
        for b in these {
            let mine: Vec<ScoreRecord> = recs
                .iter()
                .filter(|r| r.scorer == b.name())
                .cloned()
                .collect();
            let label = if many_seeds && b == crate::rank::Baseline::Random {
                format!("{} s{seed}", b.name())
            } else {
                b.name().to_string()
            };
            push(
                ConfigRow {
                    label,
                    baseline: true,
                    model: None,
                    method: None,
                    block_size: None,
                    max_blocks: None,
                    recent: None,
                    seed,
                },
                mine,
                &mut rows,
            );
        }
    }

    // The LLM configurations.
    let mut identities: Vec<(ModelIdentity, Option<PathBuf>)> = Vec::new();
    if !cfg.summary.is_empty() {
        for (mi, spec) in cfg.models.iter().enumerate() {
            let margs = ModelArgs {
                model: spec.model.clone(),
                device: args.device.clone(),
                adapter: spec.adapter.clone(),
                ..ModelArgs::default()
            };
            say(format!("loading model {}", spec.model));
            let mut models = load_models(&margs, &templates, common.workers())?;
            let id = models
                .first()
                .map(|m| m.identity())
                .context("no model instance was loaded")?;
            identities.push((id.clone(), spec.adapter.clone()));
            let tag = if many_models {
                format!("m{mi}:{}", id.name)
            } else {
                id.name.clone()
            };
            for &seed in &cfg.seeds {
                for &mb in &cfg.max_blocks {
                    for &recent in &cfg.recent {
                        let dir = runs.join(format!("m{mi}_s{seed}_mb{mb}_r{recent}"));
                        say(format!(
                            "model {}, seed {seed}, max blocks {mb}, recent {recent} -> {}",
                            id.name,
                            dir.display()
                        ));
                        let parts = SweepParts {
                            baselines: Vec::new(),
                            no_summary: cfg.summary.contains(&false),
                            with_summary: cfg.summary.contains(&true),
                        };
                        let plan = plan_for(seed, mb, recent, cfg.block_sizes.clone());
                        sweep_parts(&mut models, &plan, &parts, &dir, cancel)?;
                        let mut suffix = String::new();
                        if many_mb {
                            let _ = write!(suffix, " mb{mb}");
                        }
                        if many_recent {
                            let _ = write!(suffix, " r{recent}");
                        }
                        if many_seeds {
                            let _ = write!(suffix, " s{seed}");
                        }
                        let base = ConfigRow {
                            label: String::new(),
                            baseline: false,
                            model: Some(mi),
                            method: None,
                            block_size: None,
                            max_blocks: Some(mb),
                            recent: Some(recent),
                            seed,
                        };
                        if parts.no_summary {
                            let recs = read_if(&dir.join("scores_llm_no-summary.jsonl"))?;
                            push(
                                ConfigRow {
                                    label: format!("{tag} no-summary{suffix}"),
                                    max_blocks: None,
                                    ..base.clone()
                                },
                                recs,
                                &mut rows,
                            );
                        }
                        if parts.with_summary {
                            for method in cfg.methods() {
                                for &size in &cfg.block_sizes {
                                    let recs = read_if(
                                        &dir.join(format!("scores_{method}_b{size}.jsonl")),
                                    )?;
                                    push(
                                        ConfigRow {
                                            label: format!("{tag} {method} b{size}{suffix}"),
                                            method: Some(method.name().to_string()),
                                            block_size: Some(size),
                                            ..base.clone()
                                        },
                                        recs,
                                        &mut rows,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // scores.jsonl: every configuration's per-case scores under its label.
    let scores_path = out.join("scores.jsonl");
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&scores_path)
            .with_context(|| format!("could not write {}", scores_path.display()))?,
    );
    crate::export::write_scores_jsonl(&mut w, &records)
        .with_context(|| format!("could not write {}", scores_path.display()))?;

    write_report(
        &cfg,
        &config_text,
        args,
        out,
        &rows,
        &records,
        &identities,
        cases.len(),
    )
}

#[allow(clippy::too_many_arguments)]
fn write_report(
    cfg: &StudyConfig,
    config_text: &str,
    args: &StudyArgs,
    out: &Path,
    rows: &[ConfigRow],
    records: &[ScoreRecord],
    identities: &[(ModelIdentity, Option<PathBuf>)],
    n_cases: usize,
) -> anyhow::Result<StudyOutcome> {
    let ties = cfg.ties();
    let summaries = evaluate(records, &KS, ties);
    let tables = case_tables(records, &KS, ties);
    let params = BootstrapParams {
        level: cfg.ci,
        resamples: cfg.bootstrap,
        seed: cfg.seeds.first().copied().unwrap_or(42),
    };
    let mut intervals = super::eval_stats::Intervals::new();
    let mut ordered: Vec<(String, Summary)> = Vec::new();
    for r in rows {
        let (Some(s), Some(t)) = (summaries.get(&r.label), tables.get(&r.label)) else {
            continue;
        };
        ordered.push((r.label.clone(), s.clone()));
        intervals.insert(r.label.clone(), scorer_intervals(t, &params, &r.label)?);
    }
    write_metrics_json(&out.join("metrics.json"), rows, &summaries, &intervals)?;
    let metric = cfg.metric.as_str();
    let value = |label: &str| {
        summaries
            .get(label)
            .and_then(|s| s.metrics.get(metric))
            .copied()
    };
    let ci_of = |label: &str| {
        intervals
            .get(label)
            .and_then(|m| m.get(metric))
            .copied()
            .flatten()
    };

    // Significance against the best baseline, on the study's metric.
    let best = rows
        .iter()
        .filter(|r| r.baseline)
        .filter_map(|r| value(&r.label).map(|v| (r.label.clone(), v)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|x| x.0);
    let mut comparisons: Vec<Comparison> = Vec::new();
    if let Some(best) = &best {
        if let Some(tb) = tables.get(best) {
            for r in rows.iter().filter(|r| !r.baseline) {
                let Some(ta) = tables.get(&r.label) else {
                    continue;
                };
                let mut c = compare(&r.label, ta, best, tb, &params, DEFAULT_PERMUTATIONS)?;
                c.metrics.retain(|m| m.metric == metric);
                comparisons.push(c);
            }
        }
    }
    let family = apply_holm(&mut comparisons);

    // Charts.
    let mut charts = Vec::new();
    let chart1 = out.join("metric_vs_block_size.png");
    let mut groups: BTreeMap<String, LineSeries> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.block_size.is_some()) {
        let (Some(v), Some(b)) = (value(&r.label), r.block_size) else {
            continue;
        };
        let key = r.label.replace(&format!(" b{b}"), "");
        let s = groups.entry(key.clone()).or_insert_with(|| LineSeries {
            label: key,
            points: Vec::new(),
        });
        s.points.push((b as f64, v, ci_of(&r.label)));
    }
    let references: Vec<(String, f64, Option<Interval>)> = rows
        .iter()
        .filter(|r| r.block_size.is_none())
        .filter_map(|r| value(&r.label).map(|v| (r.label.clone(), v, ci_of(&r.label))))
        .collect();
    line_chart_png(
        &chart1,
        &format!(
            "{metric} against block size ({:.0}% intervals)",
            cfg.ci * 100.0
        ),
        metric,
        &groups.into_values().collect::<Vec<_>>(),
        &references,
    )?;
    charts.push(chart1);
    let chart2 = out.join("metrics_at_k.png");
    let family_name = metric.split('@').next().unwrap_or("ndcg");
    let group_names: Vec<String> = if family_name == "auc" {
        vec!["auc".into()]
    } else {
        KS.iter().map(|k| format!("{family_name}@{k}")).collect()
    };
    // Baselines and the best LLM configurations, at most 8 bars per group.
    let mut chosen: Vec<&ConfigRow> = rows.iter().filter(|r| r.baseline).collect();
    let mut llm: Vec<&ConfigRow> = rows.iter().filter(|r| !r.baseline).collect();
    llm.sort_by(|a, b| {
        value(&b.label)
            .unwrap_or(0.0)
            .total_cmp(&value(&a.label).unwrap_or(0.0))
    });
    chosen.extend(
        llm.into_iter()
            .take(8usize.saturating_sub(chosen.len()).max(1)),
    );
    let bars = BarChart {
        groups: group_names.clone(),
        series: chosen
            .iter()
            .map(|r| {
                let vals = group_names
                    .iter()
                    .map(|g| {
                        summaries
                            .get(&r.label)
                            .and_then(|s| s.metrics.get(g))
                            .map(|v| {
                                (
                                    *v,
                                    intervals
                                        .get(&r.label)
                                        .and_then(|m| m.get(g))
                                        .copied()
                                        .flatten(),
                                )
                            })
                    })
                    .collect();
                (r.label.clone(), vals)
            })
            .collect(),
    };
    bar_chart_png(
        &chart2,
        &format!("{family_name}@K ({:.0}% intervals)", cfg.ci * 100.0),
        family_name,
        &bars,
    )?;
    charts.push(chart2);

    // report.md
    let mut md = String::new();
    let _ = writeln!(md, "# Study report\n");
    let _ = writeln!(
        md,
        "Written by trsr {} from `{}`. Re-run `trsr study --config {} --out {}` to reproduce \
         (finished work is reused from the runs folder and the result cache).\n",
        env!("CARGO_PKG_VERSION"),
        args.config.display(),
        args.config.display(),
        out.display()
    );
    let _ = writeln!(md, "## Settings\n");
    let _ = writeln!(md, "| setting | value |\n|---|---|");
    let list = |v: &[usize]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (k, v) in [
        ("trsr version", env!("CARGO_PKG_VERSION").to_string()),
        ("dataset", cfg.data.display().to_string()),
        ("cases evaluated", n_cases.to_string()),
        (
            "case limit",
            cfg.limit.map_or("all".into(), |l| l.to_string()),
        ),
        ("split", cfg.split.clone().unwrap_or_else(|| "all".into())),
        (
            "preset",
            format!(
                "{} (applied: prompts, sampling defaults and case selection)",
                cfg.preset
            ),
        ),
        ("methods", cfg.methods.join(", ")),
        ("block sizes", list(&cfg.block_sizes)),
        ("max blocks", list(&cfg.max_blocks)),
        ("recent items", list(&cfg.recent)),
        (
            "summary",
            cfg.summary
                .iter()
                .map(|b| if *b { "on" } else { "off" })
                .collect::<Vec<_>>()
                .join(", ")
                + if cfg.summary.is_empty() {
                    "none (no LLM run)"
                } else {
                    ""
                },
        ),
        ("baselines", cfg.baselines.join(", ")),
        (
            "seeds",
            cfg.seeds
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("tie policy", cfg.ties.clone()),
        (
            "intervals",
            format!(
                "{:.0}% {INTERVAL_METHOD}, {} resamples, seed {}",
                cfg.ci * 100.0,
                cfg.bootstrap,
                params.seed
            ),
        ),
        (
            "paired test",
            format!("{PAIRED_TEST}; Holm-adjusted over the {family} comparisons"),
        ),
    ] {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(md, "\n### Models\n");
    if identities.is_empty() {
        let _ = writeln!(md, "No model (baselines only).");
    } else {
        let _ = writeln!(
            md,
            "| # | model | SHA-256 | architecture | adapter |\n|---|---|---|---|---|"
        );
        for (i, (id, adapter)) in identities.iter().enumerate() {
            let _ = writeln!(
                md,
                "| m{i} | {} | `{}` | {} | {} |",
                id.name,
                id.sha256,
                id.architecture,
                adapter
                    .as_ref()
                    .map_or("none".into(), |a| a.display().to_string())
            );
        }
    }
    let _ = writeln!(
        md,
        "\n### Study file\n\n```ron\n{}\n```\n",
        config_text.trim_end()
    );
    let _ = writeln!(md, "## Metrics\n");
    let _ = writeln!(
        md,
        "Means over cases with {:.0}% intervals ({INTERVAL_METHOD}). Per-case scores: \
         `scores.jsonl` (scorer = configuration).\n",
        cfg.ci * 100.0
    );
    md.push_str(&metrics_ci_table(&ordered, &intervals, &KS, TableFormat::Markdown).to_markdown());
    let _ = writeln!(md, "\n## Significance against the best baseline\n");
    match &best {
        None => {
            let _ = writeln!(md, "No baseline in the study.");
        }
        Some(best) if comparisons.is_empty() => {
            let _ = writeln!(
                md,
                "Best baseline on {metric}: `{best}`; no other configuration to compare."
            );
        }
        Some(best) => {
            let _ = writeln!(
                md,
                "Best baseline on {metric}: `{best}`. Difference = configuration - baseline on the \
                 cases both scored; p from the {PAIRED_TEST}, Holm-adjusted over the {family} \
                 comparisons.\n"
            );
            md.push_str(
                &super::eval_stats::comparison_table(&comparisons, TableFormat::Markdown)
                    .to_markdown(),
            );
            for note in super::eval_stats::missing_notes(&comparisons) {
                let _ = writeln!(md, "\nNote: {note}");
            }
        }
    }
    let _ = writeln!(md, "\n## Charts\n");
    let (w, h) = CHART_SIZE_PX;
    for c in &charts {
        let name = c
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(md, "![{name}]({name}) ({w}x{h} px)\n");
    }
    let _ = writeln!(md, "## Configurations\n");
    let _ = writeln!(md, "| configuration | kind | model | method | block size | max blocks | recent | seed |\n|---|---|---|---|---|---|---|---|");
    let opt = |v: Option<usize>| v.map_or("-".into(), |x| x.to_string());
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            if r.baseline { "baseline" } else { "LLM" },
            r.model.map_or("-".into(), |m| format!("m{m}")),
            r.method.clone().unwrap_or_else(|| if r.baseline {
                "-".into()
            } else {
                "no summary".into()
            }),
            opt(r.block_size),
            opt(r.max_blocks),
            opt(r.recent),
            r.seed
        );
    }
    let report = out.join("report.md");
    std::fs::write(&report, md).with_context(|| format!("could not write {}", report.display()))?;
    Ok(StudyOutcome {
        rows: rows.to_vec(),
        summaries,
        report,
        charts,
    })
}

/// `DIR/metrics.json`: one row per configuration in the layout of `trsr sweep`'s
/// (scorer, block size, cases, metrics) plus `intervals: {"<metric>": [lo, hi]}`,
/// so the window's "Load results..." draws it with interval bands.
fn write_metrics_json(
    path: &Path,
    rows: &[ConfigRow],
    summaries: &BTreeMap<String, Summary>,
    intervals: &super::eval_stats::Intervals,
) -> anyhow::Result<()> {
    let list: Vec<serde_json::Value> = rows
        .iter()
        .filter_map(|r| {
            let s = summaries.get(&r.label)?;
            let series = match r.block_size {
                Some(b) => r.label.replace(&format!(" b{b}"), ""),
                None => r.label.clone(),
            };
            let iv: serde_json::Map<String, serde_json::Value> = intervals
                .get(&r.label)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| {
                            v.map(|c| (k.clone(), serde_json::json!([c.lo, c.hi])))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(serde_json::json!({
                "scorer": series,
                "configuration": r.label,
                "block_size": r.block_size,
                "cases": s.cases,
                "metrics": s.metrics,
                "intervals": iv,
            }))
        })
        .collect();
    let text = serde_json::to_string_pretty(&list)?;
    std::fs::write(path, text).with_context(|| format!("could not write {}", path.display()))
}

pub fn run(args: StudyArgs) -> anyhow::Result<()> {
    let outcome = run_study(&args, &interrupt_token())?;
    for r in &outcome.rows {
        if let Some(s) = outcome.summaries.get(&r.label) {
            println!(
                "{:<60} cases {:>4}  recall@5 {:.4}  ndcg@10 {:.4}",
                r.label,
                s.cases,
                s.metrics.get("recall@5").copied().unwrap_or(f64::NAN),
                s.metrics.get("ndcg@10").copied().unwrap_or(f64::NAN)
            );
        }
    }
    println!("report: {}", outcome.report.display());
    for c in &outcome.charts {
        println!("chart: {}", c.display());
    }
    Ok(())
}
