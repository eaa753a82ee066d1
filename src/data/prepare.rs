//! Evaluation cases from a loaded dataset: length filters, target choice, seeded
//! negative sampling, optional splits; and writing a prepared folder.
//!
//! One case per sequence (user or session). The target is the sequence's
//! `next_item` when the format gives one (Amazon-M2), else its last item (MIND,
//! RecBole, JSONL sequences); the items before it are the history.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::jsonl::{item_to_json, write_jsonl};
use super::{Case, Catalogue, DataError, Dataset, Format, ItemId};

/// Where negatives come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum NegativeSource {
    /// Uniform over the whole catalogue.
    #[default]
    Catalog,
    /// The impression's shown-but-not-clicked items (MIND).
    Impressions,
}

/// What to do with a history longer than `max_history`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum LongHistory {
    /// Drop the user (the paper's filter).
    #[default]
    Drop,
    /// Keep the most recent `max_history` items (reported as truncated).
    KeepRecent,
}

/// How cases are built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrepareOptions {
    /// Fewest history items (the target not counted).
    pub min_history: usize,
    /// Most history items (the target not counted); see `long_history`.
    pub max_history: usize,
    /// Negatives per case.
    pub negatives: usize,
    pub seed: u64,
    pub negative_source: NegativeSource,
    /// Reproduce the reference code: negatives uniform over the whole catalogue
    /// (or all impressions), not excluding the target or the history.
    pub reference_sampling: bool,
    /// Named fractions such as `[("train", 0.8), ("val", 0.1), ("test", 0.1)]`.
    pub split: Option<Vec<(String, f64)>>,
    pub long_history: LongHistory,
    /// Draw catalogue negatives only from items with text (MIND: news.tsv rows), as the
    /// reference's `df_products['id'].sample` does when history ids without a news.tsv
    /// row are kept as text-less items (`--preset reference`).
    pub negatives_with_text: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self::for_format(Format::Jsonl)
    }
}

impl PrepareOptions {
    /// The paper's settings: MIND histories of 10-25 clicks before the target (rows
    /// of 11-26 clicks), Amazon-M2 sessions of 10-25 previous items; longer ones are
    /// dropped. RecBole and JSONL sequences (no paper setting) keep at least one block
    /// of 5 and at most 5 blocks, keeping the most recent items of longer ones.
    pub fn for_format(f: Format) -> Self {
        let (min_history, max_history, long_history) = match f {
            Format::Mind | Format::AmazonM2 => (10, 25, LongHistory::Drop),
            Format::RecBole | Format::Jsonl => (5, 25, LongHistory::KeepRecent),
        };
        Self {
            min_history,
            max_history,
            negatives: 20,
            seed: 42,
            negative_source: NegativeSource::Catalog,
            reference_sampling: false,
            split: None,
            long_history,
            negatives_with_text: false,
        }
    }
}

/// Parses `train=0.8,val=0.1,test=0.1`: names with fractions that sum to 1.
pub fn parse_split(spec: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, frac) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: expected NAME=FRACTION, e.g. train=0.8"))?;
        let name = name.trim();
        let frac: f64 = frac
            .trim()
            .parse()
            .map_err(|_| format!("`{part}`: `{}` is not a number", frac.trim()))?;
        if name.is_empty() || !(0.0..=1.0).contains(&frac) {
            return Err(format!("`{part}`: needs a name and a fraction in 0..1"));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("split `{name}` named twice"));
        }
        out.push((name.to_string(), frac));
    }
    if out.is_empty() {
        return Err("empty split; e.g. train=0.8,val=0.1,test=0.1".into());
    }
    let sum: f64 = out.iter().map(|(_, f)| f).sum();
    if (sum - 1.0).abs() > 1e-6 {
        return Err(format!("split fractions sum to {sum}, not 1"));
    }
    Ok(out)
}

