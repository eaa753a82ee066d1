//! Helpers shared by the test crates, in one place: a tiny random-weight llama GGUF
//! written on the spot (byte-level BPE vocabulary with a few merges, a chat template),
//! fast enough to load, generate, score and train in milliseconds; small prepared
//! datasets; the one lookup of the real default model, with the skip policy; the
//! scripted model for plumbing tests (`scripted.rs`); the window's test harness (`ui.rs`).

#![allow(dead_code)]

pub mod scripted;
pub mod ui;

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

pub const HIDDEN: usize = 64;
pub const N_HEAD: usize = 4;
pub const N_KV: usize = 2;
pub const FF: usize = 128;
pub const N_LAYER: usize = 2;
pub const CONTEXT: u32 = 96;

/// GPT-2's byte-to-unicode table.
fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs.iter()) {
        table[*b as usize] = char::from_u32(*c).unwrap();
    }
    table
}

pub struct TinyOpts {
    pub arch: &'static str,
    pub zero_output_norm: bool,
    /// The context length the GGUF declares.
    pub context: u32,
    /// A separate output matrix (`output.weight`, Q8_0) instead of the tied embeddings.
    pub untied_head: bool,
}

impl Default for TinyOpts {
    fn default() -> Self {
        Self {
            arch: "llama",
            zero_output_norm: false,
            context: CONTEXT,
            untied_head: false,
        }
    }
}

fn tensor(rng: &mut rand_chacha::ChaCha8Rng, rows: usize, cols: usize, scale: f32) -> Tensor {
    let data: Vec<f32> = (0..rows * cols)
        .map(|_| (rng.random::<f32>() - 0.5) * 2.0 * scale)
        .collect();
    Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
}

