//! Block segmentation of a user's history: by item count, or by token budget.
//!
//! - By count: blocks of `size` consecutive items, at most `max_blocks`; a longer
//!   history keeps its `size * max_blocks` most recent items (the oldest are
//!   counted in `dropped_oldest`) and is cut from its oldest kept item on, so only
//!   the last block may be short. The paper: blocks of 5, at most 5 blocks.
//! - By token budget: consecutive items are packed into a block while the block's
//!   text (items joined by newlines) counts at most `budget_tokens`; an item
//!   larger than the budget on its own gets a block of its own, flagged
//!   `oversized`. Packing runs from the oldest item; when more than `max_blocks`
//!   blocks result, the most recent `max_blocks` are kept.
//!
//! A `size` or `max_blocks` of 0 is taken as 1.

use serde::{Deserialize, Serialize};

/// One history item ready for segmentation: its id and rendered text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegItem<'a> {
    pub id: &'a str,
    pub text: String,
}

/// A block of consecutive history items.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub item_ids: Vec<String>,
    /// The items' texts, one per line, in order.
    pub text: String,
    pub token_count: usize,
    /// True when a single item exceeds the token budget and was given its own block.
    pub oversized: bool,
}

/// The blocks of one history plus what segmentation left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segmentation {
    pub blocks: Vec<Block>,
    /// Oldest items left out because the history was longer than the blocks hold.
    pub dropped_oldest: usize,
}

/// How to cut a history into blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockParams {
    /// `size` items per block, at most `max_blocks` blocks (most recent items kept).
    ByCount { size: usize, max_blocks: usize },
    /// Pack consecutive items until `budget_tokens`; at most `max_blocks` blocks.
    ByTokens {
        budget_tokens: usize,
        max_blocks: usize,
    },
}

impl Default for BlockParams {
    /// The paper's setting: blocks of 5 items, at most 5 blocks.
    fn default() -> Self {
        BlockParams::ByCount {
            size: 5,
            max_blocks: 5,
        }
    }
}

/// Cuts `items` (oldest first) into blocks. `count_tokens` gives a text's token count.
pub fn segment(
    items: &[SegItem<'_>],
    params: &BlockParams,
    count_tokens: &dyn Fn(&str) -> usize,
) -> Segmentation {
    let make_block = |chunk: &[SegItem<'_>], oversized: bool| {
        let text = chunk
            .iter()
            .map(|i| i.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        Block {
            item_ids: chunk.iter().map(|i| i.id.to_string()).collect(),
            token_count: count_tokens(&text),
            text,
            oversized,
        }
    };
    match *params {
        BlockParams::ByCount { size, max_blocks } => {
            let size = size.max(1);
            let keep = items.len().min(size.saturating_mul(max_blocks.max(1)));
            let dropped_oldest = items.len() - keep;
            let blocks = items[dropped_oldest..]
                .chunks(size)
                .map(|c| make_block(c, false))
                .collect();
            Segmentation {
                blocks,
                dropped_oldest,
            }
        }
        BlockParams::ByTokens {
            budget_tokens,
            max_blocks,
        } => {
            let mut ranges: Vec<(usize, usize, bool)> = Vec::new();
            let mut start = 0;
            while start < items.len() {
                let mut end = start + 1;
                let first_tokens = count_tokens(&items[start].text);
                if first_tokens > budget_tokens {
                    ranges.push((start, end, true));
                    start = end;
                    continue;
                }
                while end < items.len() {
                    let text = items[start..=end]
                        .iter()
                        .map(|i| i.text.as_str())
                        .collect::<Vec<_>>()
                        .join("\n");
                    if count_tokens(&text) > budget_tokens {
                        break;
                    }
                    end += 1;
                }
                ranges.push((start, end, false));
                start = end;
            }
            let skip = ranges.len().saturating_sub(max_blocks.max(1));
            let dropped_oldest = ranges.get(skip).map_or(items.len(), |r| r.0);
            let blocks = ranges[skip..]
                .iter()
                .map(|&(s, e, o)| make_block(&items[s..e], o))
                .collect();
            Segmentation {
                blocks,
                dropped_oldest,
            }
        }
    }
}

/// A history's items ready for [`segment`]: each id with its text rendered by
/// `template`. Ids missing from the catalogue are left out and returned apart,
/// in order, so the caller can report them.
pub fn history_items<'a>(
    history: &'a [String],
    catalogue: &crate::data::Catalogue,
    template: &crate::data::ItemTextTemplate,
) -> (Vec<SegItem<'a>>, Vec<&'a str>) {
    let mut items = Vec::with_capacity(history.len());
    let mut missing = Vec::new();
    for id in history {
        match catalogue.get(id) {
            Some(item) => items.push(SegItem {
                id,
                text: template.render(item),
            }),
            None => missing.push(id.as_str()),
        }
    }
    (items, missing)
}
