//! Chat templates that exhaust memory (issue #16): minijinja caps `"x" * n` but not
//! concatenation, so a template that keeps doubling a string would abort the process. On
//! Linux a template renders in a memory-limited child process (`src/llm/chat/render_server.rs`);
//! these tests check that such templates are a clear error, that the template (and the
//! process) keeps working afterwards, that the child renders byte for byte what minijinja
//! renders in-process, that no child outlives its template or its parent, and, end to end,
//! that `trsr summarize` with a hostile GGUF exits with an error instead of a signal.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::{self, Value};
use trsr::llm::chat::{ChatTemplate, TEMPLATE_MEMORY_MIB, TEMPLATE_RENDER_TIMEOUT_SECS};
use trsr::lm::ChatMessage;

/// Templates that double a string (or a list) forty times: 4 bytes * 2^40.
const HOSTILE: [(&str, &str); 5] = [
    (
        "tilde",
        "{% set ns = namespace(s='aaaa') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    ),
    (
        "plus",
        "{% set ns = namespace(s='aaaa') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    ),
    (
        "replace",
        "{% set ns = namespace(s='aaaa') %}{% for i in range(40) %}{% set ns.s = ns.s|replace('a', 'aa') %}{% endfor %}{{ ns.s }}",
    ),
    (
        "format",
        "{% set ns = namespace(s='aaaa') %}{% for i in range(40) %}{% set ns.s = '%s%s'|format(ns.s, ns.s) %}{% endfor %}{{ ns.s }}",
    ),
    (
        "unrolled",
        "{% set a = 'aaaaaaaa' %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a }}",
    ),
];

/// A template that behaves unless the first message says "grow": then it doubles a string.
const SOMETIMES_HOSTILE: &str = "{% if messages[0].content == 'grow' %}{% set ns = namespace(s='aaaa') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You summarize reading histories."),
        ChatMessage::user("Titles: <a> & \"b\" {{ x }} é"),
        ChatMessage::assistant("A reader of sports news."),
        ChatMessage::user("Yes or no?"),
    ]
}

/// The memory limit's error, or, on a machine so loaded that the doubling had not reached
/// the limit within the render's time limit, the time limit's: either way a bounded stop
/// with a clear error (which one it was is printed).
fn is_limit_error(e: &str) -> bool {
    is_memory_error(e) || e.contains("did not finish rendering within")
}

fn is_memory_error(e: &str) -> bool {
    e.contains(&format!("more than {TEMPLATE_MEMORY_MIB} MiB"))
}

/// Whether process `pid` has ended (gone, or a zombie waiting for a parent that is not
/// ours to reap it).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn wait_ended(pid: u32, within: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if ended(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ended(pid)
}

#[test]
fn doubling_templates_are_a_clear_error_and_the_template_keeps_working() {
    for (name, src) in HOSTILE {
        let t = ChatTemplate::from_str(src, "<s>", "</s>")
            .unwrap()
            .with_origin(format!("{name}.gguf (`tokenizer.chat_template`)"));
        let t0 = Instant::now();
        let e = t.render(&conversation(), true).expect_err(name).to_string();
        println!("{name}: {e} ({:?})", t0.elapsed());
        // `~` doubles with one copy per step: it reaches the memory limit in about a second
        // on any machine, so it must be the memory limit that stops it.
        if name == "tilde" {
            assert!(is_memory_error(&e), "{name}: {e}");
        } else {
            assert!(is_limit_error(&e), "{name}: {e}");
        }
        assert!(
            e.contains(&format!("{name}.gguf (`tokenizer.chat_template`)")),
            "{name}: the error does not name the template: {e}"
        );
        // The failed child is gone; the template has none until it renders again.
        assert_eq!(t.render_process_id(), None, "{name}");
    }

    // The same template, with input that keeps it small, renders again (a fresh child).
    let t = ChatTemplate::from_str(SOMETIMES_HOSTILE, "", "").unwrap();
    let plain = conversation();
    let want = t.render_in_process(&plain, true).unwrap();
    assert_eq!(t.render(&plain, true).unwrap(), want);
    let first = t.render_process_id().expect("a render child");
    let mut grow = conversation();
    grow[0].content = "grow".into();
    let e = t.render(&grow, true).unwrap_err().to_string();
    assert!(is_limit_error(&e), "{e}");
    assert!(wait_ended(first, Duration::from_secs(5)), "child {first}");
    for _ in 0..3 {
        assert_eq!(t.render(&plain, true).unwrap(), want);
    }
    let second = t.render_process_id().expect("a fresh render child");
    assert_ne!(first, second);
    // Dropping the template ends (and reaps) its child.
    drop(t);
    assert!(ended(second), "child {second} outlived its template");
}

