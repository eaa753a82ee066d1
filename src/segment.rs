//! Block segmentation of a user's history: by item count, or by token budget.

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
