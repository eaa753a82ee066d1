//! Frame times of the real window logic while a summary streams, against idle frames.
//!
//! Runs the app headless on a bare egui context (layout + tessellation, no GPU), frames
//! paced at ~60 Hz, with the default model (a fake streaming model when it is absent,
//! said in the output). Prints p50 / p95 / max frame times for idle frames and for
//! frames while a job runs.
//!
//! `cargo bench --bench frame_times` (release build). Options via env:
//! `FRAME_BENCH_SECS` (default 10), `FRAME_BENCH_DATA` (a prepared folder; default
//! `sample_data/jsonl`, else a generated one).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eframe::egui;
use trsr::app::{Command, StartOptions, Tab, WorkbenchApp};
use trsr::worker::Loader;

#[path = "../tests/common/scripted.rs"]
#[allow(dead_code)]
mod scripted;
use scripted::{Length, Scripted};

/// A scripted model streaming ~58 tokens/s, like candle decode (plumbing only).
fn fake_stream() -> Scripted {
    let mut m = Scripted::streaming("fake-stream", " token", Duration::from_millis(17))
        .with_context(2048)
        .with_logprob(-0.7);
    m.length = Length::MaxNewTokens;
    m.count = |t| t.len().div_ceil(4);
    m
}

/// The default model where `trsr fetch-model` put it.
fn model_path() -> Option<PathBuf> {
    let p = trsr::llm::fetch::default_model_path();
    p.is_file().then_some(p)
}

fn data_dir(tmp: &tempfile::TempDir) -> PathBuf {
    if let Ok(d) = std::env::var("FRAME_BENCH_DATA") {
        return PathBuf::from(d);
    }
    let s = PathBuf::from("sample_data/jsonl");
    if s.join("cases.jsonl").is_file() {
        return s;
    }
    let mut items = String::new();
    for i in 0..2000 {
        items.push_str(&format!(
            "{{\"id\": \"N{i}\", \"title\": \"Story number {i} about topic {}\"}}\n",
            i % 17
        ));
    }
    let mut cases = String::new();
    for u in 0..20_000 {
        let hist: Vec<String> = (0..20)
            .map(|i| format!("\"N{}\"", (u * 7 + i * 13) % 1990))
            .collect();
        cases.push_str(&format!(
            "{{\"case\": \"c{u}\", \"user\": \"U{u}\", \"history\": [{}], \"target\": \"N1995\", \"negatives\": [\"N1996\", \"N1997\"]}}\n",
            hist.join(",")
        ));
    }
    std::fs::write(tmp.path().join("items.jsonl"), items).unwrap();
    std::fs::write(tmp.path().join("cases.jsonl"), cases).unwrap();
    tmp.path().to_path_buf()
}

struct Stats {
    ms: Vec<f64>,
}

impl Stats {
    fn line(&mut self, what: &str) -> String {
        self.ms.sort_by(f64::total_cmp);
        let n = self.ms.len();
        if n == 0 {
            return format!("{what:<28} no frames");
        }
        let q = |f: f64| self.ms[((n as f64 - 1.0) * f).round() as usize];
        format!(
            "{what:<28} frames {n:>5}  p50 {:>6.2} ms  p95 {:>6.2} ms  max {:>6.2} ms",
            q(0.5),
            q(0.95),
            self.ms[n - 1]
        )
    }
}

fn frame(ctx: &egui::Context, app: &mut WorkbenchApp, t0: Instant) -> f64 {
    let input = egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1400.0, 900.0),
        )),
        time: Some(t0.elapsed().as_secs_f64()),
        ..Default::default()
    };
    let start = Instant::now();
    let mut out = ctx.run_ui(input, |ui| app.frame(ui));
    let _prims = ctx.tessellate(out.shapes, out.pixels_per_point);
    // No renderer here: the font atlas updates are dropped on purpose.
    out.textures_delta.clear();
    start.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let secs: u64 = std::env::var("FRAME_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(&tmp);
    let (loader, model_name): (Loader, String) = match model_path() {
        Some(p) => (trsr::app::engine_loader(), p.display().to_string()),
        None => {
            println!("note: default model absent; a fake model streams ~58 tok/s instead");
            (fake_stream().loader(), "fake".into())
        }
    };
    let ctx = egui::Context::default();
    let t0 = Instant::now();
    let mut app = WorkbenchApp::new(
        &ctx,
        loader,
        StartOptions {
            data: Some(data.clone()),
            model: Some(model_name.clone()),
            ..Default::default()
        },
    )
    .expect("app");
    // Wait for data and model.
    let deadline = Instant::now() + Duration::from_secs(300);
    while app.wb.data.is_none() || app.wb.context_len().is_none() {
        if let trsr::app::ModelStatus::Failed(e) = &app.wb.model {
            panic!("model failed: {e}");
        }
        assert!(Instant::now() < deadline, "data or model did not load");
        frame(&ctx, &mut app, t0);
        std::thread::sleep(Duration::from_millis(16));
    }
    let data_cases = app.wb.data.as_ref().map_or(0, |d| d.cases.len());
    println!(
        "data: {} ({data_cases} users); model: {model_name}",
        data.display()
    );
    app.push_command(Command::SetTab(Tab::Summaries));
    let mut idle = Stats { ms: Vec::new() };
    let end = Instant::now() + Duration::from_secs(secs / 2);
    while Instant::now() < end {
        idle.ms.push(frame(&ctx, &mut app, t0));
        std::thread::sleep(Duration::from_millis(16));
    }
    app.settings.sampling.max_new_tokens = 2000;
    app.push_command(Command::RunSummary);
    let mut busy = Stats { ms: Vec::new() };
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let running = app.wb.summary.as_ref().is_some_and(|s| s.is_running());
        let ms = frame(&ctx, &mut app, t0);
        if running {
            busy.ms.push(ms);
        }
        std::thread::sleep(Duration::from_millis(16));
    }
    let streamed = app.wb.summary.as_ref().map_or(0, |s| s.streamed_tokens);
    let tps = app
        .wb
        .summary
        .as_ref()
        .and_then(|s| s.tokens_per_sec())
        .unwrap_or(0.0);
    app.push_command(Command::Cancel);
    frame(&ctx, &mut app, t0);
    println!("{}", idle.line("idle (summaries tab)"));
    println!("{}", busy.line("while a summary streams"));
    println!("streamed {streamed} tokens at {tps:.1} tok/s during the run");
}
