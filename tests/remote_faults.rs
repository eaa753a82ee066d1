//! Fault plumbing of the server client against a tiny local HTTP stub (a stub is enough
//! here: what is tested is our retry/backoff/error handling, not a model), and the
//! bad-input errors of connecting: each one line naming the URL.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trsr::remote::{Client, RemoteError, RemoteModel, RemoteOptions, RetryPolicy};

/// One request as the stub saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    auth: Option<String>,
    body: String,
}

type Handler = dyn Fn(&Seen, usize) -> (u16, Vec<(String, String)>, String) + Send + Sync;

/// A one-thread HTTP/1.1 server answering each request with `handler(request, n)`, `n`
/// counting requests from 0.
struct Stub {
    url: String,
    count: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    fn start(handler: Box<Handler>) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (count.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = c.fetch_add(1, Ordering::SeqCst);
                if let Some(req) = read_request(&stream) {
                    s.lock().unwrap().push(req.clone());
                    let (status, headers, body) = handler(&req, n);
                    respond(stream, status, &headers, &body);
                }
            }
        });
        Stub {
            url: format!("http://127.0.0.1:{port}/v1"),
            count,
            seen,
        }
    }

    fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut len = 0usize;
    let mut auth = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "authorization" => auth = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Seen {
        path,
        auth,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn respond(mut stream: TcpStream, status: u16, headers: &[(String, String)], body: &str) {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    let _ = stream.write_all(out.as_bytes());
}

fn fast_retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_backoff_ms: 20,
        max_backoff_ms: 100,
        ..RetryPolicy::default()
    }
}

fn models_json() -> String {
    json!({"object": "list", "data": [{"id": "served-a", "object": "model", "owned_by": "vllm", "max_model_len": 2048}]})
        .to_string()
}

#[test]
fn retries_503_and_429_then_succeeds() {
    let stub = Stub::start(Box::new(|_, n| match n {
        0 => (503, vec![], "busy".into()),
        1 => (
            429,
            vec![("Retry-After".into(), "0".into())],
            "slow down".into(),
        ),
        2 => (503, vec![], "still loading".into()),
        _ => (200, vec![], models_json()),
    }));
    let c = Client::new(None, fast_retry(4));
    let v = c.get_json(&format!("{}/models", stub.url)).unwrap();
    assert_eq!(v["data"][0]["id"], "served-a");
    assert_eq!(stub.requests(), 4);
    assert!(!c.is_down());
}

#[test]
fn retry_after_is_honoured() {
    let stub = Stub::start(Box::new(|_, n| match n {
        0 => (
            503,
            vec![("Retry-After".into(), "1".into())],
            "warming up".into(),
        ),
        _ => (200, vec![], models_json()),
    }));
    let c = Client::new(None, fast_retry(2));
    let t0 = Instant::now();
    c.get_json(&format!("{}/models", stub.url)).unwrap();
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert_eq!(stub.requests(), 2);
}

