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
