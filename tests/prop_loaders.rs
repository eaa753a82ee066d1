//! Property tests of the dataset loaders and `prepare`.
//!
//! Loaders: the sample files of every format (`sample_data/`), mutated (bytes flipped,
//! cut short, separators, quotes and line breaks inserted, bytes that are not UTF-8),
//! load to a dataset or to a clean error naming a file of the folder; never a panic.
//! `prepare`: the same dataset, options and seed give the same `items.jsonl` and
//! `cases.jsonl`, byte for byte, however often it runs.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use trsr::data::jsonl::load_prepared;
use trsr::data::prepare::{prepare, write_prepared, LongHistory, NegativeSource, PrepareOptions};
use trsr::data::{load_dir, FormatChoice, LoadOptions};

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data")
        .join(name)
}

/// One change to a file's bytes; positions are fractions of the length so they stay
/// inside whatever the earlier changes left.
#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: f64,
        mask: u8,
    },
    Truncate {
        at: f64,
    },
    Insert {
        at: f64,
        bytes: Vec<u8>,
    },
    Delete {
        at: f64,
        len: usize,
    },
    /// Repeats a slice (a duplicated row or field).
    Duplicate {
        at: f64,
        len: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    let special = prop::sample::select(vec![
        b"\t".to_vec(),
        b",".to_vec(),
        b"\n".to_vec(),
        b"\r\n".to_vec(),
        b"\"".to_vec(),
        b"'".to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        b"[".to_vec(),
        b":".to_vec(),
        b" ".to_vec(),
        b"\\".to_vec(),
        b"\0".to_vec(),
        vec![0xff],
        vec![0xc3],
        vec![0xe2, 0x82],
        vec![0xf0, 0x9f, 0xa6, 0x80],
        b"-1".to_vec(),
        b"99999999999999999999".to_vec(),
        b"NaN".to_vec(),
        "é中".as_bytes().to_vec(),
    ]);
    prop_oneof![
        (at.clone(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        at.clone().prop_map(|at| Mutation::Truncate { at }),
        (at.clone(), special).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (at.clone(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (at.clone(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (at, 1usize..256).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: f64, len: usize| ((at * len as f64) as usize).min(len);
    match m {
        Mutation::Flip { at, mask } => {
            if !bytes.is_empty() {
                let i = pos(*at, bytes.len() - 1);
                bytes[i] ^= mask;
            }
        }
        Mutation::Truncate { at } => {
            let i = pos(*at, bytes.len());
            bytes.truncate(i);
        }
        Mutation::Insert { at, bytes: new } => {
            let i = pos(*at, bytes.len());
            bytes.splice(i..i, new.iter().copied());
        }
        Mutation::Delete { at, len } => {
            let i = pos(*at, bytes.len());
            let end = (i + len).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Duplicate { at, len } => {
            let i = pos(*at, bytes.len());
            let end = (i + len).min(bytes.len());
            let copy = bytes[i..end].to_vec();
            bytes.splice(i..i, copy);
        }
    }
}

/// Copies the sample folder `name`, mutates its file number `file` (in name order),
/// loads it as `format`: Ok, or an error that names a path in the folder.
fn load_mutated(name: &str, format: FormatChoice, file: usize, mutations: &[Mutation]) {
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<_> = std::fs::read_dir(sample(name))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy() != "README.md")
        .collect();
    names.sort();
    for n in &names {
        std::fs::copy(sample(name).join(n), dir.path().join(n)).unwrap();
    }
    let target = dir.path().join(&names[file % names.len()]);
    let mut bytes = std::fs::read(&target).unwrap();
    for m in mutations {
        apply(&mut bytes, m);
    }
    std::fs::write(&target, &bytes).unwrap();
    // `None` keeps every Amazon-M2 locale, so a mutated locale column still loads rows.
    let opts = LoadOptions {
        locale: None,
        ..LoadOptions::default()
    };
    for opts in [LoadOptions::default(), opts] {
        if let Err(e) = load_dir(dir.path(), format, &opts) {
            let msg = e.to_string();
            assert!(
                msg.contains(&*dir.path().to_string_lossy()),
                "{name}: the error names no file of the folder: {msg}"
            );
        }
    }
    if format == FormatChoice::Jsonl {
        if let Err(e) = load_prepared(dir.path()) {
            let msg = e.to_string();
            assert!(
                msg.contains(&*dir.path().to_string_lossy()),
                "prepared: the error names no file of the folder: {msg}"
            );
        }
    }
}

fn mutations() -> impl Strategy<Value = (usize, Vec<Mutation>)> {
    (0usize..2, prop::collection::vec(mutation(), 1..6))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn mind_loader_never_panics_on_mutated_files((file, ms) in mutations()) {
        load_mutated("mind", FormatChoice::Mind, file, &ms);
    }

    #[test]
    fn amazon_m2_loader_never_panics_on_mutated_files((file, ms) in mutations()) {
        load_mutated("amazon-m2", FormatChoice::AmazonM2, file, &ms);
    }

    #[test]
    fn recbole_loader_never_panics_on_mutated_files((file, ms) in mutations()) {
        load_mutated("recbole", FormatChoice::RecBole, file, &ms);
    }

    #[test]
    fn jsonl_loader_never_panics_on_mutated_files((file, ms) in mutations()) {
        load_mutated("jsonl", FormatChoice::Jsonl, file, &ms);
    }
}

fn prepare_options() -> impl Strategy<Value = PrepareOptions> {
    (
        any::<u64>(),
        0usize..12,
        (1usize..8, 0usize..20),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(1u32..9),
    )
        .prop_map(
            |(seed, negatives, (min_history, extra), reference, drop, split)| PrepareOptions {
                min_history,
                max_history: min_history + extra,
                negatives,
                seed,
                negative_source: NegativeSource::Catalog,
                reference_sampling: reference,
                split: split.map(|t| {
                    let train = f64::from(t) / 10.0;
                    vec![
                        ("train".to_string(), train),
                        ("test".to_string(), 1.0 - train),
                    ]
                }),
                long_history: if drop {
                    LongHistory::Drop
                } else {
                    LongHistory::KeepRecent
                },
                negatives_with_text: false,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The raw formats (MIND, Amazon-M2, RecBole) each loaded afresh, prepared twice into
    /// two folders: identical bytes.
    #[test]
    fn prepare_is_deterministic(opts in prepare_options(), which in 0usize..3) {
        let name = ["mind", "amazon-m2", "recbole"][which];
        let out = tempfile::tempdir().unwrap();
        let mut written = Vec::new();
        for run in 0..2 {
            let ds = load_dir(&sample(name), FormatChoice::Auto, &LoadOptions::default()).unwrap();
            let dir = out.path().join(format!("run{run}"));
            match prepare(&ds, &opts) {
                Ok((cases, _report)) => {
                    write_prepared(&dir, &ds.catalogue, &cases).unwrap();
                    written.push(Some((
                        std::fs::read(dir.join("items.jsonl")).unwrap(),
                        std::fs::read(dir.join("cases.jsonl")).unwrap(),
                    )));
                }
                Err(e) => {
                    prop_assert!(!e.to_string().is_empty());
                    written.push(None);
                }
            }
        }
        prop_assert!(written[0] == written[1], "{name}: two runs of prepare differ ({opts:?})");
    }
}
