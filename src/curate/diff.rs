//! Word-level diff between the model's text and an edited text.
//!
//! Texts are cut into tokens: runs of letters and digits (a word), runs of
//! whitespace, and single other characters (punctuation). The diff is a longest
//! common subsequence over those tokens, with adjacent operations of the same kind
//! merged. Concatenating the `Equal` and `Delete` texts gives back the first text;
//! concatenating the `Equal` and `Insert` texts gives back the second.

use serde::{Deserialize, Serialize};

/// One run of a word diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiffOp {
    /// Text present in both.
    Equal(String),
    /// Text only in the edited text.
    Insert(String),
    /// Text only in the model's text.
    Delete(String),
}

impl DiffOp {
    pub fn text(&self) -> &str {
        match self {
            DiffOp::Equal(t) | DiffOp::Insert(t) | DiffOp::Delete(t) => t,
        }
    }
}

/// Above this many cells the middle part is reported as one replacement instead of
/// being aligned word by word (keeps memory bounded for pathological inputs).
const MAX_TABLE_CELLS: usize = 4_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Word,
    Space,
    Other,
}

fn class(c: char) -> Class {
    if c.is_alphanumeric() || c == '_' {
        Class::Word
    } else if c.is_whitespace() {
        Class::Space
    } else {
        Class::Other
    }
}

/// Cuts a text into word, whitespace and punctuation tokens (slices of `text`).
pub fn tokenize(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev: Option<Class> = None;
    for (i, c) in text.char_indices() {
        let k = class(c);
        if let Some(p) = prev {
            if p != k || k == Class::Other {
                out.push(&text[start..i]);
                start = i;
            }
        }
        prev = Some(k);
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn push(ops: &mut Vec<DiffOp>, op: DiffOp) {
    if op.text().is_empty() {
        return;
    }
    match (ops.last_mut(), op) {
        (Some(DiffOp::Equal(a)), DiffOp::Equal(b))
        | (Some(DiffOp::Insert(a)), DiffOp::Insert(b))
        | (Some(DiffOp::Delete(a)), DiffOp::Delete(b)) => a.push_str(&b),
        (_, op) => ops.push(op),
    }
}

/// The word-level diff from `a` (the model's text) to `b` (the edited text).
pub fn word_diff(a: &str, b: &str) -> Vec<DiffOp> {
    let ta = tokenize(a);
    let tb = tokenize(b);
    let prefix = ta.iter().zip(&tb).take_while(|(x, y)| x == y).count();
    let suffix = ta[prefix..]
        .iter()
        .rev()
        .zip(tb[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let ma = &ta[prefix..ta.len() - suffix];
    let mb = &tb[prefix..tb.len() - suffix];

    let mut ops = Vec::new();
    push(&mut ops, DiffOp::Equal(ta[..prefix].concat()));
    if ma.len().saturating_mul(mb.len()) > MAX_TABLE_CELLS {
        // Deletions first, then insertions: the usual reading order of a replacement.
        push(&mut ops, DiffOp::Delete(ma.concat()));
        push(&mut ops, DiffOp::Insert(mb.concat()));
    } else {
        lcs_middle(ma, mb, &mut ops);
    }
    push(&mut ops, DiffOp::Equal(ta[ta.len() - suffix..].concat()));
    ops
}

/// Aligns two token slices by a longest common subsequence table.
fn lcs_middle(a: &[&str], b: &[&str], ops: &mut Vec<DiffOp>) {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j] = LCS length of a[i..] and b[j..], stored row-major in one vector.
    let w = m + 1;
    let mut lcs = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            push(ops, DiffOp::Equal(a[i].to_string()));
            i += 1;
            j += 1;
        } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
            push(ops, DiffOp::Delete(a[i].to_string()));
            i += 1;
        } else {
            push(ops, DiffOp::Insert(b[j].to_string()));
            j += 1;
        }
    }
    push(ops, DiffOp::Delete(a[i..].concat()));
    push(ops, DiffOp::Insert(b[j..].concat()));
}
