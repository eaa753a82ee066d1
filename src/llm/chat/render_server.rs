//! Rendering a chat template in a memory-limited child process (Linux).
//!
//! Why: a chat template is a program that comes inside a model file. minijinja bounds its
//! steps (fuel) and nesting, but not the bytes it builds: `"x" * n` is capped, `~`, `+`,
//! `|replace`, `|join` and friends are not, so a template that doubles a string forty times
//! asks for terabytes. In Rust an allocation that fails aborts the process, which would take
//! the window (and the user's unsaved work) or a whole CLI batch down with it. No version of
//! minijinja (2.24, 3.x) has a byte cap, and none can be added from outside, so the render
//! runs where running out of memory is survivable: a child process with an address-space
//! limit (`RLIMIT_AS`).
//!
//! How: the first render of a [`super::ChatTemplate`] forks the process (no exec, so it
//! works the same in the CLI, the window and the test binaries, and the child already holds
//! the compiled template). The child closes every inherited file descriptor but its end of
//! a socket pair, sends stdout/stderr to `/dev/null`, limits its address space to its
//! current size plus [`TEMPLATE_MEMORY_MIB`], and then serves requests: the messages and
//! `add_generation_prompt` as JSON, answered with the rendered text or the template's error.
//! It touches nothing another thread of the parent could have held locked at the fork (no
//! stdout/stderr locks, no rayon, no logging; glibc's malloc is fork-safe) and leaves with
//! `_exit`. On end-of-file (the template dropped, or the parent gone, even by `kill -9`) it
//! exits, so it never outlives its parent.
//!
//! The parent sends one request at a time (a mutex: renders take microseconds, and the model
//! instances of the CLI's pool may share a template) and waits at most
//! [`TEMPLATE_RENDER_TIMEOUT_SECS`] for the answer (fuel counts steps, and one step can copy
//! hundreds of MiB, so a template could otherwise stay busy for hours). A child that dies
//! (its allocation failed under the limit: the Rust runtime aborts) or runs past the time is
//! reaped and the render is a clear [`LlmError::Template`]; the next render forks a fresh
//! child. Rust's out-of-memory handler takes a runtime lock before it aborts, which another
//! thread of the parent may have held at the fork; a child found asleep and grown while it
//! owes an answer is that case, and is stopped with the memory error at once
//! (`Child::child_is_stuck`). Dropping the template kills and reaps its child.
//!
//! Cost: a round trip over a Unix socket per prompt (tens of microseconds; see
//! `tests/template_memory.rs`, which measures it), one fork per template (lazily, so
//! right after the model is loaded). The child shares the parent's pages copy-on-write;
//! pages the parent changes afterwards are copied, so its memory cost is at most what the
//! parent held at the fork.

use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{ChatTemplate, LlmError};
use crate::lm::ChatMessage;

/// Memory one render may use on top of what the process held when its child was forked.
/// A real chat prompt is kilobytes to a few megabytes; this is two orders of magnitude
/// above that, and small enough that a hostile template is stopped in about a second
/// without pressing the rest of the machine.
pub const TEMPLATE_MEMORY_MIB: u64 = 256;

/// Wall-clock time one render may take before its child is killed.
pub const TEMPLATE_RENDER_TIMEOUT_SECS: u64 = 10;

/// The child's exit status when it could not set up its limits.
const EXIT_SETUP_FAILED: i32 = 3;
/// How often (ms) the parent checks on a child that has not answered yet.
const STUCK_TICK_MS: u128 = 50;
/// The descriptor the child keeps (its end of the socket pair, moved here).
const CHILD_FD: RawFd = 3;
/// Reply tags.
const REPLY_OK: u8 = 0;
const REPLY_ERR: u8 = 1;

#[derive(Serialize)]
struct RequestRef<'a> {
    messages: &'a [ChatMessage],
    add_generation_prompt: bool,
}

#[derive(Deserialize)]
struct Request {
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
}

/// The parent's handle on a render child.
struct Child {
    pid: libc::pid_t,
    sock: OwnedFd,
    /// The parent's virtual size when it forked the child: about the child's own, from
    /// which its limit counts.
    base_vm_bytes: u64,
}

/// A template's render child, forked on first use.
#[derive(Default)]
pub(super) struct Slot(Mutex<Option<Child>>);

