//! Faults in the middle of batch output and saves: `trsr summarize` and `trsr score`
//! killed with SIGKILL at random moments leave only complete lines (a torn last line, if
//! any, is dropped on resume) and the next run finishes with the same cases as an
//! uninterrupted one; a full disk (a file-size limit, `ulimit -f`, which makes writes fail
//! with EFBIG as a full disk makes them fail with ENOSPC) gives an error naming the file,
//! keeps the finished lines and the last good project. The model is the tiny random
//! llama of `common` (milliseconds per case), run by the real binary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_trsr");

/// A prepared folder of `n` cases (6 history items, a target, 3 negatives) over 60 items.
fn write_cases(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let topics = ["football", "elections", "recipes", "space", "markets"];
    let mut items = String::new();
    for i in 0..60 {
        items.push_str(&format!(
            "{{\"id\": \"N{i}\", \"category\": \"{t}\", \"title\": \"Story {i} on {t}\"}}\n",
            t = topics[i % 5]
        ));
    }
    std::fs::write(dir.join("items.jsonl"), items).unwrap();
    let mut cases = String::new();
    for u in 0..n {
        let hist: Vec<String> = (0..6)
            .map(|i| format!("\"N{}\"", (u * 7 + i) % 50))
            .collect();
        cases.push_str(&format!(
            "{{\"case\": \"c{u}\", \"user\": \"U{u}\", \"history\": [{}], \"target\": \"N{}\", \
             \"negatives\": [\"N55\", \"N56\", \"N57\"]}}\n",
            hist.join(", "),
            50 + u % 5
        ));
    }
    std::fs::write(dir.join("cases.jsonl"), cases).unwrap();
}

/// One batch command under test: its arguments without `--out`, and what a line of
/// its output is keyed and compared by.
struct Batch {
    args: Vec<String>,
    /// The fields that name a line (case and method, or case and scorer).
    key: [&'static str; 2],
    /// The field whose value an interrupted run must reproduce.
    content: &'static str,
}

impl Batch {
    fn command(&self, out: &Path) -> Command {
        let mut c = Command::new(BIN);
        c.args(&self.args).arg("--out").arg(out);
        c
    }
}

fn setup(dir: &Path, cases: usize) -> (PathBuf, PathBuf) {
    let model = common::write_tiny_for_prompts(dir);
    let data = dir.join("data");
    write_cases(&data, cases);
    (model, data)
}

fn summarize_batch(dir: &Path, model: &Path, data: &Path) -> Batch {
    let args = [
        "summarize",
        "--model",
        &model.display().to_string(),
        "--data",
        &data.display().to_string(),
        "--method",
        "hierarchical",
        "--greedy",
        "--max-new-tokens",
        "6",
        "--no-cache",
        "--cache-dir",
        &dir.join("cache").display().to_string(),
        "--quiet",
    ]
    .map(String::from)
    .to_vec();
    Batch {
        args,
        key: ["case", "method"],
        content: "final_summary",
    }
}

fn score_batch(dir: &Path, model: &Path, data: &Path) -> Batch {
    let args = [
        "score",
        "--scorer",
        "llm",
        "--model",
        &model.display().to_string(),
        "--data",
        &data.display().to_string(),
        "--no-summary",
        "--no-cache",
        "--cache-dir",
        &dir.join("cache").display().to_string(),
        "--quiet",
    ]
    .map(String::from)
    .to_vec();
    Batch {
        args,
        key: ["case", "scorer"],
        content: "candidates",
    }
}

/// The output file: its complete lines (each must be a JSON object) by key, and
/// whether a torn last line (no newline) follows them.
fn read_output(path: &Path, b: &Batch) -> (BTreeMap<String, Value>, bool) {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut rows = BTreeMap::new();
    let mut pieces: Vec<&[u8]> = bytes.split(|&c| c == b'\n').collect();
    let tail = pieces.pop().unwrap_or_default();
    for (i, line) in pieces.iter().enumerate() {
        let v: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
            panic!(
                "{}:{}: a complete line that is not JSON ({e})",
                path.display(),
                i + 1
            )
        });
        let key = format!("{}/{}", v[b.key[0]], v[b.key[1]]);
        assert!(
            rows.insert(key.clone(), v[b.content].clone()).is_none(),
            "{}: {key} twice",
            path.display()
        );
    }
    (rows, !tail.is_empty())
}