/// What `prepare` read, kept and dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PrepareReport {
    /// Sequences (users or sessions) considered.
    pub users_read: u64,
    pub cases_kept: u64,
    /// Users dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Histories cut to their most recent `max_history` items.
    pub truncated: u64,
    pub negatives_total: u64,
    /// Negatives equal to the case's target.
    pub negatives_colliding_with_target: u64,
    /// Negatives that are in the case's history.
    pub negatives_colliding_with_history: u64,
    /// Cases with fewer negatives than asked (too few candidates to draw from).
    pub cases_short_of_negatives: u64,
    /// Cases per split name.
    pub splits: BTreeMap<String, u64>,
    /// The folder held prepared cases, kept as they were.
    pub kept_as_prepared: bool,
}

impl PrepareReport {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// A human summary in a few lines.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "users read {}, cases kept {}, dropped {}",
            self.users_read,
            self.cases_kept,
            self.dropped_total()
        );
        if self.kept_as_prepared {
            out.push_str(" (prepared cases kept as they are)");
        }
        for (reason, n) in &self.dropped {
            out.push_str(&format!("\n  dropped {n}: {reason}"));
        }
        if self.truncated > 0 {
            out.push_str(&format!(
                "\n  truncated {} histories to their most recent items",
                self.truncated
            ));
        }
        out.push_str(&format!(
            "\nnegatives: {} in all; colliding with the target {}, with the history {}",
            self.negatives_total,
            self.negatives_colliding_with_target,
            self.negatives_colliding_with_history
        ));
        if self.cases_short_of_negatives > 0 {
            out.push_str(&format!(
                "; {} cases have fewer negatives than asked",
                self.cases_short_of_negatives
            ));
        }
        if !self.splits.is_empty() {
            let parts: Vec<String> = self
                .splits
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            out.push_str(&format!("\nsplits: {}", parts.join(", ")));
        }
        out
    }

    fn drop(&mut self, reason: String) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    fn count_collisions(&mut self, case: &Case) {
        let history: HashSet<&str> = case.history.iter().map(String::as_str).collect();
        for n in &case.negatives {
            self.negatives_total += 1;
            if *n == case.target {
                self.negatives_colliding_with_target += 1;
            }
            if history.contains(n.as_str()) {
                self.negatives_colliding_with_history += 1;
            }
        }
    }
}

