//! Settings persist as RON; results files load for the plots.

use trsr::app::Settings;

#[test]
fn settings_round_trip_through_a_ron_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("settings.ron");
    let mut s = Settings::default();
    s.blocks.size = 3;
    s.blocks.by_tokens = true;
    s.sampling.temperature = 0.0;
    s.model.model = "/models/x.gguf".into();
    s.remember_dir(std::path::Path::new("/data/mind"));
    s.dark = false;
    s.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("size: 3"), "{text}");
    assert_eq!(Settings::load_or_default(&path), s);
}

#[test]
fn a_broken_or_missing_settings_file_gives_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.ron");
    assert_eq!(Settings::load_or_default(&path), Settings::default());
    std::fs::write(&path, "(blocks: (size: ").unwrap();
    assert_eq!(Settings::load_or_default(&path), Settings::default());
}

#[test]
fn recent_dirs_keep_ten_most_recent_without_duplicates() {
    let mut s = Settings::default();
    for i in 0..12 {
        s.remember_dir(std::path::Path::new(&format!("/d{i}")));
    }
    s.remember_dir(std::path::Path::new("/d5"));
    assert_eq!(s.recent_dirs.len(), 10);
    assert_eq!(s.recent_dirs[0], std::path::PathBuf::from("/d5"));
    assert_eq!(
        s.recent_dirs.iter().filter(|d| d.ends_with("d5")).count(),
        1
    );
}

#[test]
fn plot_png_export_writes_a_readable_png_of_the_image_size() {
    use eframe::egui;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plot.png");
    let img = egui::ColorImage::new([3, 2], vec![egui::Color32::from_rgb(10, 200, 30); 6]);
    trsr::app::plots::write_png(&img, &path).unwrap();
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let reader = dec.read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (3, 2));
    assert!(trsr::app::plots::write_png(&img, &dir.path().join("no/such/dir/x.png")).is_err());
}

#[test]
fn results_files_load_for_the_plots_and_bad_lines_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let scores = dir.path().join("scores.jsonl");
    std::fs::write(
        &scores,
        "{\"case\": \"c1\", \"scorer\": \"llm:x\", \"candidates\": [{\"id\": \"N1\", \"label\": 1, \"score\": 0.8}, {\"id\": \"N2\", \"label\": 0, \"score\": 0.9}]}\n",
    )
    .unwrap();
    let recs = trsr::app::plots::read_scores(&scores).unwrap();
    assert_eq!(recs.len(), 1);
    std::fs::write(&scores, "{\"case\": \"c1\"}\n{oops\n").unwrap();
    let err = format!("{:#}", trsr::app::plots::read_scores(&scores).unwrap_err());
    assert!(err.contains("scores.jsonl:1"), "{err}");
    let sweep = dir.path().join("metrics.json");
    std::fs::write(
        &sweep,
        r#"[{"block_size": 3, "method": "hierarchical", "metrics": {"recall@5": 0.4, "ndcg@5": 0.3}},
            {"block_size": 5, "method": "hierarchical", "recall@5": 0.5},
            {"scorer": "popularity", "method": "", "block_size": null, "cases": 3, "metrics": {"recall@5": 0.2}}]"#,
    )
    .unwrap();
    let pts = trsr::app::plots::read_sweep(&sweep).unwrap();
    assert_eq!(pts.len(), 4);
    assert!(pts
        .iter()
        .any(|p| p.block_size.is_nan() && p.series.contains("popularity")));
    assert!(pts
        .iter()
        .any(|p| p.block_size == 5.0 && p.metric == "recall@5" && p.value == 0.5));
    std::fs::write(&sweep, r#"[{"method": "x"}]"#).unwrap();
    let err = format!("{:#}", trsr::app::plots::read_sweep(&sweep).unwrap_err());
    assert!(err.contains("block_size"), "{err}");
}

#[test]
fn training_settings_persist_and_older_settings_files_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.ron");
    let mut s = Settings::default();
    s.train.epochs = 2;
    s.train.lr = 3e-4;
    s.train.targets = vec!["q_proj".into(), "gate_proj".into()];
    s.train.loss_on = trsr::train::LossOn::Text;
    s.train.max_train_cases = Some(7);
    s.model.adapter = Some(std::path::PathBuf::from("/data/adapters/lora-1"));
    s.save(&path).unwrap();
    assert_eq!(Settings::load_or_default(&path), s);

    // A file written before the Train tab (no `train`, no model adapter) keeps its
    // values and gets the paper's training settings.
    std::fs::write(
        &path,
        "(model: (model: \"/m/x.gguf\", device: \"cpu\", raw_prompt: false), dark: false, batch_cases: 7)",
    )
    .unwrap();
    let old = Settings::load_or_default(&path);
    assert_eq!(old.model.model, "/m/x.gguf");
    assert_eq!(old.model.adapter, None);
    assert!(!old.dark);
    assert_eq!(old.batch_cases, 7);
    assert_eq!(old.train, trsr::train::TrainSettings::default());
}