fn finish(b: &Batch, out: &Path) -> Output {
    let o = b.command(out).output().unwrap();
    assert!(
        o.status.success(),
        "{:?} failed: {}",
        b.args[0],
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Newline bytes in `path` (0 if it does not exist yet).
fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Kills `b` at random moments, checks the output after each kill, then resumes it
/// (once over a torn line written on purpose) and compares with an uninterrupted run.
fn kill9_then_resume(dir: &Path, b: &Batch) {
    let full = dir.join("full.jsonl");
    let t0 = Instant::now();
    finish(b, &full);
    let full_time = t0.elapsed();
    let (want, torn) = read_output(&full, b);
    assert!(
        !torn && want.len() > 50,
        "the uninterrupted run wrote {} lines",
        want.len()
    );

    let out = dir.join("killed.jsonl");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let mut before = BTreeMap::new();
    let mut mid_run = 0;
    for _ in 0..8 {
        let mut child = b
            .command(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill once the run has written 1 to 5 new lines, then up to one line's time
        // later: every kill lands mid-run whatever the machine's load (a kill timed from
        // the spawn can land before the model loads, or after the run ends, on a busy
        // machine), at a random point of writing the next line.
        let lines_before = count_lines(&out);
        let wait_for = lines_before + rng.random_range(1..=5usize);
        let deadline = Instant::now() + Duration::from_secs(120);
        while count_lines(&out) < wait_for
            && child.try_wait().unwrap().is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let per_line = full_time.as_secs_f64() / want.len() as f64;
        std::thread::sleep(Duration::from_secs_f64(
            rng.random_range(0.0..1.0) * per_line,
        ));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let (now, _torn) = read_output(&out, b);
        for (k, v) in &before {
            assert_eq!(
                now.get(k),
                Some(v),
                "{k}: a finished line was lost or changed"
            );
        }
        if !now.is_empty() && now.len() < want.len() {
            mid_run += 1;
        }
        before = now;
    }
    assert!(mid_run >= 5, "only {mid_run} of 8 kills landed mid-run");

    // A torn last line, as a write cut short by a crash or a full disk leaves it.
    let mut bytes = std::fs::read(&out).unwrap();
    let whole = std::fs::read(&full).unwrap();
    let first_line = whole.split(|&c| c == b'\n').next().unwrap();
    bytes.extend_from_slice(&first_line[..first_line.len() / 2]);
    std::fs::write(&out, bytes).unwrap();

    finish_and_compare(b, &out, &want);
}

/// Runs `b` to the end on `out` (resuming what is there) and checks the file then holds
/// exactly the lines of an uninterrupted run, `want`, and no torn line.
fn finish_and_compare(b: &Batch, out: &Path, want: &BTreeMap<String, Value>) {
    finish(b, out);
    let (got, torn) = read_output(out, b);
    assert!(!torn);
    assert_eq!(
        got.keys().collect::<BTreeSet<_>>(),
        want.keys().collect::<BTreeSet<_>>(),
        "the resumed run's cases differ from an uninterrupted run's"
    );
    for (k, v) in want {
        assert_eq!(&got[k], v, "{k}: the resumed run's output differs");
    }
}

#[test]
fn kill_9_mid_summarize_leaves_complete_lines_and_the_next_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = setup(dir.path(), 300);
    let b = summarize_batch(dir.path(), &model, &data);
    kill9_then_resume(dir.path(), &b);
}

#[test]
fn kill_9_mid_score_leaves_complete_lines_and_the_next_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = setup(dir.path(), 300);
    let b = score_batch(dir.path(), &model, &data);
    kill9_then_resume(dir.path(), &b);
}

/// Runs `cmd` under a file-size limit of `kib` KiB (`ulimit -f`, bash's 1024-byte units).
fn with_file_size_limit(kib: u64, cmd: &Command) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg("ulimit -f \"$1\" && shift && exec \"$@\"")
        .arg("bash")
        .arg(kib.to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .output()
        .unwrap()
}

fn full_disk_then_resume(dir: &Path, b: &Batch) {
    let full = dir.join("full.jsonl");
    finish(b, &full);
    let (want, _) = read_output(&full, b);
    let limit_kib = 32;
    assert!(
        std::fs::metadata(&full).unwrap().len() > 2 * limit_kib * 1024,
        "the output is too small to fill the limit"
    );

    let out = dir.join("limited.jsonl");
    let o = with_file_size_limit(limit_kib, &b.command(&out));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "not a clean failure ({:?}); stderr: {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("could not write") && err.contains(&*out.display().to_string()),
        "the error does not name the file: {err}"
    );
    assert!(err.contains("File too large"), "{err}");
    assert!(std::fs::metadata(&out).unwrap().len() <= limit_kib * 1024);
    let (kept, _torn) = read_output(&out, b);
    assert!(!kept.is_empty(), "no finished line was kept");
    for (k, v) in &kept {
        assert_eq!(&want[k], v, "{k}");
    }

    // Space again: the same command finishes the work.
    finish_and_compare(b, &out, &want);
}

