//! Bad input: each case gives a clear error naming file, line and field, or a
//! reported skip; never a panic.

use std::path::Path;

use trsr::data::{load_dir, DataError, Dataset, FormatChoice, LoadOptions};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn load(dir: &Path) -> Result<Dataset, DataError> {
    load_dir(dir, FormatChoice::Auto, &LoadOptions::default())
}

const NEWS_OK: &str = "N1\tsports\tfootball_nfl\tPackers win\tAbstract\turl\t[]\t[]\n\
                       N2\tfinance\tmarkets\tStocks rise\t\turl\t[]\t[]\n";

fn behaviors_row(imp: u32, user: &str, history: &str) -> String {
    format!("{imp}\t{user}\t11/12/2019 2:14:46 PM\t{history}\tN1-0 N2-1\n")
}

fn skipped(ds: &Dataset, needle: &str) -> u64 {
    ds.report
        .skipped
        .iter()
        .filter(|(k, _)| k.contains(needle))
        .map(|(_, v)| v)
        .sum()
}

fn example_with(ds: &Dataset, parts: &[&str]) -> bool {
    ds.report
        .examples
        .iter()
        .any(|e| parts.iter().all(|p| e.contains(p)))
}

#[test]
fn truncated_tsv_row_is_a_reported_skip() {
    let dir = tempfile::tempdir().unwrap();
    // The last news row is cut off mid-row (no trailing newline).
    let news = format!("{NEWS_OK}N3\tsports\tfootball_n");
    write(dir.path(), "news.tsv", news.as_bytes());
    write(
        dir.path(),
        "behaviors.tsv",
        behaviors_row(1, "U1", "N1 N2").as_bytes(),
    );
    let ds = load(dir.path()).unwrap();
    assert_eq!(ds.catalogue.len(), 2);
    assert_eq!(skipped(&ds, "news.tsv: too few columns"), 1);
    assert!(
        example_with(&ds, &["news.tsv:3:", "field `title`", "found 3"]),
        "{:?}",
        ds.report.examples
    );
}

#[test]
fn missing_and_extra_columns_are_reported_skips() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "products_train.csv",
        b"id,locale,title,price,brand,color,size,model,material,author,desc\n\
          P1,UK,Kettle,19.99,Salter,White,1.7 L,SAL-1,Steel,,Boils fast\n\
          P2,UK,Frying pan,24.99\n\
          P3,UK,Scale,9.99,OXO,Black,5 kg,OXO-1,Plastic,,Weighs,EXTRA\n",
    );
    write(
        dir.path(),
        "sessions_train.csv",
        b"prev_items,next_item,locale\n\"['P1' 'P1']\",P1,UK\n\"['P1']\",P1,UK,surplus\n",
    );
    let ds = load(dir.path()).unwrap();
    assert_eq!(ds.catalogue.len(), 1);
    assert_eq!(skipped(&ds, "products_train.csv: too few columns"), 1);
    assert_eq!(skipped(&ds, "products_train.csv: too many columns"), 1);
    assert_eq!(skipped(&ds, "sessions_train.csv: too many columns"), 1);
    assert!(example_with(
        &ds,
        &["products_train.csv:3:", "field `brand`", "found 4"]
    ));
    assert!(example_with(
        &ds,
        &["sessions_train.csv:3:", "expected 3", "found 4"]
    ));
    assert_eq!(ds.sequences.len(), 1);
}

#[test]
fn empty_histories_are_reported_skips() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "news.tsv", NEWS_OK.as_bytes());
    let rows = behaviors_row(1, "U1", "") + &behaviors_row(2, "U2", "N1 N2");
    write(dir.path(), "behaviors.tsv", rows.as_bytes());
    let ds = load(dir.path()).unwrap();
    assert_eq!(ds.sequences.len(), 1);
    assert_eq!(skipped(&ds, "empty history"), 1);
    assert!(example_with(&ds, &["behaviors.tsv:1:", "field `history`"]));

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "sessions_train.csv",
        b"prev_items,next_item,locale\n[],P1,UK\n\"['P2']\",P1,UK\n",
    );
    let ds = load(dir.path()).unwrap();
    assert_eq!(ds.sequences.len(), 1);
    assert!(example_with(
        &ds,
        &["sessions_train.csv:2:", "field `prev_items`", "empty"]
    ));
}

#[test]
fn non_utf8_bytes_are_a_reported_skip_or_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut news = NEWS_OK.as_bytes().to_vec();
    news.extend_from_slice(b"N3\tsports\tgolf\tCaf\xe9 open\t\turl\t[]\t[]\n");
    write(dir.path(), "news.tsv", &news);
    write(
        dir.path(),
        "behaviors.tsv",
        behaviors_row(1, "U1", "N1").as_bytes(),
    );
    let ds = load(dir.path()).unwrap();
    assert_eq!(ds.catalogue.len(), 2);
    assert_eq!(skipped(&ds, "not valid UTF-8"), 1);
    assert!(example_with(
        &ds,
        &["news.tsv:3:", "field `title`", "UTF-8"]
    ));

    // Our own JSONL: an error naming the line.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "items.jsonl",
        b"{\"id\":\"a\"}\n{\"id\":\"b\xff\"}\n",
    );
    write(
        dir.path(),
        "sequences.jsonl",
        b"{\"user\":\"u\",\"items\":[\"a\"]}\n",
    );
    let err = load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("items.jsonl:2:") && err.contains("UTF-8"),
        "{err}"
    );
}

