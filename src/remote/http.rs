//! Blocking HTTP with the fault handling a serving cluster needs: connect and read
//! timeouts, retries with exponential backoff and jitter on connection errors, 429 and
//! 503 (honouring `Retry-After`), no retry on other statuses, and a per-server "down"
//! flag so that once a server has stopped answering the remaining work fails at once
//! instead of waiting through the retries again.
//!
//! The API key is held here only, sent as a bearer token, and never formatted: `Client`'s
//! `Debug` leaves it out and no error message contains a request header.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::RemoteError;

/// How long to wait and how often to try again.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try (so `max_retries + 1` tries in all).
    pub max_retries: u32,
    /// The first backoff; doubled on each retry up to `max_backoff_ms`.
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// A `Retry-After` longer than this is cut to it.
    pub max_retry_after_ms: u64,
    pub connect_timeout_ms: u64,
    /// Longest silence while reading a response (a whole non-streamed answer, or the gap
    /// between two streamed tokens).
    pub read_timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_backoff_ms: 500,
            max_backoff_ms: 8_000,
            max_retry_after_ms: 60_000,
            connect_timeout_ms: 5_000,
            read_timeout_ms: 300_000,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based): exponential, with jitter in
    /// [50%, 100%] so that many clients do not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let full = self
            .base_backoff_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(self.max_backoff_ms);
        let jitter = rand::random::<f64>() * 0.5 + 0.5;
        Duration::from_millis((full as f64 * jitter) as u64)
    }
}

/// One server's HTTP client (cheap to clone: clones share connections and the down flag).
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    api_key: Option<Arc<str>>,
    retry: RetryPolicy,
    down: Arc<AtomicBool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("retry", &self.retry)
            .field("down", &self.is_down())
            .finish()
    }
}

/// Why one try failed, and whether another may help.
enum Attempt {
    Retry {
        reason: String,
        after: Option<Duration>,
        status: Option<u16>,
    },
    Fail(RemoteError),
}