/// Why an exchange with the child failed.
enum Failure {
    /// The child was gone before it got the request (send failed).
    GoneBefore,
    /// The child ended while rendering (end of file while waiting for the answer).
    Died,
    /// No answer within the time limit.
    TimedOut,
    /// The child sleeps while it should be rendering: blocked on a lock that another
    /// thread of the parent held at the fork (see [`child_is_stuck`]).
    Stuck,
    /// Something else (an I/O error on our side).
    Io(std::io::Error),
}

impl Slot {
    /// The PID of the current child, if one is running (for tests).
    pub(super) fn child_pid(&self) -> Option<u32> {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref().map(|c| c.pid as u32)
    }
}

/// Renders `messages` with `template` in its child, forking one if needed.
pub(super) fn render(
    template: &ChatTemplate,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> Result<String, LlmError> {
    let request = serde_json::to_vec(&RequestRef {
        messages,
        add_generation_prompt,
    })
    .map_err(|e| LlmError::Template(format!("could not encode the messages: {e}")))?;
    let mut slot = template
        .server
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    // One retry, for a child that was already gone (killed from outside) before the request.
    for attempt in 0..2 {
        if slot.is_none() {
            *slot = Some(Child::fork(template)?);
        }
        let Some(child) = slot.as_mut() else {
            continue;
        };
        let failure = match child.exchange(&request) {
            Ok(reply) => return reply,
            Err(f) => f,
        };
        let child = slot.take();
        let status = child.map(Child::kill_and_reap);
        let who = template.describe();
        match failure {
            Failure::GoneBefore if attempt == 0 => continue,
            Failure::GoneBefore | Failure::Died => {
                return Err(died_error(&who, status.flatten()));
            }
            Failure::Stuck => return Err(memory_error(&who)),
            Failure::TimedOut => {
                return Err(LlmError::Template(format!(
                    "{who} did not finish rendering within {TEMPLATE_RENDER_TIMEOUT_SECS} s and was stopped \
                     (a loop over ever longer strings?)"
                )))
            }
            Failure::Io(e) => {
                return Err(LlmError::Template(format!(
                    "{who}: talking to its render process failed: {e}"
                )))
            }
        }
    }
    Err(LlmError::Template(format!(
        "{}: its render process ended before it got the request, twice",
        template.describe()
    )))
}

fn memory_error(who: &str) -> LlmError {
    LlmError::Template(format!(
        "{who} used more than {TEMPLATE_MEMORY_MIB} MiB of memory while rendering and was stopped \
         (a template that keeps growing a string?)"
    ))
}

/// The error for a child that ended while rendering, from its wait status.
fn died_error(who: &str, status: Option<libc::c_int>) -> LlmError {
    let Some(status) = status else {
        return LlmError::Template(format!("{who}: its render process ended unexpectedly"));
    };
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        if sig == libc::SIGABRT || sig == libc::SIGSEGV || sig == libc::SIGBUS {
            // An allocation that fails under RLIMIT_AS aborts the Rust runtime.
            return memory_error(who);
        }
        return LlmError::Template(format!(
            "{who}: its render process was killed by signal {sig} while rendering"
        ));
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == EXIT_SETUP_FAILED {
        return LlmError::Template(format!(
            "{who}: could not start its render process with a memory limit \
             (is /proc mounted? setrlimit refused?)"
        ));
    }
    LlmError::Template(format!(
        "{who}: its render process ended unexpectedly (wait status {status})"
    ))
}

impl Child {
    fn fork(template: &ChatTemplate) -> Result<Child, LlmError> {
        let who = template.describe();
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for the call to fill.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(LlmError::Template(format!(
                "{who}: could not create a socket for its render process: {}",
                std::io::Error::last_os_error()
            )));
        }
        let base_vm_bytes = vm_bytes(None).unwrap_or(0);
        // SAFETY: socketpair succeeded, so both descriptors are open and owned by us alone.
        let (parent, child) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fork is sound here because the child only runs `child_main`, which uses
        // async-signal-safe calls, malloc (fork-safe in glibc) and memory it alone owns from
        // now on (the compiled template), and never returns (it ends with `_exit`).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(LlmError::Template(format!(
                "{who}: could not start its render process: {}",
                std::io::Error::last_os_error()
            )));
        }
        if pid == 0 {
            child_main(template, child.as_raw_fd());
        }
        drop(child);
        Ok(Child {
            pid,
            sock: parent,
            base_vm_bytes,
        })
    }

    /// Sends one request and reads its answer.
    fn exchange(&mut self, request: &[u8]) -> Result<Result<String, LlmError>, Failure> {
        let fd = self.sock.as_raw_fd();
        let mut frame = Vec::with_capacity(8 + request.len());
        frame.extend_from_slice(&(request.len() as u64).to_le_bytes());
        frame.extend_from_slice(request);
        send_all(fd, &frame).map_err(|e| match e.raw_os_error() {
            Some(libc::EPIPE) | Some(libc::ECONNRESET) => Failure::GoneBefore,
            _ => Failure::Io(e),
        })?;
        let deadline = Instant::now() + Duration::from_secs(TEMPLATE_RENDER_TIMEOUT_SECS);
        let mut head = [0u8; 9];
        self.recv_exact(&mut head, deadline)?;
        let len = u64::from_le_bytes(head[1..9].try_into().unwrap_or([0; 8]));
        if len > TEMPLATE_MEMORY_MIB << 20 {
            return Err(Failure::Io(std::io::Error::other(format!(
                "an answer of {len} bytes"
            ))));
        }
        let mut body = vec![0u8; len as usize];
        self.recv_exact(&mut body, deadline)?;
        let text = String::from_utf8(body)
            .map_err(|_| Failure::Io(std::io::Error::other("an answer that is not UTF-8")))?;
        Ok(match head[0] {
            REPLY_OK => Ok(text),
            _ => Err(LlmError::Template(text)),
        })
    }

    /// Fills `buf` from the child's socket, waiting until `deadline` at most.
    fn recv_exact(&self, buf: &mut [u8], deadline: Instant) -> Result<(), Failure> {
        let fd = self.sock.as_raw_fd();
        let mut sleeping_ticks = 0;
        let mut got = 0;
        while got < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::TimedOut);
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, STUCK_TICK_MS) as libc::c_int;
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(Failure::Io(e));
            }
            if rc == 0 {
                // No answer for a tick: is the child still working?
                if self.child_is_stuck() {
                    sleeping_ticks += 1;
                    if sleeping_ticks >= 2 {
                        return Err(Failure::Stuck);
                    }
                } else {
                    sleeping_ticks = 0;
                }
                continue; // the deadline check above ends it
            }
            // SAFETY: the rest of `buf` is valid for writes of its length.
            let n = unsafe { libc::recv(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
            match n {
                0 => return Err(Failure::Died),
                n if n < 0 => {
                    let e = std::io::Error::last_os_error();
                    match e.raw_os_error() {
                        Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                        Some(libc::ECONNRESET) => return Err(Failure::Died),
                        _ => return Err(Failure::Io(e)),
                    }
                }
                n => got += n as usize,
            }
        }
        Ok(())
    }

    /// Whether the child is asleep (and has grown well past where it started) while it
    /// owes an answer. A render never sleeps: the request is all in the socket, and a
    /// child blocked writing its answer leaves data to read. The one way it sleeps is a
    /// lock: when an allocation fails under the limit, Rust's out-of-memory handler takes
    /// the runtime's backtrace lock before it aborts, and if another thread of the parent
    /// held that lock at the fork (printing a panic, capturing a backtrace), the child
    /// waits for it forever.
    fn child_is_stuck(&self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let asleep = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'));
        // Far beyond the start: it was allocating, not waiting from the beginning.
        asleep
            && vm_bytes(Some(self.pid as u32))
                .is_some_and(|vm| vm >= self.base_vm_bytes + (TEMPLATE_MEMORY_MIB << 20) / 4)
    }

    /// Kills the child (it holds nothing worth a clean exit) and waits for it; its wait
    /// status, unless it was reaped elsewhere.
    fn kill_and_reap(self) -> Option<libc::c_int> {
        let pid = self.pid;
        // Forget our end so the child sees end-of-file too.
        drop(self.sock);
        // SAFETY: `pid` is our own child, not yet reaped (only this function reaps it), so
        // the signal cannot reach another process.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: `status` is a valid out-pointer.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc == pid {
                return Some(status);
            }
            if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slot = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(child) = slot.take() {
            child.kill_and_reap();
        }
    }
}

