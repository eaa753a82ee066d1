//! What the servers send, read into plain Rust values: the served-model list, completion
//! answers and streamed chunks, and their log-probabilities in the two shapes in use:
//! llama.cpp's (`logprobs.content[]` with token ids) and the legacy OpenAI completions
//! shape that vLLM and SGLang send (`tokens` / `token_logprobs` / `top_logprobs`, with ids
//! as `token_id:N` when the request asks `return_tokens_as_token_ids`).
//!
//! Kept free of I/O so that recorded answers of servers we cannot run here are tests.

use std::io::{BufRead, Read};

use serde_json::Value;

/// Which server software answers: decides the request extras and the exact-scoring
/// fallback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerKind {
    LlamaCpp,
    Vllm,
    Sglang,
    /// Another OpenAI-compatible server (its `owned_by`).
    Other(String),
}

impl ServerKind {
    pub fn from_owned_by(owned_by: &str) -> Self {
        match owned_by.to_ascii_lowercase().as_str() {
            "llamacpp" | "llama.cpp" | "llama-cpp" => ServerKind::LlamaCpp,
            "vllm" => ServerKind::Vllm,
            "sglang" => ServerKind::Sglang,
            other => ServerKind::Other(other.to_string()),
        }
    }

    pub fn tag(&self) -> &str {
        match self {
            ServerKind::LlamaCpp => "llamacpp",
            ServerKind::Vllm => "vllm",
            ServerKind::Sglang => "sglang",
            ServerKind::Other(s) => s,
        }
    }
}

/// One entry of `GET /v1/models`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServedModel {
    pub id: String,
    pub kind: ServerKind,
    /// The context length where the entry says (vLLM/SGLang `max_model_len`,
    /// llama.cpp `meta.n_ctx`).
    pub context_len: Option<usize>,
    /// The entry's stable fields (the `created` time left out), for the model identity.
    pub metadata: Value,
}

/// Reads a `GET /v1/models` answer. `Err`: not the OpenAI shape (the message says what).
pub fn parse_models(v: &Value) -> Result<Vec<ServedModel>, String> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or("the answer has no `data` list of models")?;
    let mut out = Vec::new();
    for (i, m) in data.iter().enumerate() {
        let id = m
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("model {i} of the `data` list has no `id`"))?;
        let owned_by = m.get("owned_by").and_then(Value::as_str).unwrap_or("");
        let context_len = m
            .get("max_model_len")
            .and_then(Value::as_u64)
            .or_else(|| m.pointer("/meta/n_ctx").and_then(Value::as_u64))
            .map(|n| n as usize);
        let mut metadata = m.clone();
        if let Some(obj) = metadata.as_object_mut() {
            obj.remove("created");
        }
        out.push(ServedModel {
            id: id.to_string(),
            kind: ServerKind::from_owned_by(owned_by),
            context_len,
            metadata,
        });
    }
    Ok(out)
}

/// A token id written as `token_id:N` (vLLM's and SGLang's `return_tokens_as_token_ids`).
pub fn token_id_of(text: &str) -> Option<u32> {
    text.strip_prefix("token_id:")?.parse().ok()
}

/// One candidate of a position's top log-probabilities.
#[derive(Clone, Debug, PartialEq)]
pub struct TopEntry {
    pub id: Option<u32>,
    pub text: String,
    pub logprob: f64,
}

/// One generated position: the chosen token and the position's top list.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Position {
    pub id: Option<u32>,
    pub text: String,
    pub logprob: Option<f64>,
    pub top: Vec<TopEntry>,
}

/// What one completion answer or streamed chunk carries for choice 0.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Chunk {
    pub text: String,
    pub positions: Vec<Position>,
    pub finish_reason: Option<String>,
}

/// Reads a completion answer or chunk. `Err`: the server sent an error object or a
/// shape without `choices`.
pub fn parse_completion(v: &Value) -> Result<Chunk, String> {
    if let Some(err) = v.get("error") {
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        return Err(format!("the server reported an error: {msg}"));
    }
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("the answer has no `choices`")?;
    let Some(c) = choices.first() else {
        return Ok(Chunk::default());
    };
    let text = c
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let finish_reason = c
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let positions = match c.get("logprobs") {
        None | Some(Value::Null) => Vec::new(),
        Some(lp) => parse_logprobs(lp)?,
    };
    Ok(Chunk {
        text,
        positions,
        finish_reason,
    })
}