#[test]
fn a_4xx_is_not_retried_and_names_url_and_status() {
    let stub = Stub::start(Box::new(|_, _| {
        (400, vec![], r#"{"error":{"message":"bad field"}}"#.into())
    }));
    let c = Client::new(None, fast_retry(4));
    let url = format!("{}/completions", stub.url);
    let e = c.post_json(&url, &json!({"x": 1})).unwrap_err();
    assert_eq!(stub.requests(), 1);
    let msg = e.to_string();
    assert!(
        msg.contains(&url) && msg.contains("HTTP 400") && msg.contains("bad field"),
        "{msg}"
    );
}

#[test]
fn persistent_503_gives_up_after_the_retries() {
    let stub = Stub::start(Box::new(|_, _| (503, vec![], "overloaded".into())));
    let c = Client::new(None, fast_retry(3));
    let e = c.get_json(&format!("{}/models", stub.url)).unwrap_err();
    assert_eq!(stub.requests(), 4);
    let msg = e.to_string();
    assert!(
        msg.contains("HTTP 503") && msg.contains("after 4 tries"),
        "{msg}"
    );
    // A busy server is not a dead one.
    assert!(!c.is_down());
}

#[test]
fn a_dead_server_is_marked_down_and_fails_fast_afterwards() {
    // Bind and drop: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1/models");
    let c = Client::new(None, fast_retry(2));
    let e = c.get_json(&url).unwrap_err();
    assert!(matches!(e, RemoteError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains(&url), "{e}");
    assert!(c.is_down());
    // Not retried again: the message says the server is marked down.
    let e2 = c.get_json(&url).unwrap_err();
    assert!(e2.to_string().contains("stopped answering"), "{e2}");
}

#[test]
fn the_api_key_is_sent_as_bearer_and_never_in_errors() {
    let stub = Stub::start(Box::new(|_, _| (401, vec![], "unauthorized".into())));
    let c = Client::new(Some("sk-test-abc".into()), fast_retry(1));
    let e = c.get_json(&format!("{}/models", stub.url)).unwrap_err();
    assert!(!e.to_string().contains("sk-test-abc"), "{e}");
    let seen = stub.seen.lock().unwrap();
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer sk-test-abc"));
}

fn connect_err(url: &str, server_model: Option<&str>) -> String {
    let opts = RemoteOptions {
        server_model: server_model.map(str::to_string),
        retry: fast_retry(1),
        ..RemoteOptions::new(url)
    };
    match RemoteModel::connect(&opts) {
        Ok(_) => panic!("connected to {url}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_servers_give_one_line_errors_naming_the_url() {
    // Unreachable.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let e = connect_err(&url, None);
    assert!(e.contains(&url) && e.contains("cannot connect"), "{e}");
    assert!(!e.contains('\n'), "{e}");

    // Wrong path: not /v1 at all.
    let e = connect_err("http://127.0.0.1:9/api", None);
    assert!(
        e.contains("http://127.0.0.1:9/api") && e.contains("/v1"),
        "{e}"
    );

    // A web server that is not OpenAI-compatible (404 on /v1/models).
    let stub = Stub::start(Box::new(|_, _| {
        (404, vec![], "<html>Not found</html>".into())
    }));
    let e = connect_err(&stub.url, None);
    assert!(
        e.contains(&stub.url) && e.contains("404") && e.contains("/v1 root"),
        "{e}"
    );

    // An answer that is not JSON.
    let stub = Stub::start(Box::new(|_, _| (200, vec![], "<html>hello</html>".into())));
    let e = connect_err(&stub.url, None);
    assert!(e.contains(&stub.url) && e.contains("not JSON"), "{e}");

    // JSON without the model list.
    let stub = Stub::start(Box::new(|_, _| (200, vec![], r#"{"status":"ok"}"#.into())));
    let e = connect_err(&stub.url, None);
    assert!(e.contains("not an OpenAI-compatible server"), "{e}");

    // A served model name that does not exist.
    let stub = Stub::start(Box::new(|_, _| (200, vec![], models_json())));
    let e = connect_err(&stub.url, Some("nope-7b"));
    assert!(
        e.contains(&stub.url) && e.contains("nope-7b") && e.contains("served-a"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn a_server_capping_logprobs_below_what_scoring_needs_is_refused() {
    // A vLLM-like server started with --max-logprobs 5.
    let stub = Stub::start(Box::new(|req, _| match req.path.as_str() {
        "/v1/models" => (200, vec![], models_json()),
        "/tokenize" => {
            let v: Value = serde_json::from_str(&req.body).unwrap();
            let id: u32 = v["prompt"]
                .as_str()
                .unwrap_or("")
                .bytes()
                .map(u32::from)
                .sum();
            let toks: Vec<u32> = if v["add_special_tokens"] == true {
                vec![1, id]
            } else {
                vec![id]
            };
            (
                200,
                vec![],
                json!({"tokens": toks, "count": toks.len()}).to_string(),
            )
        }
        "/v1/completions" => {
            let v: Value = serde_json::from_str(&req.body).unwrap();
            if v["logprobs"].as_u64().unwrap_or(0) > 5 {
                (
                    400,
                    vec![],
                    json!({"object": "error", "message": "Requested sample logprobs of 20, which is greater than max allowed: 5", "code": 400}).to_string(),
                )
            } else {
                (200, vec![], "{}".into())
            }
        }
        _ => (404, vec![], String::new()),
    }));
    let opts = RemoteOptions {
        retry: fast_retry(1),
        yes_word: "yes".into(),
        no_word: "no".into(),
        ..RemoteOptions::new(&stub.url)
    };
    let e = match RemoteModel::connect(&opts) {
        Ok(_) => panic!("connected"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("/v1/completions") && e.contains("--max-logprobs 20"),
        "{e}"
    );
}