/// Writes all of `data`, without SIGPIPE if the peer is gone.
fn send_all(fd: RawFd, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is a valid buffer of `data.len()` bytes.
        let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// The child: set up the limits, then answer requests until end-of-file. Never returns.
fn child_main(template: &ChatTemplate, sock: RawFd) -> ! {
    // SAFETY: only async-signal-safe calls on descriptors and limits of this (new,
    // single-threaded) process.
    let setup_ok = unsafe { child_setup(sock) };
    if !setup_ok {
        // SAFETY: ends this process without running the parent's exit handlers.
        unsafe { libc::_exit(EXIT_SETUP_FAILED) }
    }
    // SAFETY: CHILD_FD is open (child_setup moved the socket there) and only used here.
    let mut stream = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(CHILD_FD) });
    loop {
        let mut head = [0u8; 8];
        if stream.read_exact(&mut head).is_err() {
            break;
        }
        let len = u64::from_le_bytes(head) as usize;
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).is_err() {
            break;
        }
        let result = match serde_json::from_slice::<Request>(&body) {
            Ok(req) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                template.render_in_process(&req.messages, req.add_generation_prompt)
            }))
            .unwrap_or_else(|_| {
                Err(LlmError::Template(
                    "the template engine panicked while rendering".into(),
                ))
            }),
            Err(e) => Err(LlmError::Template(format!("a bad render request: {e}"))),
        };
        let (tag, text) = match result {
            Ok(text) => (REPLY_OK, text),
            // The parent wraps the text in `LlmError::Template` again.
            Err(LlmError::Template(msg)) => (REPLY_ERR, msg),
            Err(e) => (REPLY_ERR, e.to_string()),
        };
        let mut reply = Vec::with_capacity(9 + text.len());
        reply.push(tag);
        reply.extend_from_slice(&(text.len() as u64).to_le_bytes());
        reply.extend_from_slice(text.as_bytes());
        if stream.write_all(&reply).is_err() {
            break;
        }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

