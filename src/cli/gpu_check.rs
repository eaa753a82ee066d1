//! `trsr gpu-check`: the engine on a GPU checked against the CPU engine on one model, and
//! its speed. It lives in the binary because the machine with the GPU may have no Rust
//! toolchain (scripts/gpu_check.sh carries the binary and the model there and runs this).
//!
//! With `--device cpu` it checks the generic path (candle's operations, the code a GPU
//! runs, forced onto the CPU) against the CPU kernels, so every comparison also runs here.
//!
//! Checks, each printed as a `PASS`/`FAIL` line: load; greedy decode of `--tokens` tokens
//! equal to the CPU engine's (a divergence passes only on a near tie of the CPU engine's
//! logits, `--logit-tolerance`); P(yes) of a few candidates within `--p-yes-tolerance`;
//! one LoRA step (loss equal to the CPU trainer's within 2% before the step, finite and
//! changed after it). On the device alone: sampling with small copies draws the tokens the
//! whole-vector copy draws (greedy, the reference preset, the workbench defaults), and a
//! LoRA step with the frozen base in bf16 (where the GPU has bf16) agrees with f32's within
//! 5%. In a build with flash attention (the `flash-attn` feature) on a GPU it fits, the
//! fused prefill agrees with the matrix-product path on P(yes) and the last hidden state.
//! `--bench` adds prefill and decode tokens/s (prefill also without flash attention where
//! it is on) and candidates/s.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use crate::llm::lora::{LoraConfig, Target};
use crate::llm::source::ModelRef;
use crate::llm::train::{OptimSettings, TrainExample, Trainer};
use crate::llm::{DevicePref, Engine, LoadOptions};
use crate::lm::{ChatMessage, LanguageModel, SamplingParams};