fn parse_logprobs(lp: &Value) -> Result<Vec<Position>, String> {
    // llama.cpp: {"content": [{"id", "token", "logprob", "top_logprobs": [{"id", "token", "logprob"}]}]}
    if let Some(content) = lp.get("content").and_then(Value::as_array) {
        return content
            .iter()
            .map(|p| {
                let top = p
                    .get("top_logprobs")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| {
                                Some(TopEntry {
                                    id: t.get("id").and_then(Value::as_u64).map(|n| n as u32),
                                    text: t
                                        .get("token")
                                        .and_then(Value::as_str)
                                        .unwrap_or_default()
                                        .to_string(),
                                    logprob: t.get("logprob").and_then(Value::as_f64)?,
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let text = p
                    .get("token")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Ok(Position {
                    id: p
                        .get("id")
                        .and_then(Value::as_u64)
                        .map(|n| n as u32)
                        .or_else(|| token_id_of(&text)),
                    text,
                    logprob: p.get("logprob").and_then(Value::as_f64),
                    top,
                })
            })
            .collect();
    }
    // Legacy OpenAI completions (vLLM, SGLang): parallel lists.
    let tokens = lp.get("tokens").and_then(Value::as_array);
    let Some(tokens) = tokens else {
        return Err("the `logprobs` object has neither `content` nor `tokens`".into());
    };
    let lps = lp.get("token_logprobs").and_then(Value::as_array);
    let tops = lp.get("top_logprobs").and_then(Value::as_array);
    let mut out = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let text = t.as_str().unwrap_or_default().to_string();
        let top = match tops.and_then(|a| a.get(i)) {
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(k, v)| {
                    Some(TopEntry {
                        id: token_id_of(k),
                        text: k.clone(),
                        logprob: v.as_f64()?,
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        out.push(Position {
            id: token_id_of(&text),
            text,
            logprob: lps.and_then(|a| a.get(i)).and_then(Value::as_f64),
            top,
        });
    }
    Ok(out)
}

/// The longest line, and the longest event, a server-sent event stream may send (16 MiB;
/// a chunk of a completion is a few hundred bytes).
pub const MAX_SSE_EVENT_BYTES: usize = 16 << 20;

/// Reads the `data:` payloads of a server-sent event stream, one per event, until the
/// stream ends or sends `[DONE]`. Comment lines (`:` pings) and other fields are skipped.
pub struct SseReader<R> {
    inner: R,
    line: String,
    done: bool,
}

impl<R: BufRead> SseReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            line: String::new(),
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for SseReader<R> {
    type Item = std::io::Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut data: Option<String> = None;
        loop {
            self.line.clear();
            let limit = MAX_SSE_EVENT_BYTES as u64 + 1;
            match (&mut self.inner).take(limit).read_line(&mut self.line) {
                Err(e) => return Some(Err(e)),
                Ok(0) => {
                    self.done = true;
                    return data.map(Ok);
                }
                Ok(_) => {}
            }
            let event_len = self.line.len() + data.as_ref().map_or(0, String::len);
            if event_len > MAX_SSE_EVENT_BYTES {
                self.done = true;
                return Some(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("an event of the stream is longer than {MAX_SSE_EVENT_BYTES} bytes"),
                )));
            }
            let line = self.line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                match data.take() {
                    Some(d) if d.trim() == "[DONE]" => {
                        self.done = true;
                        return None;
                    }
                    Some(d) => return Some(Ok(d)),
                    None => continue,
                }
            }
            if line.starts_with(':') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("data:") {
                let rest = rest.strip_prefix(' ').unwrap_or(rest);
                match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(rest);
                    }
                    None => data = Some(rest.to_string()),
                }
            }
            // `event:`, `id:`, `retry:` fields carry nothing we use.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_pings_multiline_and_done() {
        let stream = ": ping\n\ndata: {\"a\":1}\n\ndata: x\ndata: y\r\n\r\nevent: e\ndata: [DONE]\n\ndata: after\n\n";
        let got: Vec<String> = SseReader::new(stream.as_bytes())
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got, vec!["{\"a\":1}".to_string(), "x\ny".to_string()]);
    }

    #[test]
    fn sse_last_event_without_blank_line_is_kept() {
        let got: Vec<String> = SseReader::new("data: z".as_bytes())
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(got, vec!["z".to_string()]);
    }

    #[test]
    fn an_error_object_is_an_error() {
        let v: Value = serde_json::json!({"error": {"code": 400, "message": "context too long"}});
        assert!(parse_completion(&v)
            .unwrap_err()
            .contains("context too long"));
        let v: Value = serde_json::json!({"object": "x"});
        assert!(parse_completion(&v).is_err());
    }
}
