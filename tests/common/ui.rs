//! The window's test harness: the real `WorkbenchApp` under egui_kittest (no GPU, no
//! display), and one `step_until` for waiting on the worker.

use std::path::Path;
use std::time::{Duration, Instant};

use eframe::egui;
use egui_kittest::Harness;
use trsr::app::{StartOptions, WorkbenchApp};
use trsr::worker::Loader;

/// The app on `data`, with `opts` for the rest (a project, a model to load; no results
/// cache unless `opts.cache_dir` names one: never the user's), at 1400 x 1000.
pub fn harness(loader: Loader, data: &Path, opts: StartOptions) -> Harness<'static, WorkbenchApp> {
    let opts = StartOptions {
        data: Some(data.to_path_buf()),
        ..opts
    };
    Harness::builder()
        .with_size(egui::vec2(1400.0, 1000.0))
        .with_max_steps(10_000)
        .build_eframe(move |cc| WorkbenchApp::new(&cc.egui_ctx, loader, opts).unwrap())
}

/// Steps frames (real time passing) until `cond` holds, then two more; fails after
/// `secs` naming `what` and the last notice the window showed.
pub fn step_until(
    h: &mut Harness<'_, WorkbenchApp>,
    what: &str,
    secs: u64,
    cond: impl Fn(&WorkbenchApp) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond(h.state()) {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run_steps(2);
}
