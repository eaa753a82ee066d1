//! Ranking metrics (Recall/MRR/NDCG@K, AUC), tie policies, aggregation, and the
//! `scores.jsonl` record.

use serde::{Deserialize, Serialize};

/// One candidate's score in a `scores.jsonl` line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoredCandidate {
    pub id: String,
    /// 1 for a positive (the target), 0 for a negative.
    pub label: u8,
    pub score: f64,
}

/// One line of `scores.jsonl`: `{"case": "c1", "scorer": "llm:<model>", "candidates": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    pub case: String,
    pub scorer: String,
    pub candidates: Vec<ScoredCandidate>,
}
