//! Block segmentation by item count and by token budget.

use rand::{Rng, SeedableRng};
use trsr::segment::{segment, BlockParams, SegItem};

/// Tokens = whitespace-separated words (newlines separate too).
fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("N{i}")).collect()
}

fn items<'a>(ids: &'a [String], texts: &[String]) -> Vec<SegItem<'a>> {
    ids.iter()
        .zip(texts)
        .map(|(id, t)| SegItem {
            id,
            text: t.clone(),
        })
        .collect()
}

fn block_ids(seg: &trsr::segment::Segmentation) -> Vec<Vec<&str>> {
    seg.blocks
        .iter()
        .map(|b| b.item_ids.iter().map(String::as_str).collect())
        .collect()
}

#[test]
fn by_count_cuts_consecutive_blocks_with_text_and_tokens() {
    let id = ids(12);
    let texts: Vec<String> = (0..12).map(|i| format!("title {i}")).collect();
    let seg = segment(&items(&id, &texts), &BlockParams::default(), &words);
    assert_eq!(seg.dropped_oldest, 0);
    assert_eq!(
        block_ids(&seg),
        vec![
            vec!["N0", "N1", "N2", "N3", "N4"],
            vec!["N5", "N6", "N7", "N8", "N9"],
            vec!["N10", "N11"],
        ]
    );
    assert_eq!(seg.blocks[2].text, "title 10\ntitle 11");
    assert_eq!(seg.blocks[0].token_count, 10);
    assert!(seg.blocks.iter().all(|b| !b.oversized));
}

#[test]
fn by_count_keeps_the_most_recent_items_and_reports_the_rest() {
    let id = ids(30);
    let texts: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
    let p = BlockParams::ByCount {
        size: 5,
        max_blocks: 5,
    };
    let seg = segment(&items(&id, &texts), &p, &words);
    assert_eq!(seg.dropped_oldest, 5);
    assert_eq!(seg.blocks.len(), 5);
    assert_eq!(seg.blocks[0].item_ids[0], "N5");
    assert_eq!(seg.blocks[4].item_ids[4], "N29");
    // 3 x 2: 6 most recent kept.
    let p = BlockParams::ByCount {
        size: 3,
        max_blocks: 2,
    };
    let seg = segment(&items(&id, &texts), &p, &words);
    assert_eq!(seg.dropped_oldest, 24);
    assert_eq!(
        block_ids(&seg),
        vec![vec!["N24", "N25", "N26"], vec!["N27", "N28", "N29"]]
    );
}

#[test]
fn an_empty_history_has_no_blocks() {
    for p in [
        BlockParams::default(),
        BlockParams::ByTokens {
            budget_tokens: 10,
            max_blocks: 3,
        },
    ] {
        let seg = segment(&[], &p, &words);
        assert!(seg.blocks.is_empty());
        assert_eq!(seg.dropped_oldest, 0);
    }
}

#[test]
fn by_tokens_packs_until_the_budget_and_flags_oversized_items() {
    // Word counts 3, 3, 3, 10, 2, 2 with a budget of 7:
    // [0,1] = 6 words (adding item 2 would make 9); [2] (adding 10 words would make 13);
    // [3] alone, 10 > 7: oversized; [4,5] = 4 words.
    let id = ids(6);
    let texts: Vec<String> = [3, 3, 3, 10, 2, 2]
        .iter()
        .enumerate()
        .map(|(i, &n)| vec![format!("w{i}"); n].join(" "))
        .collect();
    let p = BlockParams::ByTokens {
        budget_tokens: 7,
        max_blocks: 10,
    };
    let seg = segment(&items(&id, &texts), &p, &words);
    assert_eq!(
        block_ids(&seg),
        vec![vec!["N0", "N1"], vec!["N2"], vec!["N3"], vec!["N4", "N5"]]
    );
    let flags: Vec<bool> = seg.blocks.iter().map(|b| b.oversized).collect();
    assert_eq!(flags, vec![false, false, true, false]);
    let tokens: Vec<usize> = seg.blocks.iter().map(|b| b.token_count).collect();
    assert_eq!(tokens, vec![6, 3, 10, 4]);
    assert_eq!(seg.dropped_oldest, 0);

    // At most 2 blocks: the 2 most recent are kept, 3 items dropped.
    let p = BlockParams::ByTokens {
        budget_tokens: 7,
        max_blocks: 2,
    };
    let seg = segment(&items(&id, &texts), &p, &words);
    assert_eq!(block_ids(&seg), vec![vec!["N3"], vec!["N4", "N5"]]);
    assert_eq!(seg.dropped_oldest, 3);
}

