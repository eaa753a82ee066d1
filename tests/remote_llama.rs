//! The server model against a real llama.cpp `llama-server` serving the default model on
//! 127.0.0.1 (built by scripts/build_llama_server.sh; `.ci/run` builds it and sets
//! TRSR_LLAMA_SERVER). Skips with a note when the binary or the default model is missing.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use trsr::cli::summarize::{summarize_all, SummarizeBatch};
use trsr::data::ItemTextTemplate;
use trsr::lm::{CancelToken, ChatMessage, LanguageModel, SamplingParams, StopReason};
use trsr::prompt::{Templates, Wording};
use trsr::rank::{recommend_chat_prompt, RecommendOptions};
use trsr::remote::{Client, RemoteModel, RemoteOptions, RetryPolicy};
use trsr::segment::BlockParams;
use trsr::summarize::{Method, SummaryTrace};

/// The llama-server binary: $TRSR_LLAMA_SERVER, else the newest cached build.
fn llama_server_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TRSR_LLAMA_SERVER") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
    }
    let dir = dirs::cache_dir()?.join("trsr/llama-server");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("llama-server"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// Both the server binary and the default model, or a printed note and `None`.
fn setup(test: &str) -> Option<(PathBuf, PathBuf)> {
    let Some(bin) = llama_server_bin() else {
        common::skipped(&format!(
            "{test}: no llama-server (run scripts/build_llama_server.sh or set TRSR_LLAMA_SERVER)"
        ));
        return None;
    };
    let model = common::default_model()?;
    Some((bin, model))
}

/// A running llama-server, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(bin: &Path, model: &Path, slots: usize) -> Server {
        Server::start_with(bin, model, slots, 4096 * slots, &[])
    }

    /// [`Server::start`] with a context of `context` tokens and more llama-server
    /// arguments.
    fn start_with(
        bin: &Path,
        model: &Path,
        slots: usize,
        context: usize,
        extra: &[&str],
    ) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["-m", &model.display().to_string()])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", &context.to_string(), "-np", &slots.to_string()])
            .args(["-t", "2", "--no-webui"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting llama-server");
        let url = format!("http://127.0.0.1:{port}/v1");
        let mut s = Server { child, url };
        let t0 = Instant::now();
        loop {
            // A fresh client per poll: a refused connection marks a client's server down.
            let client = Client::new(
                None,
                RetryPolicy {
                    max_retries: 0,
                    ..RetryPolicy::default()
                },
            );
            if client
                .get_json(&format!("http://127.0.0.1:{port}/health"))
                .is_ok_and(|v| v["status"] == "ok")
            {
                break;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("llama-server exited at start ({status})");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "llama-server did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn connect(url: &str, templates: &Templates) -> RemoteModel {
    let opts = RemoteOptions {
        yes_word: templates.yes.clone(),
        no_word: templates.no.clone(),
        retry: RetryPolicy {
            max_retries: 1,
            base_backoff_ms: 50,
            ..RetryPolicy::default()
        },
        ..RemoteOptions::new(url)
    };
    RemoteModel::connect(&opts).expect("connecting to llama-server")
}

fn sample_data() -> trsr::data::Prepared {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_data/jsonl");
    trsr::data::jsonl::load_prepared(&dir).unwrap()
}

#[test]
fn streamed_generation_equals_the_servers_own_greedy_output_and_cancels() {
    let Some((bin, model)) = setup("streamed_generation") else {
        return;
    };
    let server = Server::start(&bin, &model, 1);
    let mut lm = connect(&server.url, &Templates::for_wording(Wording::News));
    assert!(lm.identity().architecture.starts_with("remote llamacpp"));
    assert!(lm.identity().name.contains(&server.url));

    let prompt = lm
        .render_chat(&[ChatMessage::user("Name three colors of the rainbow.")])
        .unwrap();
    let mut deltas = Vec::new();
    let g = lm
        .generate(
            &prompt,
            &SamplingParams::greedy(32),
            &CancelToken::new(),
            &mut |d| deltas.push(d.clone()),
        )
        .unwrap();
    assert!(deltas.len() >= 2, "{deltas:?}");
    assert_eq!(g.new_tokens, deltas.len());
    let streamed: String = deltas.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(streamed, g.text);
    assert!(!g.text.trim().is_empty());
    assert!(deltas
        .iter()
        .all(|d| d.logprob.is_finite() && d.logprob <= 0.0));
    eprintln!(
        "streamed ({} tokens, {:?}): {:?}",
        g.new_tokens, g.stop, g.text
    );

    // The server's own non-streamed greedy answer to the same token ids.
    let ids = lm.encode_prompt(&prompt).unwrap();
    let client = Client::new(None, RetryPolicy::default());
    let v = client
        .post_json(
            &format!("{}/completions", server.url),
            &json!({"prompt": ids, "max_tokens": 32, "temperature": 0.0, "top_k": 1}),
        )
        .unwrap();
    let own = v["choices"][0]["text"].as_str().unwrap();
    assert_eq!(
        g.text, own,
        "streamed greedy output differs from the server's own"
    );

    // Cancel mid-stream.
    let cancel = CancelToken::new();
    let mut n = 0;
    let g = lm
        .generate(&prompt, &SamplingParams::greedy(64), &cancel, &mut |_| {
            n += 1;
            if n == 3 {
                cancel.cancel();
            }
        })
        .unwrap();
    assert_eq!(g.stop, StopReason::Cancelled);
    assert!(g.new_tokens <= 4, "{}", g.new_tokens);
}

#[test]
fn p_yes_on_the_server_agrees_with_the_in_process_engine() {
    let Some((bin, model)) = setup("p_yes_agreement") else {
        return;
    };
    let server = Server::start(&bin, &model, 2);
    let templates = Templates::for_wording(Wording::News);
    let mut remote = connect(&server.url, &templates);
    let mut engine = trsr::llm::Engine::load_path(
        &model,
        &trsr::llm::LoadOptions {
            device: trsr::llm::DevicePref::Cpu,
            yes_word: templates.yes.clone(),
            no_word: templates.no.clone(),
            ..trsr::llm::LoadOptions::default()
        },
    )
    .unwrap();
    let data = sample_data();
    let text = ItemTextTemplate::with_fields(trsr::data::MIND_FIELDS);
    let opts = RecommendOptions {
        use_summary: false,
        ..RecommendOptions::default()
    };
    let mut max_diff = 0f32;
    let mut n = 0;
    for case in data.cases.iter().take(3) {
        let ((prefix, suffixes), _) = recommend_chat_prompt(
            &engine,
            &templates,
            case,
            &data.catalogue,
            &text,
            None,
            &opts,
        )
        .unwrap();
        let ((r_prefix, r_suffixes), _) = recommend_chat_prompt(
            &remote,
            &templates,
            case,
            &data.catalogue,
            &text,
            None,
            &opts,
        )
        .unwrap();
        // Same prompt text, same token ids: no template or tokenizer drift.
        assert_eq!(prefix, r_prefix);
        assert_eq!(suffixes, r_suffixes);
        assert_eq!(
            engine.encode_prompt(&prefix).unwrap(),
            remote.encode_prompt(&prefix).unwrap()
        );
        // The scored lengths (`score --dump-prompts`'s `tokens`) agree too.
        assert_eq!(
            engine.scored_tokens(&prefix, &suffixes).unwrap(),
            remote.scored_tokens(&prefix, &suffixes).unwrap()
        );
        let local = engine.score_yes_no(&prefix, &suffixes).unwrap();
        let served = remote.score_yes_no(&prefix, &suffixes).unwrap();
        assert_eq!(local.len(), served.len());
        for (a, b) in local.iter().zip(&served) {
            assert!((0.0..=1.0).contains(b));
            max_diff = max_diff.max((a - b).abs());
            n += 1;
        }
    }
    eprintln!("P(yes) remote vs in-process over {n} prompts: max |difference| = {max_diff:.4}");
    assert!(n >= 60);
    assert!(max_diff < 0.15, "max difference {max_diff}");
}

fn read_lines(path: &Path) -> Vec<String> {
    std::io::BufReader::new(std::fs::File::open(path).unwrap())
        .lines()
        .map(|l| l.unwrap())
        .collect()
}

#[test]
fn killing_the_server_mid_run_loses_no_finished_case_and_a_rerun_completes() {
    let Some((bin, model)) = setup("resume_after_kill") else {
        return;
    };
    let data = sample_data();
    let templates = Templates::for_wording(Wording::News);
    let text = ItemTextTemplate::with_fields(trsr::data::MIND_FIELDS);
    let cases: Vec<_> = data.cases.iter().take(5).collect();
    let batch = SummarizeBatch {
        data: &data,
        cases: cases.clone(),
        text: &text,
        templates: &templates,
        method: Method::Recurrent,
        block_params: BlockParams::ByCount {
            size: 5,
            max_blocks: 2,
        },
        sampling: SamplingParams::greedy(16),
        cache: None,
        read_cache: false,
        show_progress: false,
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("summaries.jsonl");

    let mut server = Server::start(&bin, &model, 2);
    let lm = connect(&server.url, &templates);
    let mut models: Vec<Box<dyn LanguageModel>> = vec![Box::new(lm.clone()), Box::new(lm)];
    let pid = server.child.id();
    let watch_out = out.clone();
    let killer = std::thread::spawn(move || {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(300) {
            let lines = std::fs::read_to_string(&watch_out)
                .map(|s| s.lines().count())
                .unwrap_or(0);
            if lines >= 2 {
                // SIGKILL by pid: the server dies mid-run.
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        0
    });
    let first = summarize_all(&mut models, &batch, &out, &CancelToken::new());
    let at_kill = killer.join().unwrap();
    assert!(at_kill >= 2, "the run ended before the kill");
    server.kill();
    let kept = read_lines(&out);
    eprintln!(
        "first run: {} of {} cases on disk; result: {:?}",
        kept.len(),
        cases.len(),
        first
            .as_ref()
            .map(|r| (r.written, r.failed.len()))
            .map_err(|e| format!("{e:#}"))
    );
    assert!(
        kept.len() >= 2 && kept.len() < cases.len(),
        "{}",
        kept.len()
    );
    for l in &kept {
        let t: SummaryTrace = serde_json::from_str(l).expect("a complete line");
        assert!(!t.final_summary.is_empty());
    }
    match &first {
        Err(e) => assert!(format!("{e:#}").contains("127.0.0.1"), "{e:#}"),
        Ok(r) => {
            assert!(!r.failed.is_empty());
            assert!(
                r.failed.iter().any(|(_, e)| e.contains("127.0.0.1")),
                "{:?}",
                r.failed
            );
        }
    }

    // A fresh server; the re-run does the rest.
    let server = Server::start(&bin, &model, 2);
    let lm = connect(&server.url, &templates);
    let mut models: Vec<Box<dyn LanguageModel>> = vec![Box::new(lm.clone()), Box::new(lm)];
    let report = summarize_all(&mut models, &batch, &out, &CancelToken::new()).unwrap();
    assert_eq!(report.already_done, kept.len());
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let all = read_lines(&out);
    assert_eq!(all.len(), cases.len());
    assert_eq!(&all[..kept.len()], &kept[..], "finished lines changed");
    let mut got: Vec<String> = all
        .iter()
        .map(|l| serde_json::from_str::<SummaryTrace>(l).unwrap().case)
        .collect();
    got.sort();
    let mut want: Vec<String> = cases.iter().map(|c| c.case.clone()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_prompt_longer_than_the_servers_context_stops_the_run_before_any_case_is_written() {
    let Some((bin, model)) = setup("context_preflight") else {
        return;
    };
    // 256 tokens (llama-server's least): the system message and a block of ten news
    // items do not fit.
    let server = Server::start_with(&bin, &model, 1, 256, &[]);
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_data/jsonl");
    let dir = tempfile::tempdir().unwrap();
    let summaries = dir.path().join("summaries.jsonl");
    let data_arg = data.display().to_string();
    let summaries_arg = summaries.display().to_string();
    let (ok, _out, err) = common::trsr(&[
        "summarize",
        "--data",
        &data_arg,
        "--model",
        &server.url,
        "--method",
        "recurrent",
        "--block-size",
        "10",
        "--max-new-tokens",
        "16",
        "--greedy",
        "--limit",
        "3",
        "--out",
        &summaries_arg,
    ]);
    eprintln!("summarize: {err}");
    assert!(!ok, "the run should stop");
    assert!(err.contains(&server.url), "{err}");
    assert!(
        err.contains("does not fit the context of 256 tokens"),
        "{err}"
    );
    let written = std::fs::read_to_string(&summaries).unwrap_or_default();
    assert_eq!(
        written.lines().count(),
        0,
        "no case may be written: {written}"
    );

    let scores = dir.path().join("scores.jsonl");
    let scores_arg = scores.display().to_string();
    let (ok, _out, err) = common::trsr(&[
        "score",
        "--data",
        &data_arg,
        "--model",
        &server.url,
        "--no-summary",
        "--limit",
        "3",
        "--out",
        &scores_arg,
    ]);
    eprintln!("score: {err}");
    assert!(!ok, "the run should stop");
    assert!(err.contains(&server.url), "{err}");
    assert!(err.contains("recommender prompt"), "{err}");
    let written = std::fs::read_to_string(&scores).unwrap_or_default();
    assert_eq!(
        written.lines().count(),
        0,
        "no case may be written: {written}"
    );
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A server that wants an API key: `trsr summarize` and `trsr score` with the key in
/// `$TRSR_API_KEY` succeed (without it they fail, so the key was in use), and no trace,
/// score, cache entry, project file or console output of the run holds the key.
#[test]
fn the_api_key_stays_out_of_traces_scores_caches_projects_and_output() {
    let Some((bin, model)) = setup("api_key_stays_out") else {
        return;
    };
    const KEY: &str = "sk-trsr-test-4b1d9e0c7a";
    let server = Server::start_with(&bin, &model, 1, 4096, &["--api-key", KEY]);
    let dir = tempfile::tempdir().unwrap();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_data/jsonl");
    let (data, url) = (data.display().to_string(), server.url.clone());
    let cache = dir.path().join("cache").display().to_string();
    let summaries = dir.path().join("summaries.jsonl").display().to_string();
    let scores = dir.path().join("scores.jsonl").display().to_string();
    let run = |args: &[&str], key: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trsr"));
        c.args(args)
            .args(["--model", &url, "--data", &data, "--cache-dir", &cache])
            .args(["--limit", "2", "--quiet"]);
        c.env_remove("TRSR_API_KEY");
        if let Some(k) = key {
            c.env("TRSR_API_KEY", k);
        }
        let o = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!text.contains(KEY), "the key is in the output: {text}");
        (o.status.success(), text)
    };
    let summarize = [
        "summarize",
        "--method",
        "hierarchical",
        "--greedy",
        "--max-new-tokens",
        "8",
        "--out",
        &summaries,
    ];
    let (ok, text) = run(&summarize, None);
    assert!(!ok, "the server took a request without the key: {text}");
    let (ok, text) = run(&summarize, Some(KEY));
    assert!(ok, "{text}");
    let (ok, text) = run(
        &["score", "--summaries", &summaries, "--out", &scores],
        Some(KEY),
    );
    assert!(ok, "{text}");

    // The project the window would keep: the server as its model, the traces and their
    // scores recorded in the curation.
    let traces: Vec<SummaryTrace> = trsr::cli::batch::read_jsonl(Path::new(&summaries)).unwrap();
    let records: Vec<trsr::metrics::ScoreRecord> =
        trsr::cli::batch::read_jsonl(Path::new(&scores)).unwrap();
    assert_eq!(traces.len(), 2);
    assert!(!records.is_empty());
    let mut p = trsr::project::Project::new();
    p.settings.model = url.clone();
    for t in &traces {
        let method = t.method.name();
        let steps = t
            .steps
            .iter()
            .map(|s| {
                let kind = match s.kind {
                    trsr::summarize::StepKind::Block => trsr::curate::StepKind::Block,
                    trsr::summarize::StepKind::Update => trsr::curate::StepKind::Update,
                    trsr::summarize::StepKind::Merge => trsr::curate::StepKind::Merge,
                };
                // As the window's session registers a trace: a step's block item ids.
                let ids: Vec<String> = s
                    .blocks
                    .iter()
                    .filter(|_| kind != trsr::curate::StepKind::Merge)
                    .flat_map(|&b| t.blocks[b].clone())
                    .collect();
                (kind, ids, s.output.clone())
            })
            .collect();
        p.curation
            .register_trace(&t.case, method, steps, Some(t.model.name.clone()))
            .unwrap();
        if let Some(r) = records.iter().find(|r| r.case == t.case) {
            p.curation
                .record_scores(&t.case, method, r.candidates.clone())
                .unwrap();
        }
    }
    p.save(&dir.path().join("project.ron")).unwrap();

    let files = files_under(dir.path());
    assert!(files
        .iter()
        .any(|f| f.starts_with(dir.path().join("cache"))));
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the API key is in {}",
            f.display()
        );
    }
}