#[test]
fn fuel_recursion_and_raise_exception_still_apply_in_the_child() {
    let msgs = [ChatMessage::user("hi")];
    let t = ChatTemplate::from_str(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "",
        "",
    )
    .unwrap();
    let e = t.render(&msgs, true).unwrap_err().to_string();
    assert!(e.contains("did not finish within"), "{e}");
    let t = ChatTemplate::from_str(
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "",
        "",
    )
    .unwrap();
    let e = t.render(&msgs, true).unwrap_err().to_string();
    assert!(e.contains("recursion"), "{e}");
    let t = ChatTemplate::from_str("{{ raise_exception('no system role') }}", "", "").unwrap();
    let e = t.render(&msgs, true).unwrap_err();
    assert_eq!(
        e.to_string(),
        t.render_in_process(&msgs, true).unwrap_err().to_string()
    );
    assert!(e.to_string().contains("no system role"), "{e}");
    // An error is not a crash: the child stays and renders the next request.
    let pid = t.render_process_id().expect("a render child");
    let _ = t.render(&msgs, false);
    assert_eq!(t.render_process_id(), Some(pid));
}

#[test]
fn a_render_that_runs_too_long_is_stopped() {
    // Each step copies 16 MiB: within fuel and memory, but minutes of copying.
    let t = ChatTemplate::from_str(
        "{% set ns = namespace(s='a' * 16777216) %}{% for i in range(100000) %}{% set ns.t = ns.s ~ 'b' %}{% endfor %}done",
        "",
        "",
    )
    .unwrap();
    let t0 = Instant::now();
    let e = t
        .render(&[ChatMessage::user("hi")], true)
        .unwrap_err()
        .to_string();
    println!("stopped after {:?}: {e}", t0.elapsed());
    assert!(
        e.contains(&format!(
            "did not finish rendering within {TEMPLATE_RENDER_TIMEOUT_SECS} s"
        )),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(TEMPLATE_RENDER_TIMEOUT_SECS + 60));
    assert_eq!(t.render_process_id(), None);
}

/// The default model's template (else the tiny test model's), rendered in the child and
/// in-process: byte-identical, for several conversations; and the time per render both ways.
#[test]
fn the_child_renders_what_minijinja_renders_and_its_overhead() {
    let dir = tempfile::tempdir().unwrap();
    let path = match common::default_model() {
        Some(p) => p,
        None => {
            let p = dir.path().join("tiny.gguf");
            common::write_tiny(&p, &common::TinyOpts::default());
            p
        }
    };
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let tok = trsr::llm::tokenizer::Tokenizer::from_gguf(&content).unwrap();
    let t = ChatTemplate::from_gguf(&content, &tok)
        .unwrap()
        .expect("a chat template");
    let mut long = conversation();
    long[1].content = "Story about football; ".repeat(2_000);
    let cases: Vec<Vec<ChatMessage>> = vec![
        conversation(),
        vec![ChatMessage::user("Summarize.")],
        conversation()[1..].to_vec(),
        long,
    ];
    for msgs in &cases {
        for agp in [true, false] {
            assert_eq!(
                t.render(msgs, agp).unwrap(),
                t.render_in_process(msgs, agp).unwrap(),
                "{} messages, add_generation_prompt {agp}",
                msgs.len()
            );
        }
    }

    let n = 10_000;
    let msgs = conversation();
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(t.render_in_process(&msgs, true).unwrap());
    }
    let in_process = t0.elapsed() / n;
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(t.render(&msgs, true).unwrap());
    }
    let child = t0.elapsed() / n;
    println!(
        "template of {}: {n} renders of a {}-message prompt: in-process {in_process:?}/render, \
         in the child {child:?}/render (overhead {:?})",
        path.display(),
        msgs.len(),
        child.saturating_sub(in_process)
    );
}