impl Client {
    pub fn new(api_key: Option<String>, retry: RetryPolicy) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_millis(retry.connect_timeout_ms))
            .timeout_read(Duration::from_millis(retry.read_timeout_ms))
            .max_idle_connections_per_host(64)
            .build();
        Self {
            agent,
            api_key: api_key.map(Arc::from),
            retry,
            down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True once a request has failed to reach the server through all its retries.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let mut r = self.agent.request(method, url);
        if let Some(key) = &self.api_key {
            r = r.set("Authorization", &format!("Bearer {key}"));
        }
        r
    }

    /// GET `url` and parse the JSON answer.
    pub fn get_json(&self, url: &str) -> Result<Value, RemoteError> {
        self.with_retries(url, || {
            let resp = self.request("GET", url).call();
            read_json(url, resp)
        })
    }

    /// POST `body` to `url` and parse the JSON answer.
    pub fn post_json(&self, url: &str, body: &Value) -> Result<Value, RemoteError> {
        self.with_retries(url, || {
            let resp = self.request("POST", url).send_json(body.clone());
            read_json(url, resp)
        })
    }

    /// POST `body` to `url` and return the response once its status line is in (the
    /// body is read by the caller, e.g. as a server-sent event stream). Retries cover
    /// the time until the server starts answering.
    pub fn post_stream(&self, url: &str, body: &Value) -> Result<ureq::Response, RemoteError> {
        self.with_retries(url, || {
            match self.request("POST", url).send_json(body.clone()) {
                Ok(r) => Ok(r),
                Err(e) => Err(classify(url, e)),
            }
        })
    }

    fn with_retries<T>(
        &self,
        url: &str,
        mut once: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, RemoteError> {
        if self.is_down() {
            return Err(RemoteError::Unreachable {
                url: url.to_string(),
                reason: "the server stopped answering earlier in this run".into(),
            });
        }
        let mut attempt = 0u32;
        loop {
            match once() {
                Ok(v) => return Ok(v),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry {
                    reason,
                    after,
                    status,
                }) => {
                    if attempt >= self.retry.max_retries {
                        return Err(match status {
                            Some(status) => RemoteError::Status {
                                url: url.to_string(),
                                status,
                                body: format!("{reason} (after {} tries)", attempt + 1),
                            },
                            None => {
                                self.down.store(true, Ordering::SeqCst);
                                RemoteError::Unreachable {
                                    url: url.to_string(),
                                    reason: format!("{reason} (after {} tries)", attempt + 1),
                                }
                            }
                        });
                    }
                    let wait = match after {
                        Some(d) => d.min(Duration::from_millis(self.retry.max_retry_after_ms)),
                        None => self.retry.backoff(attempt),
                    };
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }
}

/// Sorts a failed call into retry-or-fail.
fn classify(url: &str, e: ureq::Error) -> Attempt {
    match e {
        ureq::Error::Status(status, resp) => {
            let after = resp
                .header("Retry-After")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let body = body_excerpt(resp);
            if matches!(status, 429 | 503) {
                Attempt::Retry {
                    reason: body,
                    after,
                    status: Some(status),
                }
            } else {
                Attempt::Fail(RemoteError::Status {
                    url: url.to_string(),
                    status,
                    body,
                })
            }
        }
        ureq::Error::Transport(t) => Attempt::Retry {
            reason: transport_reason(&t),
            after: None,
            status: None,
        },
    }
}

fn transport_reason(t: &ureq::Transport) -> String {
    let mut s = t.kind().to_string();
    if let Some(m) = t.message() {
        s.push_str(": ");
        s.push_str(m);
    }
    if let Some(src) = std::error::Error::source(t) {
        s.push_str(": ");
        s.push_str(&src.to_string());
    }
    s
}

/// The first 300 characters of an error body, on one line.
fn body_excerpt(resp: ureq::Response) -> String {
    let mut text = String::new();
    let _ = resp.into_reader().take(4096).read_to_string(&mut text);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = one_line.chars().take(300).collect();
    if cut.is_empty() {
        "(no body)".into()
    } else {
        cut
    }
}

/// The largest JSON answer read (256 MiB): a llama.cpp answer with the log-probabilities
/// of a whole vocabulary is tens of megabytes; a server that sends more is broken, and is
/// not allowed to fill the memory.
pub const MAX_JSON_ANSWER_BYTES: u64 = 256 << 20;

fn read_json(url: &str, resp: Result<ureq::Response, ureq::Error>) -> Result<Value, Attempt> {
    let resp = resp.map_err(|e| classify(url, e))?;
    let mut text = String::new();
    let read = resp
        .into_reader()
        .take(MAX_JSON_ANSWER_BYTES + 1)
        .read_to_string(&mut text);
    if text.len() as u64 > MAX_JSON_ANSWER_BYTES {
        return Err(Attempt::Fail(RemoteError::Protocol {
            url: url.to_string(),
            what: format!("the answer is longer than {MAX_JSON_ANSWER_BYTES} bytes"),
        }));
    }
    if let Err(e) = read {
        // The connection broke while the answer was being read: worth another try.
        return Err(Attempt::Retry {
            reason: format!("reading the answer: {e}"),
            after: None,
            status: None,
        });
    }
    serde_json::from_str(&text).map_err(|e| {
        let cut: String = text.chars().take(120).collect();
        Attempt::Fail(RemoteError::Protocol {
            url: url.to_string(),
            what: format!(
                "the answer is not JSON ({e}): {cut:?}; is this an OpenAI-compatible server?"
            ),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let p = RetryPolicy {
            base_backoff_ms: 100,
            max_backoff_ms: 1000,
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let b0 = p.backoff(0).as_millis();
            assert!((50..=100).contains(&b0), "{b0}");
            let b3 = p.backoff(3).as_millis();
            assert!((400..=800).contains(&b3), "{b3}");
            let b10 = p.backoff(10).as_millis();
            assert!((500..=1000).contains(&b10), "{b10}");
        }
    }

    #[test]
    fn the_api_key_never_shows_in_debug() {
        let c = Client::new(Some("sk-secret-123".into()), RetryPolicy::default());
        let s = format!("{c:?}");
        assert!(!s.contains("sk-secret-123"), "{s}");
        assert!(s.contains("<set>"), "{s}");
    }
}
