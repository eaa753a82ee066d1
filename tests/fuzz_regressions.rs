//! Hostile and broken files (issue #16): every input under `tests/data/fuzz/TARGET/` (the
//! minimized findings of `scripts/fuzz.sh`, and any seed put there) goes through the same
//! entry point as the fuzz target TARGET (`fuzz/src/lib.rs`, included here) and must end
//! in a clean result (an error with a message, or success) within a bounded time; and
//! the limits that keep a length field in a file from driving an allocation or a loop
//! (GGUF counts, lengths and shapes, safetensors header, RON nesting, line lengths,
//! chat-template fuel) each fail fast with an error naming the file and field.

mod common;
#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long one committed input may take (debug build, a loaded machine): a hang found
/// by the fuzzer took over 10 s; a fixed one is rejected in milliseconds.
const LIMIT: Duration = Duration::from_secs(60);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz")
}

/// Runs `data` through `target` on a thread, failing the test if it panics or runs past
/// [`LIMIT`]. Returns the target's result.
fn run_bounded(target: &'static str, name: &str, data: Vec<u8>) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| harness::run(target, &data));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(LIMIT) {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => panic!("{target}/{name}: the parser panicked"),
        Err(_) => panic!(
            "{target}/{name}: still running after {:?} (a hang)",
            t0.elapsed()
        ),
    }
}

#[test]
fn committed_fuzz_inputs_end_cleanly_and_fast() {
    let mut seen = 0;
    for target in harness::TARGETS {
        let dir = fuzz_dir().join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files.iter().filter(|f| f.is_file()) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                continue;
            }
            let data = std::fs::read(f).unwrap();
            let t0 = Instant::now();
            let r = run_bounded(target, &name, data);
            seen += 1;
            match r {
                Ok(()) => println!("{target}/{name}: accepted in {:?}", t0.elapsed()),
                Err(e) => {
                    assert!(!e.trim().is_empty(), "{target}/{name}: an empty error");
                    println!("{target}/{name}: rejected in {:?}: {e}", t0.elapsed());
                }
            }
        }
    }
    println!("{seen} committed fuzz inputs");
    // The harness's scratch folder for this process.
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("trsr-fuzz-{}", std::process::id())),
    );
}

// ---- GGUF: every length, count and shape is checked against the file before use ----

/// A GGUF v3 header: `n_tensors`, then `kvs` (already encoded), then `tensors`.
fn gguf(n_tensors: u64, n_kv: u64, body: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b.extend(body);
    b
}

fn gguf_str(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend(s.as_bytes());
    b
}

/// Writes `bytes` as a .gguf and reads it the way a model load does; returns the error.
fn gguf_error(bytes: &[u8]) -> (String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.gguf");
    std::fs::write(&path, bytes).unwrap();
    let t0 = Instant::now();
    let e = match trsr::llm::gguf::read_gguf(&path) {
        Ok(_) => panic!("a hostile GGUF was accepted"),
        Err(e) => e.to_string(),
    };
    let took = t0.elapsed();
    assert!(
        e.contains("hostile.gguf"),
        "the error does not name the file: {e}"
    );
    println!("rejected in {took:?}");
    (e, took)
}

#[test]
fn gguf_claiming_2_pow_60_tensors_or_entries_fails_fast() {
    let (e, _) = gguf_error(&gguf(1 << 60, 0, &[0; 64]));
    assert!(
        e.contains("tensor") && e.contains("1152921504606846976"),
        "{e}"
    );
    let (e, _) = gguf_error(&gguf(0, 1 << 60, &[0; 64]));
    assert!(e.contains("metadata"), "{e}");
}

#[test]
fn gguf_array_of_2_pow_60_elements_fails_fast_naming_the_key() {
    let mut body = gguf_str("tokenizer.ggml.tokens");
    body.extend(9u32.to_le_bytes()); // array
    body.extend(8u32.to_le_bytes()); // of strings
    body.extend((1u64 << 60).to_le_bytes());
    body.extend([0u8; 32]);
    let (e, _) = gguf_error(&gguf(0, 1, &body));
    assert!(e.contains("tokenizer.ggml.tokens"), "{e}");
}