#[derive(clap::Args, Debug, Clone)]
pub struct GpuCheckArgs {
    /// Model: `default`, a path to a GGUF file, or `hf:owner/repo/file.gguf`.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// The device under test: `cuda`, `cuda:N`, or `cpu` (the generic path on the CPU).
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// Greedy tokens compared with the CPU engine.
    #[arg(long, default_value_t = 16)]
    pub tokens: usize,
    /// A greedy divergence passes when the CPU engine's logits of its token and the
    /// device's token differ by at most this (a near tie). The CPU engine's int8 kernels
    /// and candle's quantized kernels round activations differently: on the default model
    /// their logits differ by up to ~0.9, a broken kernel by far more.
    #[arg(long, default_value_t = 1.0)]
    pub logit_tolerance: f32,
    /// Largest accepted difference in P(yes) from the CPU engine (the generic path on the
    /// CPU differs by up to ~0.03 on the default model).
    #[arg(long, default_value_t = 0.05)]
    pub p_yes_tolerance: f32,
    /// Candidates per user in the P(yes) comparison (two users).
    #[arg(long, default_value_t = 8)]
    pub candidates: usize,
    /// Skip the comparisons with the CPU engine (load and benchmark only): for models too
    /// large to run on the CPU in the time.
    #[arg(long)]
    pub no_compare: bool,
    /// Also measure prefill and decode tokens/s and candidates/s on the device.
    #[arg(long)]
    pub bench: bool,
    /// Users of 21 candidates each scored in the benchmark.
    #[arg(long, default_value_t = 4)]
    pub bench_users: usize,
    /// Tokens decoded in the benchmark.
    #[arg(long, default_value_t = 64)]
    pub decode_tokens: usize,
    /// Append the report (markdown) to this file as well.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// CPU threads of the CPU engine (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// One check's outcome.
struct Check {
    name: &'static str,
    pass: bool,
    detail: String,
}

pub fn run(args: GpuCheckArgs) -> anyhow::Result<()> {
    let pref: DevicePref = args.device.parse().context("--device")?;
    if matches!(pref, DevicePref::Auto) {
        anyhow::bail!("--device: name the device under test (cuda, cuda:N or cpu), not auto");
    }
    let model: ModelRef = args
        .model
        .parse()
        .map_err(|e| anyhow::anyhow!("--model {}: {e}", args.model))?;
    let path = model
        .resolve()
        .with_context(|| format!("finding the model `{}`", args.model))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let mut report = format!("## gpu-check: {name} on {}\n\n", args.device);
    report.push_str(&format!(
        "- trsr {} (CUDA build: {})\n",
        env!("CARGO_PKG_VERSION"),
        crate::llm::device::cuda_build_version()
    ));
    let mut checks = Vec::new();

    let t0 = Instant::now();
    let opts = LoadOptions {
        device: pref.clone(),
        threads: args.threads,
        generic_kernels: pref == DevicePref::Cpu,
        ..LoadOptions::default()
    };
    let mut dev = match Engine::load_path(&path, &opts) {
        Ok(e) => e,
        Err(e) => {
            let c = Check {
                name: "load",
                pass: false,
                detail: format!("{e:#}"),
            };
            print_check(&c, &mut report);
            finish(&args, &report)?;
            anyhow::bail!("the model did not load on {}", args.device);
        }
    };
    print_check(
        &Check {
            name: "load",
            pass: true,
            detail: format!(
                "{} on {} in {:.0} ms ({}; numerics `{}`)",
                name,
                dev.info().device,
                t0.elapsed().as_secs_f64() * 1000.0,
                dev.info().weight_form,
                dev.numerics()
            ),
        },
        &mut report,
    );
    let w = workload(&dev, args.candidates, args.bench_users)?;

    if !args.no_compare {
        let ref_opts = LoadOptions {
            device: DevicePref::Cpu,
            threads: args.threads,
            generic_kernels: false,
            ..LoadOptions::default()
        };
        let mut cpu = Engine::load_path(&path, &ref_opts)
            .with_context(|| format!("loading {} on the CPU for reference", path.display()))?;
        report.push_str(&format!(
            "- reference: {} ({}; numerics `{}`)\n",
            cpu.info().device,
            cpu.info().weight_form,
            cpu.numerics()
        ));
        checks.push(greedy_check(&mut cpu, &mut dev, &w, &args)?);
        print_check(checks.last().expect("pushed"), &mut report);
        checks.push(p_yes_check(&mut cpu, &mut dev, &w, &args)?);
        print_check(checks.last().expect("pushed"), &mut report);
        checks.push(lora_check(&cpu, &dev, &w)?);
        print_check(checks.last().expect("pushed"), &mut report);
    }
    // On the device alone: the small-copy sampler against the whole-vector copy, and a
    // LoRA step with the base in bf16.
    checks.push(sampling_check(&mut dev, &w, args.tokens.max(16))?);
    print_check(checks.last().expect("pushed"), &mut report);
    checks.push(bf16_lora_check(&dev, &w)?);
    print_check(checks.last().expect("pushed"), &mut report);
    checks.push(flash_check(&mut dev, &w, &args)?);
    print_check(checks.last().expect("pushed"), &mut report);

    if args.bench {
        let b = bench(&mut dev, &w, args.decode_tokens)?;
        let unfused = match b.prefill_unfused_tps {
            Some(t) => format!("; {t:.0} tok/s without flash attention"),
            None => String::new(),
        };
        let line = format!(
            "bench {name} on {}: prefill {:.0} tok/s ({} tokens{unfused}), decode {:.1} tok/s \
             (sampled: {:.1} tok/s with small copies, {:.1} with whole copies), \
             {:.1} candidates/s ({} users x {} candidates)",
            dev.info().device,
            b.prefill_tps,
            w.prefill.len(),
            b.decode_tps,
            b.sampled_tps,
            b.sampled_full_tps,
            b.cands_per_s,
            w.bench_users.len(),
            BENCH_CANDIDATES
        );
        println!("{line}");
        report.push_str(&format!("- {line}\n"));
    }
    finish(&args, &report)?;
    let failed: Vec<&str> = checks.iter().filter(|c| !c.pass).map(|c| c.name).collect();
    if !failed.is_empty() {
        anyhow::bail!("gpu-check failed: {}", failed.join(", "));
    }
    Ok(())
}

fn print_check(c: &Check, report: &mut String) {
    let tag = if c.pass { "PASS" } else { "FAIL" };
    println!("{tag} {}: {}", c.name, c.detail);
    report.push_str(&format!("- **{tag}** {}: {}\n", c.name, c.detail));
}

fn finish(args: &GpuCheckArgs, report: &str) -> anyhow::Result<()> {
    if let Some(p) = &args.report {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("opening {}", p.display()))?;
        writeln!(f, "{report}").with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

const BENCH_CANDIDATES: usize = 21;

/// Prompts in the recommender's shape (a user's prefix, one suffix per candidate).
struct Workload {
    /// For the comparisons: two users with `--candidates` candidates each.
    users: Vec<(Vec<u32>, Vec<Vec<u32>>)>,
    /// For the benchmark: `--bench-users` users with BENCH_CANDIDATES candidates each.
    bench_users: Vec<(Vec<u32>, Vec<Vec<u32>>)>,
    /// One user's prefix and first suffix, for prefill and the LoRA step.
    prefill: Vec<u32>,
    /// A chat prompt that invites a long answer, for greedy decode.
    story: Vec<u32>,
}

fn workload(e: &Engine, candidates: usize, bench_users: usize) -> anyhow::Result<Workload> {
    const TOPICS: [(&str, &str); 6] = [
        ("sports", "basketball"),
        ("foodanddrink", "recipes"),
        ("finance", "markets"),
        ("news", "science"),
        ("lifestyle", "tech"),
        ("travel", "airlines"),
    ];
    const TITLES: [&str; 5] = [
        "Late rally lifts the home side in a tense overtime win",
        "Five weeknight dinners that take twenty minutes",
        "Markets close higher as rate fears ease",
        "Researchers map a new deep-sea vent ecosystem",
        "Airlines add routes for the summer season",
    ];
    let item = |i: usize| {
        let (c, s) = TOPICS[i % TOPICS.len()];
        format!(
            "id: N{}; category: {c}; subcategory: {s}; title: {}",
            10_000 + i * 37,
            TITLES[i % TITLES.len()]
        )
    };
    let user = |u: usize, n: usize| -> anyhow::Result<(Vec<u32>, Vec<Vec<u32>>)> {
        let recent: Vec<String> = (0..5)
            .map(|k| format!("{}. {}", k + 1, item(u * 5 + k)))
            .collect();
        let body = format!(
            "You are a news recommender. Decide whether the user will click the candidate \
             item. Answer yes or no.\n\n## Preference summary\nThe user follows {} closely \
             and regularly reads {} content; they prefer short practical articles.\n\n\
             ## Recent items\n{}\n\n## Candidate item\n",
            TOPICS[u % 6].0,
            TOPICS[(u + 1) % 6].0,
            recent.join("\n")
        );
        let rendered = e.render_chat(&[ChatMessage::user(format!("{body}@@CANDIDATE@@"))])?;
        let (head, tail) = rendered
            .split_once("@@CANDIDATE@@")
            .context("the chat template lost the candidate marker")?;
        let prefix = e.encode_prompt(head)?;
        let suffixes = (0..n)
            .map(|c| {
                let text = format!(
                    "{}\n\nWill the user click the candidate item? Answer yes or no.{tail}",
                    item(100 + u * n + c)
                );
                e.tokenizer().encode(&text, false)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((prefix, suffixes))
    };
    let users = (0..2)
        .map(|u| user(u, candidates.max(1)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bench_users = (0..bench_users)
        .map(|u| user(u + 2, BENCH_CANDIDATES))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut prefill = users[0].0.clone();
    prefill.extend_from_slice(&users[0].1[0]);
    let story = e.render_chat(&[ChatMessage::user(
        "Write a long, detailed story about a dragon who learns to cook, with many characters.",
    )])?;
    Ok(Workload {
        users,
        bench_users,
        prefill,
        story: e.encode_prompt(&story)?,
    })
}

/// Greedy tokens, and the logits each was chosen from.
fn greedy(e: &mut Engine, prompt: &[u32], n: usize) -> anyhow::Result<Vec<(u32, Vec<f32>)>> {
    let mut g = e.start_ids(prompt.to_vec(), &SamplingParams::greedy(n))?;
    let mut out = Vec::with_capacity(n);
    loop {
        let logits = g.next_logits()?;
        match e.next_token(&mut g)? {
            Some(d) => out.push((d.token, logits)),
            None => break,
        }
    }
    e.finish(g);
    Ok(out)
}

fn greedy_check(
    cpu: &mut Engine,
    dev: &mut Engine,
    w: &Workload,
    args: &GpuCheckArgs,
) -> anyhow::Result<Check> {
    let want = greedy(cpu, &w.story, args.tokens)?;
    let got = greedy(dev, &w.story, args.tokens)?;
    let first_max_diff = match (want.first(), got.first()) {
        (Some((_, a)), Some((_, b))) => a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max),
        _ => f32::NAN,
    };
    let n = want.len().min(got.len());
    let equal = (0..n).take_while(|&i| want[i].0 == got[i].0).count();
    let text = |t: &[(u32, Vec<f32>)]| {
        let ids: Vec<u32> = t.iter().map(|(id, _)| *id).collect();
        cpu.tokenizer().decode(&ids).unwrap_or_default()
    };
    let head = format!(
        "{equal} of {} greedy tokens equal; first step's logits differ by at most {first_max_diff:.4}",
        want.len()
    );
    if equal == want.len() && got.len() == want.len() {
        return Ok(Check {
            name: "greedy decode",
            pass: true,
            detail: format!("{head}; text {:?}", text(&want)),
        });
    }
    if equal < n {
        let (ref_tok, logits) = (&want[equal].0, &want[equal].1);
        let dev_tok = got[equal].0 as usize;
        let margin = logits[*ref_tok as usize] - logits.get(dev_tok).copied().unwrap_or(f32::MIN);
        let near_tie = margin <= args.logit_tolerance;
        return Ok(Check {
            name: "greedy decode",
            pass: near_tie,
            detail: format!(
                "{head}; diverged at token {equal} where the CPU engine's logits of the two \
                 tokens differ by {margin:.4} ({} the tolerance {}); CPU {:?}, device {:?}",
                if near_tie { "within" } else { "beyond" },
                args.logit_tolerance,
                text(&want),
                text(&got)
            ),
        });
    }
    Ok(Check {
        name: "greedy decode",
        pass: false,
        detail: format!(
            "{head}; the device stopped after {} tokens, the CPU engine after {}",
            got.len(),
            want.len()
        ),
    })
}

fn p_yes_check(
    cpu: &mut Engine,
    dev: &mut Engine,
    w: &Workload,
    args: &GpuCheckArgs,
) -> anyhow::Result<Check> {
    let mut worst = 0f32;
    let mut n = 0;
    let mut sample = Vec::new();
    for (prefix, suffixes) in &w.users {
        cpu.clear_prefix_cache();
        dev.clear_prefix_cache();
        let a = cpu.score_ids(prefix, suffixes)?;
        let b = dev.score_ids(prefix, suffixes)?;
        if a.len() != b.len() {
            return Ok(Check {
                name: "P(yes)",
                pass: false,
                detail: format!(
                    "{} scores from the device, {} from the CPU",
                    b.len(),
                    a.len()
                ),
            });
        }
        for (x, y) in a.iter().zip(&b) {
            let d = (x - y).abs();
            if !d.is_finite() {
                worst = f32::INFINITY;
            } else {
                worst = worst.max(d);
            }
            n += 1;
        }
        if sample.is_empty() {
            sample = a.iter().zip(&b).take(3).map(|(x, y)| (*x, *y)).collect();
        }
    }
    let sample: Vec<String> = sample
        .iter()
        .map(|(x, y)| format!("{x:.4}/{y:.4}"))
        .collect();
    Ok(Check {
        name: "P(yes)",
        pass: worst <= args.p_yes_tolerance,
        detail: format!(
            "{n} candidates, largest difference {worst:.5} (tolerance {}); CPU/device: {}",
            args.p_yes_tolerance,
            sample.join(", ")
        ),
    })
}

/// The LoRA checks' one example (`prompt` then the yes token, the loss on that token),
/// adapter (r 4 on Q and V) and optimizer (lr 1e-2).
fn lora_probe(dev: &Engine, prompt: &[u32]) -> (TrainExample, LoraConfig, OptimSettings) {
    let (yes, _) = dev.answer_ids();
    let mut ids = prompt.to_vec();
    ids.push(yes);
    let ex = TrainExample {
        loss_from: ids.len() - 1,
        ids,
    };
    let config = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec![Target::Q, Target::V],
        ..LoraConfig::paper()
    };
    let optim = OptimSettings {
        lr: 1e-2,
        ..OptimSettings::default()
    };
    (ex, config, optim)
}

/// One LoRA step on the device and on the CPU from the same start: the losses before the
/// step agree, and the step changes the device's loss.
fn lora_check(cpu: &Engine, dev: &Engine, w: &Workload) -> anyhow::Result<Check> {
    let (ex, config, optim) = lora_probe(dev, &w.prefill);
    let step = |e: &Engine| -> anyhow::Result<(f32, f32)> {
        let mut t = Trainer::new(e.model(), config.clone(), &optim, None, 7)?;
        let before = t.backward(&ex, 1.0)?;
        t.step(optim.lr)?;
        let after = t.loss(&ex, false)?.to_scalar::<f32>()?;
        Ok((before, after))
    };
    let (cpu_before, cpu_after) = step(cpu).context("the CPU trainer")?;
    let (before, after) = step(dev).context("the device trainer")?;
    let agree = (before - cpu_before).abs() <= 0.02 * cpu_before.abs().max(1.0);
    let changed = after.is_finite() && (after - before).abs() > 1e-6;
    Ok(Check {
        name: "LoRA step",
        pass: agree && changed,
        detail: format!(
            "loss before/after one step: device {before:.4} -> {after:.4}, CPU {cpu_before:.4} \
             -> {cpu_after:.4}{}{}",
            if agree {
                ""
            } else {
                "; the losses before the step disagree"
            },
            if changed {
                ""
            } else {
                "; the step did not change the loss"
            }
        ),
    })
}

/// The sampler's small copies against the whole-vector copy on the device: for greedy,
/// the reference preset and the workbench defaults, each step's token equals the one a
/// clone of the sampler draws from the whole logits copied to the host.
fn sampling_check(e: &mut Engine, w: &Workload, tokens: usize) -> anyhow::Result<Check> {
    let cases = [
        ("greedy", SamplingParams::greedy(tokens)),
        (
            "reference",
            SamplingParams {
                max_new_tokens: tokens,
                ..crate::preset::reference_sampling()
            },
        ),
        (
            "workbench",
            SamplingParams {
                max_new_tokens: tokens,
                ..SamplingParams::default()
            },
        ),
    ];
    let mut parts = Vec::new();
    let mut pass = true;
    for (name, params) in cases {
        let mut g = e.start_ids(w.story.clone(), &params)?;
        let (mut n, mut equal) = (0usize, 0usize);
        let mut vocab;
        loop {
            let logits = g.next_logits()?;
            vocab = logits.len();
            let want = g.sampler().clone().sample(&logits, g.tokens());
            let Some(d) = e.next_token(&mut g)? else {
                break;
            };
            n += 1;
            if d.token == want {
                equal += 1;
            } else {
                // The draws part ways here; the rest would compare different texts.
                break;
            }
        }
        let bytes = g.copied_bytes() / n.max(1);
        e.finish(g);
        pass &= equal == n && n > 0;
        parts.push(format!(
            "{name} {equal}/{n} equal, {bytes} of {} bytes per token",
            vocab * 4
        ));
    }
    Ok(Check {
        name: "sampling copies",
        pass,
        detail: parts.join("; "),
    })
}

/// One LoRA step with the frozen base in bf16 on the device: the loss before the step
/// within 5% of the f32 trainer's (bf16's 8-bit significand), finite and changed after.
/// A GPU without bf16 (compute capability below 8.0) passes with the refusal as detail;
/// the CPU (the dry run) with a note.
fn bf16_lora_check(dev: &Engine, w: &Workload) -> anyhow::Result<Check> {
    use crate::train::TrainDtype;
    if dev.model().device().is_cpu() {
        return Ok(Check {
            name: "bf16 LoRA step",
            pass: true,
            detail: "not run on the CPU (bf16 products are slow there; tests/train_bf16.rs \
                     trains in bf16 on the CPU)"
                .into(),
        });
    }
    if let Err(e) = crate::llm::train::check_train_dtype(dev.model().device(), TrainDtype::Bf16) {
        return Ok(Check {
            name: "bf16 LoRA step",
            pass: true,
            detail: format!("not run: {e}"),
        });
    }
    let (ex, config, optim) = lora_probe(dev, &w.prefill[..w.prefill.len().min(64)]);
    let mut losses = Vec::new();
    for dtype in [TrainDtype::F32, TrainDtype::Bf16] {
        let mut t = Trainer::new_in(dev.model(), config.clone(), &optim, None, 7, dtype)?;
        let before = t.backward(&ex, 1.0)?;
        t.step(optim.lr)?;
        let after = t.loss(&ex, false)?.to_scalar::<f32>()?;
        losses.push((before, after));
    }
    let ((f_before, _), (before, after)) = (losses[0], losses[1]);
    let agree = (before - f_before).abs() <= 0.05 * f_before.abs().max(1.0);
    let changed = after.is_finite() && (after - before).abs() > 1e-6;
    Ok(Check {
        name: "bf16 LoRA step",
        pass: agree && changed,
        detail: format!(
            "loss before/after one step: bf16 {before:.4} -> {after:.4}, f32 before {f_before:.4}{}{}",
            if agree { "" } else { "; bf16 and f32 disagree" },
            if changed { "" } else { "; the step did not change the loss" }
        ),
    })
}

/// With flash attention on: P(yes) and the prompt's last hidden state with the fused
/// prefill against the matrix-product path on the same device (within `--p-yes-tolerance`;
/// the fused kernel takes bf16 inputs).
fn flash_check(dev: &mut Engine, w: &Workload, args: &GpuCheckArgs) -> anyhow::Result<Check> {
    if !dev.model().flash_attention() {
        let why = crate::llm::model::flash_attention_unfit(
            dev.model().device(),
            dev.model().config.head_dim,
        )
        .unwrap_or("turned off");
        return Ok(Check {
            name: "flash attention",
            pass: true,
            detail: format!("not run: {why}"),
        });
    }
    let mut runs = Vec::new();
    for fused in [true, false] {
        dev.model.set_flash_attention(fused);
        let mut scores = Vec::new();
        for (prefix, suffixes) in &w.users {
            dev.clear_prefix_cache();
            scores.extend(dev.score_ids(prefix, suffixes)?);
        }
        let mut cache = dev.model().new_cache(w.prefill.len())?;
        let hidden = dev.model().prefill(&w.prefill, &mut cache)?;
        runs.push((scores, hidden.flatten_all()?.to_vec1::<f32>()?));
    }
    dev.model.set_flash_attention(true);
    dev.clear_prefix_cache();
    let (fused, plain) = (&runs[0], &runs[1]);
    let worst = fused
        .0
        .iter()
        .zip(&plain.0)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, |m, d| {
            if d.is_finite() {
                m.max(d)
            } else {
                f32::INFINITY
            }
        });
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let diff: Vec<f32> = fused.1.iter().zip(&plain.1).map(|(a, b)| a - b).collect();
    let rel = norm(&diff) / norm(&plain.1).max(1e-12);
    let same_len = fused.0.len() == plain.0.len() && fused.1.len() == plain.1.len();
    Ok(Check {
        name: "flash attention",
        pass: same_len && worst <= args.p_yes_tolerance && rel.is_finite() && rel < 0.05,
        detail: format!(
            "fused prefill against the matrix-product path: {} candidates, largest P(yes) \
             difference {worst:.5} (tolerance {}); last hidden state of a {}-token prompt \
             off by {rel:.5} (relative, accepted below 0.05)",
            fused.0.len(),
            args.p_yes_tolerance,
            w.prefill.len()
        ),
    })
}

struct Figures {
    prefill_tps: f64,
    /// Prefill without flash attention, where it is on.
    prefill_unfused_tps: Option<f64>,
    decode_tps: f64,
    /// Sampled decode (workbench defaults) with the small copies, and with whole copies.
    sampled_tps: f64,
    sampled_full_tps: f64,
    cands_per_s: f64,
}

fn bench(e: &mut Engine, w: &Workload, decode_tokens: usize) -> anyhow::Result<Figures> {
    // Warm-up (kernel loading, allocations).
    let g = e.start_ids(
        w.prefill[..w.prefill.len().min(32)].to_vec(),
        &SamplingParams::greedy(1),
    )?;
    e.finish(g);
    let prefill_tps = prefill(e, w)?;
    let prefill_unfused_tps = if e.model().flash_attention() {
        e.model.set_flash_attention(false);
        let tps = prefill(e, w);
        e.model.set_flash_attention(true);
        Some(tps?)
    } else {
        None
    };
    let decode_tps = decode(e, w, &SamplingParams::greedy(decode_tokens), false)?;
    // Sampling (the workbench defaults) with the small copies and with whole copies.
    let sampled = SamplingParams {
        max_new_tokens: decode_tokens,
        stop: Vec::new(),
        ..SamplingParams::default()
    };
    let sampled_tps = decode(e, w, &sampled, false)?;
    let sampled_full_tps = decode(e, w, &sampled, true)?;
    let t0 = Instant::now();
    let mut scored = 0usize;
    for (prefix, suffixes) in &w.bench_users {
        e.clear_prefix_cache();
        scored += e.score_ids(prefix, suffixes)?.len();
    }
    let cands_per_s = scored as f64 / t0.elapsed().as_secs_f64();
    Ok(Figures {
        prefill_tps,
        prefill_unfused_tps,
        decode_tps,
        sampled_tps,
        sampled_full_tps,
        cands_per_s,
    })
}

/// Prefill tokens/s of the workload's long prompt, best of 3.
fn prefill(e: &mut Engine, w: &Workload) -> anyhow::Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let g = e.start_ids(w.prefill.clone(), &SamplingParams::greedy(1))?;
        best = best.min(e.finish(g).prefill_ms);
    }
    Ok(w.prefill.len() as f64 / (best / 1000.0))
}

/// Decode tokens/s of the story prompt with `params` (`full_copy`: the whole logits copied
/// to the host every token, as before the small copies).
fn decode(
    e: &mut Engine,
    w: &Workload,
    params: &SamplingParams,
    full_copy: bool,
) -> anyhow::Result<f64> {
    let mut g = e.start_ids(w.story.clone(), params)?;
    g.set_full_copy(full_copy);
    let t0 = Instant::now();
    let mut n = 0usize;
    while e.next_token(&mut g)?.is_some() {
        n += 1;
    }
    let tps = n as f64 / t0.elapsed().as_secs_f64();
    e.finish(g);
    Ok(tps)
}
