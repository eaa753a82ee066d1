//! `trsr study` end to end on sample_data/mind: a tiny grid (one method, one block
//! size, 3 cases, the three baselines) with the real default model, then the
//! report's sections and PNG charts (real PNG files of the chart size, not blank),
//! and a re-run that resumes. A baselines-only study runs without the model. Bad
//! study files name line and key.

mod common;

use std::path::Path;
use std::process::Command;

fn study(config: &Path, out: &Path, cache: &Path) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_trsr"))
        .args(["study", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache)
        .args(["--quiet", "--device", "cpu"])
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn mind() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data/mind")
        .display()
        .to_string()
}

/// Checks a chart: a PNG of the chart size whose pixels are not all one colour.
fn assert_chart(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.len() > 1000,
        "{} is {} bytes",
        path.display(),
        bytes.len()
    );
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.width, info.height),
        trsr::cli::study_charts::CHART_SIZE_PX
    );
    let px = &buf[..info.buffer_size()];
    let non_white = px.chunks(3).filter(|p| p != &[255, 255, 255]).count();
    let total = px.len() / 3;
    // Axes, text, lines and bars: some pixels drawn, most of the canvas still white.
    assert!(
        non_white > total / 200,
        "{}: only {non_white} drawn pixels",
        path.display()
    );
    assert!(
        non_white < total * 9 / 10,
        "{}: {non_white} drawn pixels",
        path.display()
    );
}

#[test]
fn baselines_only_study_writes_report_charts_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("study.ron");
    std::fs::write(
        &cfg,
        format!(
            "(\n  data: \"{}\",\n  summary: [],\n  limit: Some(10),\n  bootstrap: 300,\n)\n",
            mind()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let (ok, stdout, err) = study(&cfg, &out, &dir.path().join("cache"));
    assert!(ok, "{err}");
    assert!(stdout.contains("report:"), "{stdout}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "## Settings",
        "trsr version",
        "## Metrics",
        "| bm25 |",
        "No model (baselines only).",
        "metric_vs_block_size.png",
        "metrics_at_k.png",
    ] {
        assert!(report.contains(needle), "report lacks {needle}:\n{report}");
    }
    assert_chart(&out.join("metric_vs_block_size.png"));
    assert_chart(&out.join("metrics_at_k.png"));
    let scores = trsr::metrics::read_scores(&out.join("scores.jsonl")).unwrap();
    assert_eq!(scores.len(), 30, "3 baselines x 10 cases");
    // metrics.json: the window's "Load results..." format, with intervals.
    let bands: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let bm25 = bands
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["scorer"] == "bm25")
        .unwrap();
    let v = bm25["metrics"]["ndcg@10"].as_f64().unwrap();
    let ci = &bm25["intervals"]["ndcg@10"];
    assert!(
        ci[0].as_f64().unwrap() <= v && v <= ci[1].as_f64().unwrap(),
        "{bm25}"
    );
}

#[test]
fn tiny_grid_with_the_default_model_end_to_end_and_resumes() {
    let Some(model) = common::default_model() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("study.ron");
    std::fs::write(
        &cfg,
        format!(
            r#"(
  data: "{}",
  methods: ["hierarchical"],
  block_sizes: [5],
  summary: [true],
  models: [(model: "{}")],
  baselines: ["random", "popularity", "bm25"],
  limit: Some(3),
  max_new_tokens: 24,
  bootstrap: 300,
)
"#,
            mind(),
            model.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    let (ok, _, err) = study(&cfg, &out, &cache);
    assert!(ok, "{err}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let sha = trsr::llm::source::file_sha256(&model).unwrap();
    assert!(
        report.contains(&sha),
        "model SHA-256 in the report:\n{report}"
    );
    assert!(report.contains("hierarchical b5"), "{report}");
    assert!(
        report.contains("## Significance against the best baseline"),
        "{report}"
    );
    assert!(report.contains("sign-flip permutation"), "{report}");
    assert_chart(&out.join("metric_vs_block_size.png"));
    assert_chart(&out.join("metrics_at_k.png"));
    let scores = trsr::metrics::read_scores(&out.join("scores.jsonl")).unwrap();
    assert_eq!(
        scores.len(),
        12,
        "3 baselines + 1 LLM configuration, 3 cases each"
    );
    for r in scores.iter().filter(|r| r.scorer.contains("hierarchical")) {
        assert!(r.candidates.iter().all(|c| (0.0..=1.0).contains(&c.score)));
    }

    // A re-run resumes: the same scores, nothing recomputed.
    let (ok, _, err) = study(&cfg, &out, &cache);
    assert!(ok, "{err}");
    let again = trsr::metrics::read_scores(&out.join("scores.jsonl")).unwrap();
    assert_eq!(scores, again);
}

#[test]
fn bad_study_files_name_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("study.ron");
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    std::fs::write(
        &cfg,
        "(\n  data: \"x\",\n  block_sizes: [3],\n  blocks: 5,\n)\n",
    )
    .unwrap();
    let (ok, _, err) = study(&cfg, &out, &cache);
    assert!(!ok);
    assert!(
        err.contains("study.ron:4:") && err.contains("blocks"),
        "{err}"
    );
    std::fs::write(&cfg, "(\n  data: \"x\",\n  limit: Some(0),\n)\n").unwrap();
    let (ok, _, err) = study(&cfg, &out, &cache);
    assert!(!ok);
    assert!(err.contains("study.ron:3: key `limit`"), "{err}");
    assert!(!out.join("report.md").exists());
}

#[test]
fn the_example_study_file_parses() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/study_example.ron");
    let c = trsr::study::StudyConfig::load(&p).unwrap();
    assert!(c.data.join("behaviors.tsv").is_file() || c.data.join("cases.jsonl").is_file());
}