#[test]
fn gguf_metadata_arrays_are_bounded_in_total() {
    // Many arrays of bytes, each within the file, together past the cap: each array
    // element costs 32+ bytes of memory whatever its size on disk.
    let per = 1u64 << 20;
    let n = trsr::llm::gguf::GGUF_MAX_METADATA_ELEMENTS / per + 1;
    let mut body = Vec::new();
    for i in 0..n {
        body.extend(gguf_str(&format!("k{i}")));
        body.extend(9u32.to_le_bytes());
        body.extend(0u32.to_le_bytes()); // u8
        body.extend(per.to_le_bytes());
        body.extend(std::iter::repeat_n(0u8, per as usize));
    }
    let (e, _) = gguf_error(&gguf(0, n, &body));
    assert!(
        e.contains(&format!("k{}", n - 1)) && e.contains("in all"),
        "{e}"
    );
}

#[test]
fn gguf_string_of_2_pow_60_bytes_fails_fast_naming_the_key() {
    let mut body = gguf_str("general.name");
    body.extend(8u32.to_le_bytes());
    body.extend((1u64 << 60).to_le_bytes());
    body.extend([b'x'; 32]);
    let (e, _) = gguf_error(&gguf(0, 1, &body));
    assert!(e.contains("general.name"), "{e}");
}

fn tensor_entry(name: &str, dims: &[u64], dtype: u32, offset: u64) -> Vec<u8> {
    let mut b = gguf_str(name);
    b.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend(d.to_le_bytes());
    }
    b.extend(dtype.to_le_bytes());
    b.extend(offset.to_le_bytes());
    b
}

#[test]
fn gguf_tensor_shapes_and_offsets_cannot_overflow() {
    // 2^30 x 2^30 x 2^30 elements: the product overflows nothing but is past any model.
    let t = tensor_entry("token_embd.weight", &[1 << 30, 1 << 30, 1 << 30], 0, 0);
    let (e, _) = gguf_error(&gguf(1, 0, &t));
    assert!(
        e.contains("token_embd.weight") && e.contains("elements"),
        "{e}"
    );
    // Dimensions whose product overflows u64.
    let t = tensor_entry("w", &[u64::MAX, u64::MAX], 0, 0);
    let (e, _) = gguf_error(&gguf(1, 0, &t));
    assert!(e.contains("`w`"), "{e}");
    // An offset near u64::MAX: the end of the tensor overflows.
    let t = tensor_entry("w", &[4], 0, u64::MAX - 2);
    let (e, _) = gguf_error(&gguf(1, 0, &t));
    assert!(e.contains("`w`") && e.contains("truncated"), "{e}");
    // Five dimensions.
    let t = tensor_entry("w", &[1, 1, 1, 1, 1], 0, 0);
    let (e, _) = gguf_error(&gguf(1, 0, &t));
    assert!(e.contains("dimensions"), "{e}");
}

#[test]
fn gguf_alignment_zero_is_an_error_not_a_division_by_zero() {
    let mut body = gguf_str("general.alignment");
    body.extend(4u32.to_le_bytes()); // u32
    body.extend(0u32.to_le_bytes());
    let (e, _) = gguf_error(&gguf(0, 1, &body));
    assert!(e.contains("general.alignment"), "{e}");
}

#[test]
fn gguf_layer_count_beyond_the_tensors_fails_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    common::write_tiny(&path, &common::TinyOpts::default());
    // Rewrite llama.block_count (u32) to 2^32 - 1 in place.
    let mut bytes = std::fs::read(&path).unwrap();
    let key = gguf_str("llama.block_count");
    let at = bytes
        .windows(key.len())
        .position(|w| w == key.as_slice())
        .expect("block_count key")
        + key.len();
    assert_eq!(&bytes[at..at + 4], &4u32.to_le_bytes(), "a u32 value");
    bytes[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let opts = trsr::llm::LoadOptions {
        device: trsr::llm::DevicePref::Cpu,
        threads: Some(1),
        ..Default::default()
    };
    let t0 = Instant::now();
    let e = match trsr::llm::Engine::load_path(&path, &opts) {
        Ok(_) => panic!("a GGUF claiming 2^32 layers loaded"),
        Err(e) => format!("{e:#}"),
    };
    println!("rejected in {:?}", t0.elapsed());
    assert!(
        e.contains("tiny.gguf") && e.contains("llama.block_count") && e.contains("4294967295"),
        "{e}"
    );
}

// ---- chat templates: fuel and recursion ----

