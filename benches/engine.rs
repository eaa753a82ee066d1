//! Engine benchmark: ours against llama.cpp on the same GGUF and thread count, in one run.
//!
//! Run through `scripts/bench_engine.sh` (sets up llama-cpp-python), or directly:
//! `TRSR_BENCH_MODEL=m.gguf TRSR_BENCH_THREADS=2 TRSR_BENCH_PYTHON=venv/bin/python cargo bench --bench engine`
//! (without TRSR_BENCH_PYTHON only our figures are printed).
//!
//! Workload (DESIGN.md's prompt shape): a ~300-token prompt for prefill; greedy decode of
//! 64 tokens after it; 3 users x 21 candidates, each user a ~300-token shared prefix and
//! ~40 tokens per candidate, the prefix reused by both engines. Both engines get the same
//! token ids.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use trsr::llm::{Engine, LoadOptions};
use trsr::lm::{ChatMessage, LanguageModel, SamplingParams};

const USERS: usize = 3;
const CANDIDATES: usize = 21;
const DECODE_TOKENS: usize = 64;
const REPEATS: usize = 3;

const TITLES: [&str; 12] = [
    "Lakers rally late to beat the Celtics in overtime thriller",
    "Ten easy weeknight pasta recipes the whole family will love",
    "Stocks slide as investors weigh new inflation figures",
    "Scientists find water ice in craters near the lunar south pole",
    "The best budget smartphones you can buy this year",
    "City council approves plan for new downtown bike lanes",
    "How to keep your houseplants alive through the winter",
    "Star quarterback signs record contract extension",
    "Airline adds nonstop routes to three European capitals",
    "New study links daily walks to better sleep quality",
    "Museum reopens with a sweeping exhibit of impressionist art",
    "Chef shares secrets for the perfect roast chicken",
];
const CATS: [(&str, &str); 6] = [
    ("sports", "basketball"),
    ("foodanddrink", "recipes"),
    ("finance", "markets"),
    ("news", "science"),
    ("lifestyle", "tech"),
    ("travel", "airlines"),
];

fn item(i: usize) -> String {
    let (c, s) = CATS[i % CATS.len()];
    format!(
        "id: N{}; category: {c}; subcategory: {s}; title: {}",
        10_000 + i * 37,
        TITLES[i % TITLES.len()]
    )
}

struct Workload {
    prefill: Vec<u32>,
    users: Vec<(Vec<u32>, Vec<Vec<u32>>)>,
}

fn workload(e: &Engine) -> anyhow::Result<Workload> {
    let instruction = "You are a news recommender. The preference summary describes the user's long-term interests; the recent items show short-term interests. Decide whether the user will click the candidate item. Answer yes or no.";
    let summary = |u: usize| {
        format!(
            "The user follows {} closely, especially late-game results and player news, and regularly reads {} content such as quick recipes and cooking tips. They also check {} headlines and occasionally open stories about {}. They prefer short practical articles with clear titles, skip celebrity gossip, and read more on weekday evenings than on weekends.",
            CATS[u % 6].0, CATS[(u + 1) % 6].0, CATS[(u + 2) % 6].0, CATS[(u + 3) % 6].1
        )
    };
    let mut users = Vec::new();
    for u in 0..USERS {
        let recent: Vec<String> = (0..5)
            .map(|k| format!("{}. {}", k + 1, item(u * 5 + k)))
            .collect();
        let body = format!(
            "{instruction}\n\n## Preference summary\n{}\n\n## Recent items\n{}\n\n## Candidate item\n",
            summary(u),
            recent.join("\n")
        );
        // The prefix is the chat rendering up to the candidate; the suffix closes the turn.
        let rendered = e.render_chat(&[ChatMessage::user(format!("{body}@@CANDIDATE@@"))])?;
        let (head, tail) = rendered
            .split_once("@@CANDIDATE@@")
            .context("template lost the marker")?;
        let prefix = e.encode_prompt(head)?;
        let suffixes = (0..CANDIDATES)
            .map(|c| {
                let text = format!(
                    "{}\n\nWill the user click the candidate item? Answer yes or no.{tail}",
                    item(100 + u * CANDIDATES + c)
                );
                e.tokenizer().encode(&text, false)
            })
            .collect::<Result<Vec<_>, _>>()?;
        users.push((prefix, suffixes));
    }
    let mut prefill = users[0].0.clone();
    prefill.extend_from_slice(&users[0].1[0]);
    Ok(Workload { prefill, users })
}

struct Figures {
    prefill_tps: f64,
    decode_tps: f64,
    cands_per_s: f64,
    decoded: Vec<u32>,
    p_yes: Vec<f32>,
}