/// Writes the tiny model to `path`.
pub fn write_tiny(path: &Path, o: &TinyOpts) {
    // Vocabulary: 3 specials (id 0 is EOS), 256 byte tokens, a few merges.
    let table = byte_chars();
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    let mut types: Vec<i32> = vec![3, 3, 3];
    for c in &table {
        tokens.push(c.to_string());
        types.push(1);
    }
    let sp = table[b' ' as usize];
    let merges = [
        ("y", "e"),
        ("ye", "s"),
        ("n", "o"),
        (&*sp.to_string(), "t"),
        ("t", "h"),
        ("th", "e"),
    ];
    let mut merge_strs = Vec::new();
    for (a, b) in merges.iter() {
        tokens.push(format!("{a}{b}"));
        types.push(1);
        merge_strs.push(format!("{a} {b}"));
    }
    let vocab = tokens.len();
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    // Hyper-parameter keys are prefixed by the architecture (unknown ones use llama's).
    let key_arch = if o.arch == "falcon" { "llama" } else { o.arch };
    let key = |k: &str| format!("{key_arch}.{k}");
    let md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(o.arch.into())),
        ("general.name".into(), Value::String("tiny".into())),
        (key("attention.head_count"), Value::U32(N_HEAD as u32)),
        (key("attention.head_count_kv"), Value::U32(N_KV as u32)),
        (key("embedding_length"), Value::U32(HIDDEN as u32)),
        (key("block_count"), Value::U32(N_LAYER as u32)),
        (key("context_length"), Value::U32(o.context)),
        (key("feed_forward_length"), Value::U32(FF as u32)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        (key("rope.freq_base"), Value::F32(10000.0)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(merge_strs.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
        (
            "tokenizer.chat_template".into(),
            Value::String(template.into()),
        ),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let q = |t: Tensor| QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
    let f = |t: Tensor| QTensor::quantize(&t, GgmlDType::F32).unwrap();
    let hd = HIDDEN / N_HEAD;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    tensors.push((
        "token_embd.weight".into(),
        q(tensor(&mut rng, vocab, HIDDEN, 1.0)),
    ));
    let norm = if o.zero_output_norm {
        Tensor::zeros(HIDDEN, candle_core::DType::F32, &Device::Cpu).unwrap()
    } else {
        Tensor::ones(HIDDEN, candle_core::DType::F32, &Device::Cpu).unwrap()
    };
    tensors.push(("output_norm.weight".into(), f(norm)));
    if o.untied_head {
        tensors.push((
            "output.weight".into(),
            q(tensor(&mut rng, vocab, HIDDEN, 1.0)),
        ));
    }
    for i in 0..N_LAYER {
        let p = format!("blk.{i}");
        let ones = Tensor::ones(HIDDEN, candle_core::DType::F32, &Device::Cpu).unwrap();
        tensors.push((format!("{p}.attn_norm.weight"), f(ones.clone())));
        tensors.push((format!("{p}.ffn_norm.weight"), f(ones)));
        tensors.push((
            format!("{p}.attn_q.weight"),
            q(tensor(&mut rng, N_HEAD * hd, HIDDEN, 0.3)),
        ));
        tensors.push((
            format!("{p}.attn_k.weight"),
            q(tensor(&mut rng, N_KV * hd, HIDDEN, 0.3)),
        ));
        tensors.push((
            format!("{p}.attn_v.weight"),
            q(tensor(&mut rng, N_KV * hd, HIDDEN, 0.3)),
        ));
        tensors.push((
            format!("{p}.attn_output.weight"),
            q(tensor(&mut rng, HIDDEN, N_HEAD * hd, 0.3)),
        ));
        tensors.push((
            format!("{p}.ffn_gate.weight"),
            q(tensor(&mut rng, FF, HIDDEN, 0.3)),
        ));
        tensors.push((
            format!("{p}.ffn_up.weight"),
            q(tensor(&mut rng, FF, HIDDEN, 0.3)),
        ));
        tensors.push((
            format!("{p}.ffn_down.weight"),
            q(tensor(&mut rng, HIDDEN, FF, 0.3)),
        ));
        if o.arch == "qwen2" {
            for (name, n) in [("q", N_HEAD * hd), ("k", N_KV * hd), ("v", N_KV * hd)] {
                let b = tensor(&mut rng, 1, n, 0.5).reshape(n).unwrap();
                tensors.push((format!("{p}.attn_{name}.bias"), f(b)));
            }
        }
        if o.arch == "qwen3" {
            for name in ["q", "k"] {
                let w = (tensor(&mut rng, 1, hd, 0.5).reshape(hd).unwrap() + 1.0).unwrap();
                tensors.push((format!("{p}.attn_{name}_norm.weight"), f(w)));
            }
        }
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &md_refs, &t_refs).unwrap();
}

/// Writes a tiny model with a context long enough for the recommender's prompts
/// (training and scoring) and returns its path.
pub fn write_tiny_for_prompts(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tiny.gguf");
    write_tiny(
        &path,
        &TinyOpts {
            context: 4096,
            ..TinyOpts::default()
        },
    );
    path
}

/// A small prepared folder (items.jsonl + cases.jsonl) of 7 cases, each with 6
/// history items, a target and 3 negatives; with `split`, labelled `train` c1-c4,
/// `val` c5-c6, `test` c7 (without, no case has a split).
pub fn write_dataset(dir: &Path, split: bool) {
    let topics = ["football", "elections", "recipes", "space", "markets"];
    let mut items = String::new();
    for i in 0..30 {
        items.push_str(&format!(
            "{{\"id\": \"N{i}\", \"category\": \"{}\", \"title\": \"Story {i} on {}\"}}\n",
            topics[i % 5],
            topics[i % 5]
        ));
    }
    std::fs::write(dir.join("items.jsonl"), items).unwrap();
    let mut cases = String::new();
    for u in 1..=7usize {
        let label = match u {
            1..=4 => "train",
            5 | 6 => "val",
            _ => "test",
        };
        let split = if split {
            format!(", \"split\": \"{label}\"")
        } else {
            String::new()
        };
        let hist: Vec<String> = (0..6)
            .map(|i| format!("\"N{}\"", (u * 3 + i) % 24))
            .collect();
        cases.push_str(&format!(
            "{{\"case\": \"c{u}\", \"user\": \"U{u}\", \"history\": [{}], \"target\": \"N24\", \
             \"negatives\": [\"N25\", \"N26\", \"N27\"]{split}}}\n",
            hist.join(", "),
        ));
    }
    std::fs::write(dir.join("cases.jsonl"), cases).unwrap();
}

/// [`write_dataset`] with splits.
pub fn write_split_dataset(dir: &Path) {
    write_dataset(dir, true);
}

/// The real default model (SmolLM2-135M-Instruct Q4_1), found the one way the program
/// finds it (`$TRSR_MODEL_DIR`, else the user cache folder: `trsr fetch-model
/// --print-path`). Absent: the calling test is skipped with a line saying so, unless
/// `TRSR_REQUIRE_MODEL=1` (set by `.ci/run`, which fetches the model), where a missing
/// model fails the test instead of letting it pass silently.
pub fn default_model() -> Option<std::path::PathBuf> {
    let path = trsr::llm::fetch::default_model_path();
    if path.is_file() {
        return Some(path);
    }
    let required = std::env::var("TRSR_REQUIRE_MODEL").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "the default model is not at {} and TRSR_REQUIRE_MODEL=1 (run `trsr fetch-model`)",
        path.display()
    );
    skipped(&format!(
        "the default model is not at {} (run `trsr fetch-model`)",
        path.display()
    ));
    None
}

/// Says, in the test output, that the running test (named after its thread, as the
/// test harness names it) was skipped and why. Printed to stdout and stderr so it shows
/// with `--nocapture` and in CI's log.
pub fn skipped(why: &str) {
    let name = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    eprintln!("SKIPPED {name}: {why}");
}

/// A prepared dataset of 3 users with 12, 7 and 20 history items (40 news items, 3
/// negatives each), for the window's tests.
pub fn three_users_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut items = String::new();
    let topics = ["football", "elections", "recipes", "space", "markets"];
    for i in 0..40 {
        items.push_str(&format!(
            "{{\"id\": \"N{i}\", \"category\": \"{}\", \"title\": \"Story {i} about {}\"}}\n",
            topics[i % 5],
            topics[i % 5]
        ));
    }
    std::fs::write(dir.path().join("items.jsonl"), items).unwrap();
    let mut cases = String::new();
    for (u, len) in [(1, 12), (2, 7), (3, 20)] {
        let hist: Vec<String> = (0..len).map(|i| format!("\"N{}\"", (i * u) % 35)).collect();
        cases.push_str(&format!(
            "{{\"case\": \"c{u}\", \"user\": \"U{u}\", \"history\": [{}], \"target\": \"N{}\", \"negatives\": [\"N36\", \"N37\", \"N38\"]}}\n",
            hist.join(", "),
            35 + u
        ));
    }
    std::fs::write(dir.path().join("cases.jsonl"), cases).unwrap();
    dir
}

/// Runs the `trsr` binary with `args`: (success, stdout, stderr).
pub fn trsr(args: &[&str]) -> (bool, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_trsr"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