#[test]
fn a_chat_template_that_loops_runs_out_of_fuel_with_a_clear_error() {
    use trsr::llm::chat::ChatTemplate;
    let t = ChatTemplate::from_str(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "",
        "",
    )
    .unwrap();
    let t0 = Instant::now();
    let e = t
        .render(&[trsr::lm::ChatMessage::user("hi")], true)
        .unwrap_err()
        .to_string();
    println!("out of fuel in {:?}", t0.elapsed());
    assert!(e.contains("did not finish within"), "{e}");
    // A macro that calls itself stops at the recursion limit.
    let t = ChatTemplate::from_str(
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "",
        "",
    )
    .unwrap();
    let e = t
        .render(&[trsr::lm::ChatMessage::user("hi")], true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("recursion"), "{e}");
}

// ---- safetensors, RON, line lengths ----

#[test]
fn safetensors_header_claiming_2_pow_60_bytes_fails_fast_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("adapter_config.json"),
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/lora/adapter/adapter_config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut st = (1u64 << 60).to_le_bytes().to_vec();
    st.extend(b"{}");
    std::fs::write(dir.path().join("adapter_model.safetensors"), &st).unwrap();
    let t0 = Instant::now();
    let e = match trsr::llm::lora::Adapter::load(dir.path()) {
        Ok(_) => panic!("a hostile adapter was accepted"),
        Err(e) => e.to_string(),
    };
    println!("rejected in {:?}", t0.elapsed());
    assert!(e.contains("adapter_model.safetensors"), "{e}");
}

#[test]
fn deeply_nested_project_ron_is_an_error_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.trsr.ron");
    let depth = 100_000;
    let text = format!(
        "(version: 1, x: {}{})",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    std::fs::write(&path, text).unwrap();
    let e = trsr::project::Project::load(&path).unwrap_err().to_string();
    assert!(e.contains("deep.trsr.ron"), "{e}");
}

#[test]
fn a_dataset_line_past_the_limit_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(65 << 20);
    std::fs::write(
        dir.path().join("news.tsv"),
        format!("N1\tnews\tsub\t{long}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("behaviors.tsv"),
        "1\tU1\t11/11/2019 9:05:58 AM\tN1\tN1-1\n",
    )
    .unwrap();
    let e = trsr::data::load_dir(
        dir.path(),
        trsr::data::FormatChoice::Auto,
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("news.tsv") && e.contains("longer than"), "{e}");
}

#[test]
fn a_server_event_past_the_limit_is_an_error() {
    let big = format!(
        "data: {}\n\n",
        "x".repeat(trsr::remote::wire::MAX_SSE_EVENT_BYTES + 10)
    );
    let mut events = trsr::remote::wire::SseReader::new(std::io::BufReader::new(big.as_bytes()));
    let e = events.next().unwrap().unwrap_err().to_string();
    assert!(e.contains("longer than"), "{e}");
}

/// Writes the seeds `scripts/fuzz.sh` cannot take from files in the repository (tiny
/// GGUF models of each architecture, their tokenizer as tokenizer.json, a new project) into
/// `$TRSR_FUZZ_SEEDS/{gguf,tokenizer,project}`. Run by the script; not a test.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let Ok(out) = std::env::var("TRSR_FUZZ_SEEDS") else {
        common::skipped("TRSR_FUZZ_SEEDS is not set (scripts/fuzz.sh sets it)");
        return;
    };
    let out = PathBuf::from(out);
    for t in ["gguf", "tokenizer", "project"] {
        std::fs::create_dir_all(out.join(t)).unwrap();
    }
    for arch in ["llama", "qwen2", "qwen3"] {
        let path = out.join("gguf").join(format!("tiny-{arch}.gguf"));
        common::write_tiny(
            &path,
            &common::TinyOpts {
                arch,
                ..Default::default()
            },
        );
        std::fs::copy(
            &path,
            out.join("tokenizer").join(format!("tiny-{arch}.gguf")),
        )
        .unwrap();
    }
    let project = trsr::project::Project::new().to_ron().unwrap();
    std::fs::write(out.join("project/new.trsr.ron"), project).unwrap();
    let (content, _f) = trsr::llm::gguf::read_gguf(&out.join("gguf/tiny-llama.gguf")).unwrap();
    let tok = trsr::llm::tokenizer::Tokenizer::from_gguf(&content).unwrap();
    tok.inner()
        .save(out.join("tokenizer/tokenizer.json"), false)
        .unwrap();
}