fn ours(e: &mut Engine, w: &Workload) -> anyhow::Result<Figures> {
    // Warm-up.
    e.start_ids(w.prefill[..32].to_vec(), &SamplingParams::greedy(1))?;
    let mut best = f64::MAX;
    for _ in 0..REPEATS {
        let g = e.start_ids(w.prefill.clone(), &SamplingParams::greedy(1))?;
        best = best.min(e.finish(g).prefill_ms);
    }
    let prefill_tps = w.prefill.len() as f64 / (best / 1000.0);

    let mut g = e.start_ids(w.prefill.clone(), &SamplingParams::greedy(DECODE_TOKENS))?;
    let t0 = Instant::now();
    let mut decoded = Vec::new();
    while let Some(d) = e.next_token(&mut g)? {
        decoded.push(d.token);
    }
    let decode_tps = decoded.len() as f64 / t0.elapsed().as_secs_f64();
    e.finish(g);

    let mut p_yes = Vec::new();
    let t0 = Instant::now();
    for (prefix, suffixes) in &w.users {
        e.clear_prefix_cache();
        p_yes.extend(e.score_ids(prefix, suffixes)?);
    }
    let cands_per_s = p_yes.len() as f64 / t0.elapsed().as_secs_f64();
    Ok(Figures {
        prefill_tps,
        decode_tps,
        cands_per_s,
        decoded,
        p_yes,
    })
}

fn llama_cpp(
    python: &str,
    model: &PathBuf,
    threads: usize,
    w: &Workload,
    e: &Engine,
) -> anyhow::Result<Figures> {
    let users: Vec<serde_json::Value> = w
        .users
        .iter()
        .map(|(p, s)| serde_json::json!({"prefix": p, "suffixes": s}))
        .collect();
    let (yes_id, no_id) = e.answer_ids();
    let spec = serde_json::json!({
        "n_ctx": 2048,
        "repeats": REPEATS,
        "prefill": w.prefill,
        "decode_tokens": DECODE_TOKENS,
        "users": users,
        "yes_id": yes_id,
        "no_id": no_id,
    });
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("workload.json");
    std::fs::write(&path, serde_json::to_vec(&spec)?)?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/bench_llamacpp_engine.py"
    );
    let out = Command::new(python)
        .args([script, "--model"])
        .arg(model)
        .args(["--threads", &threads.to_string(), "--workload"])
        .arg(&path)
        .output()
        .with_context(|| format!("running {python} {script}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "llama.cpp side failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading llama.cpp figures")?;
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(Figures {
        prefill_tps: f("prefill_tps"),
        decode_tps: f("decode_tps"),
        cands_per_s: f("cands_per_s"),
        decoded: v["decoded"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as u32)
                    .collect()
            })
            .unwrap_or_default(),
        p_yes: v["p_yes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_f64())
                    .map(|x| x as f32)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn main() -> anyhow::Result<()> {
    let model = std::env::var_os("TRSR_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(trsr::llm::fetch::default_model_path);
    if !model.is_file() {
        eprintln!(
            "note: model {} absent; set TRSR_BENCH_MODEL or run `trsr fetch-model`",
            model.display()
        );
        return Ok(());
    }
    let threads: usize = std::env::var("TRSR_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let mut e = Engine::load_path(
        &model,
        &LoadOptions {
            threads: Some(threads),
            ..LoadOptions::default()
        },
    )?;
    let w = workload(&e)?;
    let prefix_avg = w.users.iter().map(|u| u.0.len()).sum::<usize>() as f64 / w.users.len() as f64;
    let cand_avg = w
        .users
        .iter()
        .flat_map(|u| u.1.iter().map(|s| s.len()))
        .sum::<usize>() as f64
        / (USERS * CANDIDATES) as f64;
    println!(
        "model: {} ({})",
        e.info().identity.name,
        e.info().weight_form
    );
    println!("threads: {threads}; device: {}", e.info().device);
    println!(
        "workload: prefill {} tokens; decode {DECODE_TOKENS} tokens greedy; scoring {USERS} users x {CANDIDATES} candidates, prefix {prefix_avg:.0} tokens, candidate {cand_avg:.0} tokens (prefix reused by both engines)",
        w.prefill.len()
    );
    let theirs = match std::env::var("TRSR_BENCH_PYTHON") {
        Ok(py) => Some(llama_cpp(&py, &model, threads, &w, &e)?),
        Err(_) => {
            println!(
                "(TRSR_BENCH_PYTHON unset: llama.cpp side skipped; use scripts/bench_engine.sh)"
            );
            None
        }
    };
    let ours = ours(&mut e, &w)?;
    println!(
        "{:<26} {:>14} {:>14} {:>8}",
        "", "trsr (candle)", "llama.cpp", "ratio"
    );
    let row = |name: &str, a: f64, b: Option<f64>| match b {
        Some(b) => println!("{name:<26} {a:>14.1} {b:>14.1} {:>7.2}x", a / b),
        None => println!("{name:<26} {a:>14.1} {:>14} {:>8}", "-", "-"),
    };
    row(
        "prefill tok/s",
        ours.prefill_tps,
        theirs.as_ref().map(|t| t.prefill_tps),
    );
    row(
        "decode tok/s",
        ours.decode_tps,
        theirs.as_ref().map(|t| t.decode_tps),
    );
    row(
        "scoring candidates/s",
        ours.cands_per_s,
        theirs.as_ref().map(|t| t.cands_per_s),
    );
    if let Some(t) = &theirs {
        let same = ours
            .decoded
            .iter()
            .zip(&t.decoded)
            .take_while(|(a, b)| a == b)
            .count();
        let max_diff = ours
            .p_yes
            .iter()
            .zip(&t.p_yes)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!(
            "agreement: greedy decode identical for the first {same} of {} tokens; P(yes) max |ours - llama.cpp| = {max_diff:.4} over {} candidates",
            ours.decoded.len(),
            ours.p_yes.len()
        );
    }
    Ok(())
}
