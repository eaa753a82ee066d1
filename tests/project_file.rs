//! Project file: round trip, backups, corrupt and newer files, autosave timing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use trsr::curate::{Edit, Key, Status, StepKind};
use trsr::project::{backup_path, Autosaver, CacheEntry, DatasetRef, Project, ProjectError};
use trsr::segment::BlockParams;

fn sample() -> Project {
    let mut p = Project::new();
    p.dataset = Some(DatasetRef {
        path: PathBuf::from("data/mind-prepared"),
        format: Some("jsonl".into()),
    });
    p.settings.block = BlockParams::ByCount {
        size: 3,
        max_blocks: 4,
    };
    p.settings.sampling.temperature = 0.35;
    p.settings.k = vec![1, 5];
    p.settings.ties = trsr::metrics::TiePolicy::Average;
    p.settings
        .extra
        .insert("plot.log_scale".into(), "true".into());
    p.templates.insert(
        "summarizer.block".into(),
        "Summarize:\n{{ items }}\n\"quoted\"".into(),
    );
    p.curation
        .register_trace(
            "c1",
            "recurrent",
            vec![
                (
                    StepKind::Block,
                    vec!["N1".into(), "N2".into()],
                    "likes tech".into(),
                ),
                (
                    StepKind::Update,
                    vec!["N3".into()],
                    "likes tech and sports".into(),
                ),
            ],
            Some("SmolLM2-135M-Instruct.Q4_1.gguf".into()),
        )
        .unwrap();
    p.curation.record_scored("c1", "recurrent").unwrap();
    let k = Key::final_of("c1", "recurrent");
    p.curation
        .apply_at(
            &k,
            Edit::SetText(Some("likes football, ünïcode ✓".into())),
            1_700_000_000_000,
        )
        .unwrap();
    p.curation
        .apply_at(&k, Edit::SetStatus(Status::Accepted), 1_700_000_000_500)
        .unwrap();
    p.curation
        .apply_at(
            &Key::step("c1", "recurrent", 0),
            Edit::SetNotes("ok".into()),
            1,
        )
        .unwrap();
    p.cache.insert(
        "summaries:abc".into(),
        CacheEntry {
            kind: "summaries".into(),
            path: PathBuf::from("cache/summaries.jsonl"),
            model: Some("SmolLM2".into()),
            created_at_ms: 42,
        },
    );
    p
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn save_and_load_round_trip() {
    let dir = tmp();
    let path = dir.path().join("p.trsr.ron");
    let p = sample();
    p.save(&path).unwrap();
    let q = Project::load(&path).unwrap();
    assert_eq!(p, q);
    // Staleness survives the round trip (signatures are saved).
    let s = q.curation.staleness("c1", "recurrent").unwrap();
    assert!(s.scores_stale && s.steps.is_empty());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("version: 1"), "{text}");
    assert!(text.contains("likes football"), "{text}");
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["p.trsr.ron".to_string()]);
}

#[test]
fn a_minimal_file_loads_with_defaults() {
    let dir = tmp();
    let path = dir.path().join("p.ron");
    std::fs::write(&path, "(version: 1)\n").unwrap();
    let p = Project::load(&path).unwrap();
    assert_eq!(p, Project::new());
}

#[test]
fn the_previous_save_is_kept_as_a_backup() {
    let dir = tmp();
    let path = dir.path().join("p.ron");
    let mut p = sample();
    p.save(&path).unwrap();
    assert!(!backup_path(&path).exists());
    let first = std::fs::read(&path).unwrap();
    p.templates.insert("x".into(), "y".into());
    p.save(&path).unwrap();
    assert_eq!(std::fs::read(backup_path(&path)).unwrap(), first);
    assert_eq!(Project::load(&path).unwrap(), p);
    assert_eq!(backup_path(&path), dir.path().join("p.ron.bak"));
}

fn assert_untouched_and_refused(path: &Path, before: &[u8]) {
    let err = Project::new().save(path).unwrap_err();
    assert!(matches!(err, ProjectError::WouldOverwrite { .. }), "{err}");
    assert_eq!(std::fs::read(path).unwrap(), before, "file was modified");
    assert!(!backup_path(path).exists());
}