#[test]
fn a_full_disk_during_summarize_is_an_error_naming_the_file_and_a_rerun_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = setup(dir.path(), 120);
    let b = summarize_batch(dir.path(), &model, &data);
    full_disk_then_resume(dir.path(), &b);
}

#[test]
fn a_full_disk_during_score_is_an_error_naming_the_file_and_a_rerun_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = setup(dir.path(), 300);
    let b = score_batch(dir.path(), &model, &data);
    full_disk_then_resume(dir.path(), &b);
}

// ----- the project under a full disk ----------------------------------------------------

const PROJECT_CHILD_ENV: &str = "TRSR_FULL_DISK_CHILD_PROJECT";

/// A project of about `kib` KiB whose settings name generation `g`.
fn big_project(g: u64, kib: usize) -> trsr::project::Project {
    let mut p = trsr::project::Project::new();
    p.settings.extra.insert("generation".into(), g.to_string());
    p.settings
        .extra
        .insert("padding".into(), "x".repeat(kib * 1024));
    p
}

/// The child: runs under a file-size limit (started by the parent through `bash -c
/// 'ulimit -f'`), as the binary does (SIGXFSZ ignored), and tries to save a project larger
/// than the limit, once directly and once through the window's autosave path.
#[test]
#[ignore = "child process of a_full_disk_keeps_the_last_good_project"]
fn full_disk_child_saver() {
    use trsr::app::background::Background;
    use trsr::app::{ProjectSession, TaskOutput};

    trsr::cli::ignore_file_size_signal();
    let path = PathBuf::from(std::env::var(PROJECT_CHILD_ENV).expect("started by the parent"));
    let e = big_project(1, 256).save(&path).unwrap_err().to_string();
    println!("save: {e}");

    let mut session = ProjectSession::open_or_create(&path, None).unwrap();
    let mut tasks: Background<TaskOutput> = Background::new(std::sync::Arc::new(|| {}));
    session.project = big_project(2, 256);
    session.changed();
    let later = Instant::now() + session.autosaver.max_wait;
    assert!(session.poll_save(later, &tasks).is_none());
    let id = session.saving_task().unwrap();
    let done = tasks.wait_for(id, Duration::from_secs(60)).unwrap();
    let Ok(TaskOutput::ProjectSaved(result)) = done.output else {
        panic!("unexpected task output");
    };
    let notice = session
        .save_done(id, result, later)
        .expect("a failed autosave shows a notice");
    println!("autosave: {}", notice.text);
    assert!(
        session.autosaver.is_dirty(),
        "the failed save counts as saved"
    );
}

#[test]
fn a_full_disk_keeps_the_last_good_project() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("project.ron");
    big_project(0, 4).save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "full_disk_child_saver",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(PROJECT_CHILD_ENV, &path);
    let o = with_file_size_limit(64, &child);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "the child failed ({:?}): {stdout}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    for what in ["save: ", "autosave: could not save the project: "] {
        let line = stdout
            .lines()
            .find_map(|l| l.find(what).map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("no `{what}` line in {stdout}"));
        assert!(
            line.contains("project.ron") && line.contains("File too large"),
            "not a clear error naming the file: {line}"
        );
    }
    // The last good save is in place, byte for byte, and nothing half-written is left.
    assert_eq!(std::fs::read(&path).unwrap(), good);
    trsr::project::Project::load(&path).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["project.ron"], "files left beside the project");
}

/// A run resumed after any number of finished cases writes bit-for-bit the scores of an
/// uninterrupted run: the case a resumed process scores first (its prefix computed
/// afresh) gets the numbers it got after the previous case (its prefix partly kept).
#[test]
fn a_resumed_score_run_writes_the_numbers_of_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = setup(dir.path(), 24);
    let b = score_batch(dir.path(), &model, &data);
    let full = dir.path().join("full.jsonl");
    finish(&b, &full);
    let (want, _) = read_output(&full, &b);
    let text = std::fs::read_to_string(&full).unwrap();
    let mut differ = Vec::new();
    for k in 1..12 {
        let out = dir.path().join(format!("resumed-{k}.jsonl"));
        let done: String = text.lines().take(k).map(|l| format!("{l}\n")).collect();
        std::fs::write(&out, done).unwrap();
        finish(&b, &out);
        let (got, _) = read_output(&out, &b);
        assert_eq!(got.len(), want.len());
        differ.extend(
            want.iter()
                .filter(|(key, v)| &got[*key] != *v)
                .map(|(key, v)| format!("resumed after {k}: {key}: {} vs {v}", got[key])),
        );
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
