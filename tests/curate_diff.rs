//! Word-level diff between the model's text and an edited text.

use trsr::curate::{word_diff, DiffOp};

fn eq(s: &str) -> DiffOp {
    DiffOp::Equal(s.into())
}
fn ins(s: &str) -> DiffOp {
    DiffOp::Insert(s.into())
}
fn del(s: &str) -> DiffOp {
    DiffOp::Delete(s.into())
}

/// Concatenating Equal+Delete gives the old text, Equal+Insert the new one.
fn assert_reconstructs(a: &str, b: &str) {
    let ops = word_diff(a, b);
    let old: String = ops
        .iter()
        .filter(|o| !matches!(o, DiffOp::Insert(_)))
        .map(DiffOp::text)
        .collect();
    let new: String = ops
        .iter()
        .filter(|o| !matches!(o, DiffOp::Delete(_)))
        .map(DiffOp::text)
        .collect();
    assert_eq!(old, a, "old text from {ops:?}");
    assert_eq!(new, b, "new text from {ops:?}");
    // Adjacent runs of the same kind are merged; no empty runs.
    for w in ops.windows(2) {
        assert_ne!(
            std::mem::discriminant(&w[0]),
            std::mem::discriminant(&w[1]),
            "{ops:?}"
        );
    }
    assert!(ops.iter().all(|o| !o.text().is_empty()), "{ops:?}");
}

#[test]
fn identical_texts_are_one_equal_run() {
    assert_eq!(
        word_diff("likes tech news", "likes tech news"),
        vec![eq("likes tech news")]
    );
    assert_eq!(word_diff("", ""), Vec::<DiffOp>::new());
}

#[test]
fn replaced_word_is_a_delete_and_an_insert() {
    assert_eq!(
        word_diff(
            "The user likes sports news.",
            "The user likes politics news."
        ),
        vec![
            eq("The user likes "),
            del("sports"),
            ins("politics"),
            eq(" news."),
        ]
    );
}

#[test]
fn inserted_and_deleted_words() {
    assert_eq!(
        word_diff("likes news", "likes football news"),
        vec![eq("likes "), ins("football "), eq("news")]
    );
    assert_eq!(
        word_diff("likes football news", "likes news"),
        vec![eq("likes "), del("football "), eq("news")]
    );
}

#[test]
fn punctuation_is_its_own_token() {
    // "news." -> "news!" changes only the punctuation, not the word.
    assert_eq!(
        word_diff("likes news.", "likes news!"),
        vec![eq("likes news"), del("."), ins("!")]
    );
}

#[test]
fn from_and_to_empty() {
    assert_eq!(word_diff("", "new text"), vec![ins("new text")]);
    assert_eq!(word_diff("old text", ""), vec![del("old text")]);
}

#[test]
fn diffs_reconstruct_both_texts() {
    let cases = [
        ("a b c d e", "a x c y e"),
        (
            "The user reads about U.S. politics, elections and the economy.",
            "The user mostly reads about politics (US elections) and economics.",
        ),
        ("naïve café — ünïcode words", "naive café – unicode words!"),
        ("  leading and trailing  ", "leading and trailing"),
        ("one\ntwo\nthree", "one\nthree\nfour"),
    ];
    for (a, b) in cases {
        assert_reconstructs(a, b);
        assert_reconstructs(b, a);
    }
}

#[test]
fn long_texts_reconstruct() {
    let a: String = (0..3000).map(|i| format!("w{} ", i % 97)).collect();
    let b: String = (0..3000).map(|i| format!("w{} ", (i * 7) % 89)).collect();
    assert_reconstructs(&a, &b);
}