/// Renders once, prints its child's PID and waits to be killed (run by
/// `a_render_child_ends_when_its_parent_is_killed`, not on its own).
#[test]
#[ignore]
fn helper_render_then_wait() {
    if std::env::var("TRSR_TEMPLATE_HELPER").is_err() {
        return;
    }
    let t = ChatTemplate::from_str("{{ messages[0].content }}", "", "").unwrap();
    assert_eq!(t.render(&[ChatMessage::user("x")], true).unwrap(), "x");
    println!("CHILD {}", t.render_process_id().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_render_child_ends_when_its_parent_is_killed() {
    use std::io::BufRead;
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_render_then_wait",
            "--nocapture",
        ])
        .env("TRSR_TEMPLATE_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let mut child_pid = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(pid) = line.trim().strip_prefix("CHILD ") {
            child_pid = Some(pid.parse::<u32>().unwrap());
            break;
        }
    }
    let child_pid = child_pid.expect("the helper printed its render child's PID");
    assert!(!ended(child_pid));
    helper.kill().unwrap(); // SIGKILL
    helper.wait().unwrap();
    assert!(
        wait_ended(child_pid, Duration::from_secs(10)),
        "render child {child_pid} outlived its killed parent"
    );
}

/// Rewrites the GGUF at `path` with `template` as its `tokenizer.chat_template`.
fn set_chat_template(path: &Path, template: &str) {
    let mut file = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut metadata = content.metadata.clone();
    metadata.insert(
        "tokenizer.chat_template".into(),
        Value::String(template.into()),
    );
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = content
        .tensor_infos
        .keys()
        .map(|name| {
            let t = content
                .tensor(&mut file, name, &candle_core::Device::Cpu)
                .unwrap();
            (name.clone(), t)
        })
        .collect();
    drop(file);
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut out, &md, &ts).unwrap();
}

#[test]
fn trsr_summarize_with_a_hostile_gguf_template_exits_with_an_error_not_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::write_tiny_for_prompts(dir.path());
    set_chat_template(&model, HOSTILE[0].1);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    common::write_dataset(&data, false);
    let out = dir.path().join("summaries.jsonl");
    let t0 = Instant::now();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_trsr"))
        .args(["summarize", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .args([
            "--method",
            "hierarchical",
            "--greedy",
            "--max-new-tokens",
            "4",
            "--limit",
            "2",
            "--no-cache",
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    println!(
        "trsr summarize: {:?} in {:?}\nstdout: {}\nstderr: {stderr}",
        o.status,
        t0.elapsed(),
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        o.status.code().is_some(),
        "trsr was ended by a signal: {:?}",
        o.status
    );
    assert!(!o.status.success(), "a hostile template passed");
    assert!(
        stderr.contains(&format!("more than {TEMPLATE_MEMORY_MIB} MiB"))
            && stderr.contains("tiny.gguf (`tokenizer.chat_template`)"),
        "{stderr}"
    );
}

/// Rust's out-of-memory handler takes the runtime's backtrace lock before it aborts; a
/// child forked while another thread held it (printing a panic's backtrace, capturing one)
/// would wait for it forever. The parent sees the child asleep and stops it with the
/// memory error, long before the time limit. Here another thread keeps resolving
/// backtraces (under that lock) while hostile templates render.
#[test]
fn a_child_stuck_on_a_lock_held_at_the_fork_is_stopped_with_the_memory_error() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let b = std::backtrace::Backtrace::force_capture();
                n += b.to_string().len().min(1);
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    for round in 0..4 {
        let t = ChatTemplate::from_str(HOSTILE[0].1, "", "").unwrap();
        let t0 = Instant::now();
        let e = t.render(&conversation(), true).unwrap_err().to_string();
        println!("round {round}: stopped after {:?}: {e}", t0.elapsed());
        assert!(is_memory_error(&e), "{e}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    println!("{} backtraces resolved meanwhile", busy.join().unwrap());
}
