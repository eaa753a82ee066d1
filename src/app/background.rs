//! Work the window runs off the UI thread that is not inference (the worker's) nor
//! dataset loading (`worker::dataset`): writing an export, saving the project, writing a
//! plot's PNG, reading a results file for the Plots tab.
//!
//! Why one helper: each such job used to start its own thread and report through its own
//! path (a shared notice list behind a mutex, a join handle polled each frame). Here every
//! task runs on a named thread (so a stack trace or `top` says what it is), hands its
//! output back on one channel, and wakes the UI through the repaint closure it was given,
//! so this file does not depend on egui (after rerun's `re_log_channel`). The frame drains
//! the channel with a time budget and routes each output ([`TaskOutput`]) where it belongs.
//! A task that panics still reports (as an error), so nothing waits on it forever.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::notices::Notice;
use super::plots::Results;
use crate::worker::Wake;

/// Names a running task (unique for the window's life).
pub type TaskId = u64;

/// What the window's tasks hand back.
#[derive(Debug)]
pub enum TaskOutput {
    /// A message for the status bar (an export written, a plot saved, or why not).
    Notice(Notice),
    /// The project file was saved, or why not.
    ProjectSaved(Result<(), String>),
    /// A results file for the Plots tab was read, or why not.
    Results {
        path: PathBuf,
        read: Result<Results, String>,
    },
    /// A server connection test: the served models, or why not.
    ServedModels(Result<Vec<String>, String>),
    /// The Plots tab's intervals and comparisons (request `generation`), or why not.
    PlotIntervals {
        generation: u64,
        result: Result<super::plot_stats::Computed, String>,
    },
}

/// A task's end: its output, or the panic that ended it.
#[derive(Debug)]
pub struct Finished<T> {
    pub id: TaskId,
    /// The thread's name.
    pub name: String,
    pub output: Result<T, String>,
}

/// Starts tasks; cheap to clone and `Send`, so a callback off the frame (a screenshot
/// arriving) can start one too.
pub struct Spawner<T> {
    tx: Sender<Finished<T>>,
    wake: Wake,
    next: Arc<AtomicU64>,
}

impl<T> Clone for Spawner<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            wake: self.wake.clone(),
            next: self.next.clone(),
        }
    }
}

impl<T: Send + 'static> Spawner<T> {
    /// Runs `work` on a new thread called `name`; its output comes back through
    /// [`Background::drain`]. Fails only when the system cannot start a thread.
    pub fn spawn(
        &self,
        name: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<TaskId> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, wake, thread_name) = (self.tx.clone(), self.wake.clone(), name.to_string());
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                    .map_err(|p| panic_text(p.as_ref()));
                // The window may have closed: nobody to tell.
                let _ = tx.send(Finished {
                    id,
                    name: thread_name,
                    output,
                });
                wake();
            })?;
        Ok(id)
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let what = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("the task stopped: {what}")
}

/// The window's end of the tasks: starts them and receives what they hand back.
pub struct Background<T> {
    spawner: Spawner<T>,
    rx: Receiver<Finished<T>>,
    /// Outputs received while waiting for another task ([`Background::wait_for`]).
    held: VecDeque<Finished<T>>,
}

impl<T: Send + 'static> Background<T> {
    /// `wake` asks for a frame (the window's repaint).
    pub fn new(wake: Wake) -> Self {
        let (tx, rx) = channel();
        Self {
            spawner: Spawner {
                tx,
                wake,
                next: Arc::new(AtomicU64::new(1)),
            },
            rx,
            held: VecDeque::new(),
        }
    }

    pub fn spawner(&self) -> Spawner<T> {
        self.spawner.clone()
    }

    /// See [`Spawner::spawn`].
    pub fn spawn(
        &self,
        name: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<TaskId> {
        self.spawner.spawn(name, work)
    }

    /// The tasks that ended since the last call, taking at most about `budget`.
    pub fn drain(&mut self, budget: Duration) -> Vec<Finished<T>> {
        let start = Instant::now();
        let mut out: Vec<Finished<T>> = self.held.drain(..).collect();
        while start.elapsed() < budget {
            match self.rx.try_recv() {
                Ok(f) => out.push(f),
                Err(_) => break,
            }
        }
        out
    }

    /// Blocks until task `id` ends (at most `timeout`); other tasks' outputs that
    /// arrive meanwhile are kept for the next [`Background::drain`]. `None`: timed out.
    pub fn wait_for(&mut self, id: TaskId, timeout: Duration) -> Option<Finished<T>> {
        if let Some(i) = self.held.iter().position(|f| f.id == id) {
            return self.held.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(f) if f.id == id => return Some(f),
                Ok(f) => self.held.push_back(f),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counting_wake() -> (Wake, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (
            Arc::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
            n,
        )
    }

    #[test]
    fn a_task_runs_on_a_named_thread_wakes_the_ui_and_reports_on_the_channel() {
        let (wake, woken) = counting_wake();
        let mut bg: Background<String> = Background::new(wake);
        let id = bg
            .spawn("named-task", || {
                std::thread::current().name().unwrap_or("").to_string()
            })
            .unwrap();
        let f = bg
            .wait_for(id, Duration::from_secs(10))
            .expect("the task ended");
        assert_eq!(f.output.as_deref(), Ok("named-task"));
        assert_eq!(f.name, "named-task");
        // The wake follows the send.
        let deadline = Instant::now() + Duration::from_secs(10);
        while woken.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert!(bg.drain(Duration::from_millis(10)).is_empty());
    }

    #[test]
    fn a_panicking_task_reports_an_error_and_waiting_keeps_the_others() {
        let (wake, _) = counting_wake();
        let mut bg: Background<u32> = Background::new(wake);
        let first = bg.spawn("first", || 7).unwrap();
        // Let the first one end before the second, so waiting holds it.
        std::thread::sleep(Duration::from_millis(50));
        let second = bg.spawn("second", || panic!("disk on fire")).unwrap();
        let f = bg.wait_for(second, Duration::from_secs(10)).unwrap();
        let err = f.output.unwrap_err();
        assert!(err.contains("disk on fire"), "{err}");
        let rest = bg.drain(Duration::from_millis(10));
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].id, first);
        assert_eq!(rest[0].output, Ok(7));
    }
}