/// Builds evaluation cases: one per sequence that passes the length filters, the
/// target plus `negatives` seeded negatives. A dataset that already holds prepared
/// cases (a JSONL folder with `cases.jsonl`) keeps them as they are.
pub fn prepare(
    ds: &Dataset,
    opts: &PrepareOptions,
) -> Result<(Vec<Case>, PrepareReport), DataError> {
    let mut report = PrepareReport::default();
    if let Some(cases) = &ds.prepared_cases {
        report.kept_as_prepared = true;
        report.users_read = cases.len() as u64;
        report.cases_kept = cases.len() as u64;
        for c in cases {
            report.count_collisions(c);
            if let Some(s) = &c.split {
                *report.splits.entry(s.clone()).or_default() += 1;
            }
        }
        return Ok((cases.clone(), report));
    }
    if opts.min_history > opts.max_history {
        return Err(DataError::Invalid(format!(
            "--min-history {} is larger than --max-history {}",
            opts.min_history, opts.max_history
        )));
    }
    if opts.negative_source == NegativeSource::Impressions
        && ds.sequences.iter().all(|s| s.shown_not_clicked.is_empty())
    {
        return Err(DataError::Invalid(format!(
            "--negative-source impressions needs shown-but-not-clicked items (MIND impressions); \
             this {} dataset has none: use --negative-source catalog",
            ds.format
        )));
    }
    let catalogue = &ds.catalogue;
    if catalogue.is_empty() {
        return Err(DataError::Invalid("the dataset has no items".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut cases = Vec::new();
    let textless: HashSet<usize> = if opts.negatives_with_text {
        catalogue
            .items()
            .iter()
            .enumerate()
            .filter(|(_, it)| it.fields.is_empty())
            .map(|(p, _)| p)
            .collect()
    } else {
        HashSet::new()
    };
    for seq in &ds.sequences {
        report.users_read += 1;
        let (history, target): (&[ItemId], &ItemId) = match &seq.next_item {
            Some(t) => (seq.items.as_slice(), t),
            None => match seq.items.split_last() {
                Some((t, h)) => (h, t),
                None => {
                    report.drop("empty sequence".into());
                    continue;
                }
            },
        };
        if history.len() < opts.min_history || history.is_empty() {
            report.drop(format!(
                "history shorter than {} items",
                opts.min_history.max(1)
            ));
            continue;
        }
        let history = if history.len() > opts.max_history {
            match opts.long_history {
                LongHistory::Drop => {
                    report.drop(format!("history longer than {} items", opts.max_history));
                    continue;
                }
                LongHistory::KeepRecent => {
                    report.truncated += 1;
                    &history[history.len() - opts.max_history..]
                }
            }
        } else {
            history
        };
        let Some(target_pos) = catalogue.position(target) else {
            report.drop("target not in the catalogue".into());
            continue;
        };
        let mut exclude: HashSet<usize> = textless.clone();
        if !opts.reference_sampling {
            exclude.insert(target_pos);
            exclude.extend(history.iter().filter_map(|h| catalogue.position(h)));
        }
        let negatives = match opts.negative_source {
            NegativeSource::Catalog => {
                sample_catalogue(&mut rng, catalogue, &exclude, opts.negatives)
            }
            NegativeSource::Impressions => {
                let mut seen = HashSet::new();
                let pool: Vec<&ItemId> = seq
                    .shown_not_clicked
                    .iter()
                    .filter(|id| {
                        seen.insert(id.as_str())
                            && catalogue.position(id).is_none_or(|p| !exclude.contains(&p))
                    })
                    .collect();
                sample_pool(&mut rng, &pool, opts.negatives)
            }
        };
        if negatives.len() < opts.negatives {
            report.cases_short_of_negatives += 1;
        }
        let case = Case {
            case: format!("c{}", cases.len() + 1),
            user: seq.user.clone(),
            history: history.iter().map(ItemId::to_string).collect(),
            target: target.to_string(),
            negatives,
            split: None,
        };
        report.count_collisions(&case);
        cases.push(case);
    }
    report.cases_kept = cases.len() as u64;
    if let Some(split) = &opts.split {
        assign_splits(&mut cases, split, opts.seed);
        for c in &cases {
            if let Some(s) = &c.split {
                *report.splits.entry(s.clone()).or_default() += 1;
            }
        }
    }
    Ok((cases, report))
}

/// `k` distinct catalogue items, uniform, none in `exclude`; fewer when the
/// catalogue has fewer to give.
fn sample_catalogue(
    rng: &mut ChaCha8Rng,
    catalogue: &Catalogue,
    exclude: &HashSet<usize>,
    k: usize,
) -> Vec<String> {
    let n = catalogue.len();
    let available = n - exclude.iter().filter(|&&p| p < n).count();
    let items = catalogue.items();
    if available < k.saturating_mul(2) {
        // Small pool: shuffle it explicitly.
        let mut pool: Vec<usize> = (0..n).filter(|p| !exclude.contains(p)).collect();
        let take = k.min(pool.len());
        let (chosen, _) = pool.partial_shuffle(rng, take);
        return chosen.iter().map(|&p| items[p].id.clone()).collect();
    }
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    let mut taken: HashSet<usize> = HashSet::with_capacity(k);
    while chosen.len() < k {
        let p = rng.random_range(0..n);
        if !exclude.contains(&p) && taken.insert(p) {
            chosen.push(p);
        }
    }
    chosen.iter().map(|&p| items[p].id.clone()).collect()
}

/// `k` distinct items of `pool`, uniform; all of them when it holds `k` or fewer.
fn sample_pool(rng: &mut ChaCha8Rng, pool: &[&ItemId], k: usize) -> Vec<String> {
    let mut pool: Vec<&ItemId> = pool.to_vec();
    let take = k.min(pool.len());
    let (chosen, _) = pool.partial_shuffle(rng, take);
    chosen.iter().map(|s| s.to_string()).collect()
}

/// Labels cases with split names (as `trsr prepare --split` does): a seeded shuffle,
/// then consecutive runs sized by the fractions (the last split takes the rounding
/// remainder).
pub fn assign_splits(cases: &mut [Case], split: &[(String, f64)], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let mut order: Vec<usize> = (0..cases.len()).collect();
    order.shuffle(&mut rng);
    let n = cases.len();
    let mut start = 0usize;
    let mut cum = 0.0;
    for (i, (name, frac)) in split.iter().enumerate() {
        cum += frac;
        let end = if i + 1 == split.len() {
            n
        } else {
            ((cum * n as f64).round() as usize).clamp(start, n)
        };
        for &c in &order[start..end] {
            cases[c].split = Some(name.clone());
        }
        start = end;
    }
}

/// Parses `--split-counts TRAIN,VAL,TEST` (e.g. the reference's `2400,300,300`).
pub fn parse_split_counts(spec: &str) -> Result<[usize; 3], String> {
    let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
    if parts.len() != 3 {
        return Err(format!(
            "`{spec}`: expected three counts TRAIN,VAL,TEST, e.g. 2400,300,300"
        ));
    }
    let mut out = [0usize; 3];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p
            .parse()
            .map_err(|_| format!("`{p}` is not a count (a whole number)"))?;
    }
    Ok(out)
}

/// Splits by counts, as the reference's `dataset_gen.py` does (`df[:2400]`,
/// `df[2400:2700]`, `df[2700:]` of its 3,000 rows): the first `train` cases are
/// `train`, the next `val` are `val`, the next `test` are `test`; later cases get no
/// split. With `shuffle_seed`, the cases are put in a seeded random order first (and
/// written in that order). Returns how many cases got no split.
pub fn assign_split_counts(
    cases: &mut [Case],
    counts: [usize; 3],
    shuffle_seed: Option<u64>,
) -> usize {
    if let Some(seed) = shuffle_seed {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(2);
        cases.shuffle(&mut rng);
    }
    let mut i = 0;
    for (name, n) in ["train", "val", "test"].iter().zip(counts) {
        for c in cases.iter_mut().skip(i).take(n) {
            c.split = Some(name.to_string());
        }
        i += n;
    }
    for c in cases.iter_mut().skip(i) {
        c.split = None;
    }
    cases.len().saturating_sub(i)
}

fn write_atomic<T: Serialize>(
    path: &Path,
    rows: impl IntoIterator<Item = T>,
) -> Result<(), DataError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    write_jsonl(&tmp, rows)?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

/// Writes `dir/items.jsonl` (every catalogue item, in catalogue order) and
/// `dir/cases.jsonl`. The output is a pure function of the inputs, byte for byte;
/// each file is written beside its final name and renamed into place.
pub fn write_prepared(dir: &Path, catalogue: &Catalogue, cases: &[Case]) -> Result<(), DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    write_atomic(
        &dir.join("items.jsonl"),
        catalogue.items().iter().map(item_to_json),
    )?;
    write_atomic(&dir.join("cases.jsonl"), cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_spec_parses_and_rejects() {
        let s = parse_split("train=0.8,val=0.1,test=0.1").unwrap();
        assert_eq!(s[0], ("train".to_string(), 0.8));
        assert_eq!(s.len(), 3);
        assert!(parse_split("train=0.8,test=0.1").is_err());
        assert!(parse_split("train").is_err());
        assert!(parse_split("a=x").is_err());
        assert!(parse_split("a=0.5,a=0.5").is_err());
    }

    #[test]
    fn splits_cover_every_case_in_proportion() {
        let mut cases: Vec<Case> = (0..100)
            .map(|i| Case {
                case: format!("c{i}"),
                user: format!("u{i}"),
                history: vec![],
                target: "t".into(),
                negatives: vec![],
                split: None,
            })
            .collect();
        assign_splits(
            &mut cases,
            &parse_split("train=0.8,val=0.1,test=0.1").unwrap(),
            7,
        );
        let count = |n: &str| {
            cases
                .iter()
                .filter(|c| c.split.as_deref() == Some(n))
                .count()
        };
        assert_eq!((count("train"), count("val"), count("test")), (80, 10, 10));
    }
}
