//! Property test of the project file: any project survives save -> load -> save byte
//! for byte, and loads back equal to what was saved (settings, templates, cache index,
//! traces, annotations, scores). Strings are arbitrary Unicode (quotes, backslashes,
//! newlines, control characters, RON syntax), floats arbitrary finite values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proptest::prelude::*;
use trsr::curate::{Edit, Key, Status, StepKind};
use trsr::metrics::{ScoredCandidate, TiePolicy};
use trsr::project::{CacheEntry, DatasetRef, Project};
use trsr::segment::BlockParams;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z ]{0,20}",
        Just("\")], r#\"x\"#, /* ( { \\ \n\t\r\u{0} \u{7f} é 中 🦀".to_string()),
    ]
}

fn finite() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO
}

/// One trace: (case, method, steps as (kind, block ids, output), edits, scores).
type TraceSpec = (
    String,
    String,
    Vec<String>,
    Vec<(u8, Option<String>, String)>,
    Option<Vec<(String, bool, f64)>>,
);

fn trace() -> impl Strategy<Value = TraceSpec> {
    (
        text(),
        prop_oneof![Just("hierarchical".to_string()), text()],
        prop::collection::vec(text(), 1..4),
        prop::collection::vec((0u8..4, prop::option::of(text()), text()), 0..4),
        prop::option::of(prop::collection::vec(
            (text(), any::<bool>(), finite()),
            0..4,
        )),
    )
}

#[allow(clippy::type_complexity)]
fn project() -> impl Strategy<Value = Project> {
    (
        (
            prop::option::of((text(), prop::option::of(text()))),
            text(),
            prop::collection::vec(text(), 0..3),
            (1usize..50, 1usize..9, any::<bool>()),
            (
                finite(),
                prop::option::of(1usize..100),
                prop::option::of(finite()),
            ),
            (
                any::<u64>(),
                1usize..4096,
                prop::collection::vec(text(), 0..3),
            ),
        ),
        (
            prop::collection::vec(1usize..50, 0..4),
            0u8..3,
            prop::collection::btree_map(text(), text(), 0..4),
            prop::collection::btree_map(text(), text(), 0..3),
            prop::collection::btree_map(
                text(),
                (text(), text(), prop::option::of(text()), any::<u64>()),
                0..3,
            ),
            prop::collection::vec(trace(), 0..4),
        ),
    )
        .prop_map(
            |(
                (
                    dataset,
                    model,
                    methods,
                    (size, max_blocks, by_tokens),
                    sampling,
                    (seed, max_new, stop),
                ),
                (k, ties, extra, templates, cache, traces),
            )| {
                let mut p = Project::new();
                p.dataset = dataset.map(|(path, format)| DatasetRef {
                    path: PathBuf::from(path),
                    format,
                });
                p.settings.model = model;
                p.settings.methods = methods;
                p.settings.block = if by_tokens {
                    BlockParams::ByTokens {
                        budget_tokens: size * 10,
                        max_blocks,
                    }
                } else {
                    BlockParams::ByCount { size, max_blocks }
                };
                p.settings.sampling.temperature = sampling.0;
                p.settings.sampling.top_k = sampling.1;
                p.settings.sampling.top_p = sampling.2;
                p.settings.sampling.seed = seed;
                p.settings.sampling.max_new_tokens = max_new;
                p.settings.sampling.stop = stop;
                p.settings.k = k;
                p.settings.ties = [
                    TiePolicy::Pessimistic,
                    TiePolicy::Optimistic,
                    TiePolicy::Average,
                ][ties as usize];
                p.settings.extra = extra;
                p.templates = templates;
                p.cache = cache
                    .into_iter()
                    .map(|(key, (kind, path, model, t))| {
                        (
                            key,
                            CacheEntry {
                                kind,
                                path: PathBuf::from(path),
                                model,
                                created_at_ms: t,
                            },
                        )
                    })
                    .collect::<BTreeMap<_, _>>();
                for (case, method, blocks, edits, scores) in traces {
                    let mut steps: Vec<(StepKind, Vec<String>, String)> = blocks
                        .iter()
                        .enumerate()
                        .map(|(i, out)| (StepKind::Block, vec![format!("N{i}")], out.clone()))
                        .collect();
                    if steps.len() > 1 {
                        steps.push((StepKind::Merge, vec![], "merged".into()));
                    }
                    // Traces the curation refuses (e.g. a duplicate key) are left out.
                    if p.curation
                        .register_trace(&case, &method, steps, Some("m".into()))
                        .is_err()
                    {
                        continue;
                    }
                    for (i, (what, new_text, notes)) in edits.into_iter().enumerate() {
                        let key = Key::final_of(case.as_str(), method.as_str());
                        let edit = match what {
                            0 => Edit::SetText(new_text),
                            1 => Edit::SetNotes(notes),
                            _ => Edit::SetStatus(Status::ALL[(i + what as usize) % 4]),
                        };
                        let _ = p.curation.apply_at(&key, edit, 1_000 + i as u64);
                    }
                    if let Some(scores) = scores {
                        let cands = scores
                            .into_iter()
                            .map(|(id, pos, score)| ScoredCandidate {
                                id,
                                label: u8::from(pos),
                                score,
                            })
                            .collect();
                        let _ = p.curation.record_scores(&case, &method, cands);
                    }
                }
                p
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_project_survives_save_load_save_byte_identical(p in project()) {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first.ron");
        let second = dir.path().join("second.ron");
        p.save(&first).unwrap();
        let loaded = Project::load(&first)
            .unwrap_or_else(|e| panic!("a saved project does not load: {e}"));
        loaded.save(&second).unwrap();
        let (a, b) = (std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
        prop_assert!(a == b, "save -> load -> save changed the bytes:\n{}\n---\n{}",
            String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
        // Nothing was lost on the way: the plain parts compare equal, and the
        // curation (whose undo history is not saved) writes the same text.
        prop_assert_eq!(&loaded.settings, &p.settings);
        prop_assert_eq!(&loaded.templates, &p.templates);
        prop_assert_eq!(&loaded.cache, &p.cache);
        prop_assert_eq!(&loaded.dataset, &p.dataset);
        prop_assert_eq!(loaded.to_ron().unwrap(), p.to_ron().unwrap());
        // Saving over an existing project (the backup path) keeps the bytes too.
        loaded.save(&first).unwrap();
        prop_assert!(std::fs::read(&first).unwrap() == a);
    }
}