#[test]
fn unresolvable_ids_are_counted_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "x.item",
        b"item_id:token\ttitle:token_seq\n1\tFirst item\n2\tSecond item\n",
    );
    write(
        dir.path(),
        "x.inter",
        b"user_id:token\titem_id:token\ttimestamp:float\nu1\t1\t10\nu1\t99\t11\nu1\t2\t12\n",
    );
    let ds = load(dir.path()).unwrap();
    assert_eq!(ds.report.unresolved_ids, 1);
    assert!(example_with(
        &ds,
        &["x.inter:3:", "field `item_id`", "`99`"]
    ));
    assert_eq!(ds.sequences[0].items, vec!["1", "2"]);

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "products_train.csv",
        b"id,locale,title\nP1,UK,Kettle\nP2,UK,Pan\n",
    );
    write(
        dir.path(),
        "sessions_train.csv",
        b"prev_items,next_item,locale\n\"['P1' 'ZZ' 'P2']\",P2,UK\n\"['P1']\",QQ,UK\n",
    );
    let ds = load(dir.path()).unwrap();
    assert_eq!(ds.report.unresolved_ids, 2);
    assert_eq!(ds.sequences.len(), 1);
    assert_eq!(ds.sequences[0].items, vec!["P1", "P2"]);
    assert_eq!(skipped(&ds, "next_item not in the products file"), 1);
    assert!(example_with(
        &ds,
        &["sessions_train.csv:2:", "field `prev_items`", "`ZZ`"]
    ));
    assert!(example_with(
        &ds,
        &["sessions_train.csv:3:", "field `next_item`", "`QQ`"]
    ));
}

#[test]
fn zero_byte_file_is_an_error_naming_it() {
    for (name, other) in [
        ("behaviors.tsv", "news.tsv"),
        ("sessions_train.csv", "products_train.csv"),
        ("x.inter", "x.item"),
        ("items.jsonl", "cases.jsonl"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), name, b"");
        write(dir.path(), other, b"");
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("0 bytes"), "{name}: {err}");
        assert!(
            err.contains(".tsv")
                || err.contains(".csv")
                || err.contains(".i")
                || err.contains(".jsonl"),
            "{err}"
        );
    }
}

#[test]
fn unrecognized_folder_lists_what_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "notes.txt", b"hello");
    write(dir.path(), "data.parquet", b"PAR1");
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::UnknownFormat { .. }));
    let msg = err.to_string();
    for want in [
        "behaviors.tsv",
        "sessions",
        ".inter",
        "items.jsonl",
        "notes.txt",
    ] {
        assert!(msg.contains(want), "{msg}");
    }
    let empty = tempfile::tempdir().unwrap();
    assert!(load(empty.path())
        .unwrap_err()
        .to_string()
        .contains("no files"));
    let missing = empty.path().join("nope");
    assert!(load(&missing)
        .unwrap_err()
        .to_string()
        .contains("not a folder"));
}

#[test]
fn unclosed_quote_is_an_error_naming_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "sessions_train.csv",
        b"prev_items,next_item,locale\n\"['P1' 'P2']\",P2,UK\n\"['P1' 'P2'],P2,UK\n\"['P3']\",P3,UK\n",
    );
    let err = load(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("sessions_train.csv:3:"), "{msg}");
    assert!(msg.contains("field `prev_items`"), "{msg}");
    assert!(msg.contains("unclosed quote"), "{msg}");
}

#[test]
fn malformed_values_are_reported_skips() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "news.tsv", NEWS_OK.as_bytes());
    let rows = "1\tU1\tyesterday\tN1\tN2-0\n2\tU2\t11/12/2019 2:14:46 PM\tN1\tN2-x N1\n";
    write(dir.path(), "behaviors.tsv", rows.as_bytes());
    let ds = load(dir.path()).unwrap();
    assert!(example_with(
        &ds,
        &["behaviors.tsv:1:", "field `time`", "yesterday"]
    ));
    assert!(example_with(
        &ds,
        &["behaviors.tsv:2:", "field `impressions`", "N2-x"]
    ));
    assert_eq!(ds.sequences.len(), 1);

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "sessions_train.csv",
        b"prev_items,next_item,locale\nP1 P2,P2,UK\n\"['P1' 'P2']\",P2,UK\n",
    );
    let ds = load(dir.path()).unwrap();
    assert_eq!(ds.sequences.len(), 1);
    assert!(example_with(
        &ds,
        &["sessions_train.csv:2:", "field `prev_items`", "brackets"]
    ));
}

#[test]
fn missing_header_column_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "sessions_train.csv",
        b"prev_items,locale\n\"['P1']\",UK\n",
    );
    let msg = load(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("sessions_train.csv:1:") && msg.contains("next_item"),
        "{msg}"
    );

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "x.inter", b"uid:token\titem_id:token\n1\t2\n");
    let msg = load(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("x.inter:1:") && msg.contains("user_id"),
        "{msg}"
    );
}

#[test]
fn cli_prepare_on_bad_input_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "readme.md", b"nothing here");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trsr"))
        .args(["prepare", "--input"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no recognizable dataset format"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!dir.path().join("out").exists());
}