#[test]
fn a_truncated_file_is_a_clear_error_and_never_overwritten() {
    let dir = tmp();
    let path = dir.path().join("p.ron");
    sample().save(&path).unwrap();
    let full = std::fs::read(&path).unwrap();
    let cut = full[..full.len() / 2].to_vec();
    std::fs::write(&path, &cut).unwrap();
    let err = Project::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ProjectError::Corrupt { line, .. } if line > 1),
        "{msg}"
    );
    assert!(msg.contains("corrupt") && msg.contains("p.ron"), "{msg}");
    assert_untouched_and_refused(&path, &cut);
}

#[test]
fn garbage_and_non_utf8_files_are_clear_errors() {
    let dir = tmp();
    let path = dir.path().join("p.ron");
    for bytes in [
        b"not a project at all".to_vec(),
        b"(version: 1, templates: {\"a\": \"\xff\xfe\"})".to_vec(),
        Vec::new(),
        b"(dataset: None)".to_vec(),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let err = Project::load(&path).unwrap_err();
        assert!(matches!(err, ProjectError::Corrupt { .. }), "{err}");
        assert_untouched_and_refused(&path, &bytes);
    }
}

#[test]
fn a_file_from_a_newer_version_is_refused_and_never_overwritten() {
    let dir = tmp();
    let path = dir.path().join("p.ron");
    sample().save(&path).unwrap();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen("version: 1", "version: 7", 1)
        .replacen("templates:", "future_field: Some((a: 1)), templates:", 1);
    std::fs::write(&path, &text).unwrap();
    let err = Project::load(&path).unwrap_err();
    assert!(
        matches!(
            err,
            ProjectError::NewerVersion {
                found: 7,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    assert_untouched_and_refused(&path, text.as_bytes());
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let dir = tmp();
    let path = dir.path().join("nope.ron");
    let err = Project::load(&path).unwrap_err();
    assert!(matches!(err, ProjectError::Io { .. }));
    assert!(err.to_string().contains("nope.ron"));
}

#[test]
fn stored_relative_paths_resolve_against_the_project_folder() {
    let p = Path::new("/x/y/p.ron");
    assert_eq!(
        Project::resolve(p, Path::new("data")),
        PathBuf::from("/x/y/data")
    );
    assert_eq!(
        Project::resolve(p, Path::new("/abs")),
        PathBuf::from("/abs")
    );
    assert_eq!(
        Project::resolve(Path::new("p.ron"), Path::new("data")),
        PathBuf::from("./data")
    );
}

#[test]
fn autosave_waits_for_a_quiet_moment() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let mut a = Autosaver::new(Duration::from_millis(1000), Duration::from_millis(5000));
    assert!(!a.tick(ms(0)), "nothing changed yet");
    a.changed_at(ms(0));
    assert!(a.is_dirty());
    assert!(!a.tick(ms(500)));
    a.changed_at(ms(800));
    assert!(!a.tick(ms(1500)), "the second change restarts the wait");
    assert!(a.tick(ms(1800)));
    assert!(!a.is_dirty());
    assert!(!a.tick(ms(5000)), "saved once per quiet moment");
}

#[test]
fn autosave_saves_during_steady_changes_after_max_wait() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let mut a = Autosaver::new(Duration::from_millis(1000), Duration::from_millis(3000));
    let mut saves = Vec::new();
    for t in (0..7000).step_by(200) {
        a.changed_at(ms(t));
        if a.tick(ms(t + 100)) {
            saves.push(t + 100);
        }
    }
    // Changes at 0, 200, ...; ticks 100 ms after each. First unsaved change at 0:
    // the first tick at or past 3000 is 3100. The next first change is at 3200:
    // the first tick at or past 6200 is 6300.
    assert_eq!(saves, vec![3100, 6300]);
}

#[test]
fn autosave_retries_after_a_failed_save() {
    let dir = tmp();
    // A folder where the project file should be: the save fails.
    let path = dir.path().join("p.ron");
    std::fs::create_dir(&path).unwrap();
    let t0 = Instant::now();
    let mut a = Autosaver::new(Duration::from_millis(100), Duration::from_secs(1));
    a.changed_at(t0);
    let r = a.save_if_due(t0 + Duration::from_millis(200), &sample(), &path);
    assert!(matches!(r, Some(Err(_))));
    assert!(a.is_dirty(), "a failed save keeps the changes pending");
    std::fs::remove_dir(&path).unwrap();
    assert!(a
        .save_if_due(t0 + Duration::from_millis(250), &sample(), &path)
        .is_none());
    let r = a.save_if_due(t0 + Duration::from_millis(400), &sample(), &path);
    assert!(matches!(r, Some(Ok(()))));
    assert_eq!(Project::load(&path).unwrap(), sample());
}