/// Descriptors, signals and limits of the child; false if the memory limit could not be
/// set (the child must not render without it).
///
/// # Safety
/// Call only in the freshly forked child.
unsafe fn child_setup(sock: RawFd) -> bool {
    // Ctrl-C in a terminal goes to the whole process group; the parent decides, and the
    // child ends when the parent does (end-of-file).
    libc::signal(libc::SIGINT, libc::SIG_IGN);
    libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    // Fatal signals take their default action: a handler inherited from the host process
    // (a crash reporter, a fuzzer's, the runtime's stack-overflow handler) must not run
    // here, where an abort on the memory limit is the expected way to end.
    for sig in [
        libc::SIGABRT,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGTERM,
        libc::SIGALRM,
    ] {
        libc::signal(sig, libc::SIG_DFL);
    }
    if sock != CHILD_FD && libc::dup2(sock, CHILD_FD) != CHILD_FD {
        return false;
    }
    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
    if null >= 0 {
        for fd in 0..3 {
            if null != fd {
                libc::dup2(null, fd);
            }
        }
    }
    // Every other inherited descriptor goes: held open here, a file's lock, a pipe's
    // end-of-file or another template's socket would outlive the parent's own close.
    let first = (CHILD_FD + 1) as libc::c_uint;
    if libc::syscall(
        libc::SYS_close_range,
        first,
        libc::c_uint::MAX,
        0 as libc::c_uint,
    ) != 0
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(1 << 20) as RawFd
        } else {
            1 << 16
        };
        for fd in (CHILD_FD + 1)..top {
            libc::close(fd);
        }
    }
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    let Some(vm_bytes) = vm_bytes(None) else {
        return false;
    };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if libc::getrlimit(libc::RLIMIT_AS, &mut lim) != 0 {
        return false;
    }
    let want = vm_bytes.saturating_add(TEMPLATE_MEMORY_MIB << 20);
    let cur = if lim.rlim_max == libc::RLIM_INFINITY {
        want
    } else {
        want.min(lim.rlim_max)
    };
    lim.rlim_cur = cur;
    libc::setrlimit(libc::RLIMIT_AS, &lim) == 0
}

/// The virtual size in bytes of this process (`None`) or of `pid` (`/proc/PID/statm`,
/// first field, in pages).
fn vm_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/statm"),
        None => "/proc/self/statm".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let pages: u64 = text.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages.saturating_mul(page as u64))
}