#[test]
fn by_tokens_counts_the_joined_block_text() {
    // A counter where the separator costs: characters. "ab\ncd" is 5, not 4.
    let chars = |s: &str| s.chars().count();
    let id = ids(3);
    let texts: Vec<String> = vec!["ab".into(), "cd".into(), "ef".into()];
    let p = BlockParams::ByTokens {
        budget_tokens: 5,
        max_blocks: 5,
    };
    let seg = segment(&items(&id, &texts), &p, &chars);
    assert_eq!(block_ids(&seg), vec![vec!["N0", "N1"], vec!["N2"]]);
    assert_eq!(seg.blocks[0].token_count, 5);
}

#[test]
fn every_kept_item_appears_once_in_order() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for _ in 0..300 {
        let n = rng.random_range(0..40);
        let id = ids(n);
        let texts: Vec<String> = (0..n)
            .map(|i| vec![format!("w{i}"); rng.random_range(1..12)].join(" "))
            .collect();
        let p = if rng.random_bool(0.5) {
            BlockParams::ByCount {
                size: rng.random_range(1..8),
                max_blocks: rng.random_range(1..8),
            }
        } else {
            BlockParams::ByTokens {
                budget_tokens: rng.random_range(1..30),
                max_blocks: rng.random_range(1..8),
            }
        };
        let seg = segment(&items(&id, &texts), &p, &words);
        let kept: Vec<&String> = seg.blocks.iter().flat_map(|b| &b.item_ids).collect();
        let want: Vec<&String> = id[seg.dropped_oldest..].iter().collect();
        assert_eq!(kept, want, "{p:?}");
        for b in &seg.blocks {
            assert!(!b.item_ids.is_empty());
            assert_eq!(b.token_count, words(&b.text));
            match p {
                BlockParams::ByCount { size, max_blocks } => {
                    assert!(b.item_ids.len() <= size);
                    assert!(seg.blocks.len() <= max_blocks);
                }
                BlockParams::ByTokens {
                    budget_tokens,
                    max_blocks,
                } => {
                    assert!(seg.blocks.len() <= max_blocks);
                    assert_eq!(b.oversized, b.token_count > budget_tokens);
                    if b.oversized {
                        assert_eq!(b.item_ids.len(), 1);
                    }
                }
            }
        }
        // Nothing is dropped when everything fits.
        if let BlockParams::ByCount { size, max_blocks } = p {
            assert_eq!(seg.dropped_oldest, n.saturating_sub(size * max_blocks));
        }
    }
}

#[test]
fn history_items_render_known_ids_and_report_unknown_ones() {
    use trsr::data::{Catalogue, Item, ItemTextTemplate};
    let mut cat = Catalogue::new();
    for i in [1, 3] {
        cat.insert(Item {
            id: format!("N{i}"),
            fields: vec![
                ("title".into(), format!("Title {i}")),
                ("category".into(), "news".into()),
            ],
        });
    }
    let history: Vec<String> = vec!["N1".into(), "N2".into(), "N3".into()];
    let tpl = ItemTextTemplate::with_fields(&["title", "category"]);
    let (items, missing) = trsr::segment::history_items(&history, &cat, &tpl);
    assert_eq!(missing, vec!["N2"]);
    let got: Vec<(&str, &str)> = items.iter().map(|i| (i.id, i.text.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("N1", "title: Title 1; category: news"),
            ("N3", "title: Title 3; category: news")
        ]
    );
}
