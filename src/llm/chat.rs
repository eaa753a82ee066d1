//! Chat templates: the model's own Jinja template (GGUF `tokenizer.chat_template` or
//! `tokenizer_config.json`), rendered with minijinja the way transformers and
//! llama-cpp-python render it (`trim_blocks`, `lstrip_blocks`, Python string methods,
//! `raise_exception`, `tojson`, `strftime_now`), and the paper's plain `### User:` form.
//!
//! A template is untrusted code from a model file: on Linux every render runs in a
//! memory-limited child process (`render_server`), so a template that builds an endless
//! string is an error, not an abort of the whole program.

use std::path::Path;

use candle_core::quantized::gguf_file;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};

use super::tokenizer::Tokenizer;
use super::LlmError;
use crate::lm::ChatMessage;

#[cfg(target_os = "linux")]
mod render_server;
#[cfg(target_os = "linux")]
pub use render_server::{TEMPLATE_MEMORY_MIB, TEMPLATE_RENDER_TIMEOUT_SECS};

const TEMPLATE_NAME: &str = "chat_template";

/// Steps (minijinja instructions) one render may take. Templates come inside model
/// files from anywhere; a real one takes a few hundred steps per message, so this only
/// stops a template that loops (nested `range`s) instead of rendering.
pub const TEMPLATE_FUEL: u64 = 2_000_000;
/// Nesting (macros, includes, loops) one render may reach, well below the stack's
/// limit.
pub const TEMPLATE_RECURSION_LIMIT: usize = 200;

/// A compiled chat template with the model's BOS and EOS texts.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos: String,
    eos: String,
    /// Where the template came from (a file and field, a URL), for error messages.
    origin: Option<String>,
    /// The child process that renders it (Linux), forked on the first render.
    #[cfg(target_os = "linux")]
    server: render_server::Slot,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("source_len", &self.source.len())
            .field("origin", &self.origin)
            .finish()
    }
}

fn template_err(e: &Error) -> LlmError {
    if e.kind() == ErrorKind::OutOfFuel {
        return LlmError::Template(format!(
            "the chat template did not finish within {TEMPLATE_FUEL} steps (a loop without end?): {e:#}"
        ));
    }
    // `{:#}` adds the template line and the failing expression.
    LlmError::Template(format!("{e:#}"))
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("the template raised: {msg}"),
    ))
}

/// Python's `json.dumps(x, ensure_ascii=False, indent=indent)`, as transformers' `tojson`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    write_python_json(&json, indent, sort_keys.unwrap_or(false), 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn write_python_json(
    v: &serde_json::Value,
    indent: Option<usize>,
    sort: bool,
    depth: usize,
    out: &mut String,
) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_python_json(item, indent, sort, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(map) if !map.is_empty() => {
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            if sort {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_python_json(item, indent, sort, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `strftime_now(format)` used by Llama 3 templates: the current UTC date and time.
fn strftime_now(format: String) -> Result<Value, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(Value::from(strftime_utc(&format, secs)))
}

/// A small `strftime` over UTC seconds: %Y %y %m %d %e %b %B %a %A %H %M %S %j %%.
fn strftime_utc(format: &str, unix_secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (year, month, day) = crate::calendar::civil_from_days(days);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cumulative[(month - 1) as usize] + day + i64::from(leap && month > 2);
    let weekday = (days + 3).rem_euclid(7); // 1970-01-01 was a Thursday (Monday = 0)
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:2}")),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('a') => out.push_str(&DAYS[weekday as usize][..3]),
            Some('A') => out.push_str(DAYS[weekday as usize]),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('M') => out.push_str(&format!("{m:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

impl ChatTemplate {
    /// The GGUF's `tokenizer.chat_template`, with BOS/EOS texts from the tokenizer; `None` when
    /// the file has no template.
    pub fn from_gguf(
        content: &gguf_file::Content,
        tok: &Tokenizer,
    ) -> Result<Option<Self>, LlmError> {
        let template = match content.metadata.get("tokenizer.chat_template") {
            None => return Ok(None),
            Some(gguf_file::Value::String(s)) => s,
            Some(v) => {
                return Err(LlmError::Template(format!(
                    "GGUF metadata `tokenizer.chat_template`: expected a string, found {:?}",
                    v.value_type()
                )))
            }
        };
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
        Self::from_str(template, &text(tok.bos_id()), &text(tok.eos_id())).map(Some)
    }

    /// The `chat_template` of a Hugging Face `tokenizer_config.json` (a string, or a list of
    /// named templates of which `default` is taken); `None` when it has none.
    pub fn from_tokenizer_config(path: &Path, tok: &Tokenizer) -> Result<Option<Self>, LlmError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LlmError::Template(format!("{}: {e}", path.display())))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            LlmError::Template(format!("{}: line {}: {e}", path.display(), e.line()))
        })?;
        let template = match json.get("chat_template") {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(list)) => {
                let pick = list
                    .iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .or_else(|| list.first());
                match pick
                    .and_then(|t| t.get("template"))
                    .and_then(|t| t.as_str())
                {
                    Some(s) => s.to_string(),
                    None => {
                        return Err(LlmError::Template(format!(
                            "{}: field `chat_template`: a list without a `template` string",
                            path.display()
                        )))
                    }
                }
            }
            Some(_) => {
                return Err(LlmError::Template(format!(
                    "{}: field `chat_template`: expected a string or a list",
                    path.display()
                )))
            }
        };
        let token_text = |key: &str, id: Option<u32>| -> String {
            json.get(key)
                .and_then(|v| {
                    v.as_str()
                        .or_else(|| v.get("content").and_then(|c| c.as_str()))
                })
                .map(str::to_string)
                .or_else(|| id.and_then(|i| tok.token_text(i)).map(str::to_string))
                .unwrap_or_default()
        };
        let bos = token_text("bos_token", tok.bos_id());
        let eos = token_text("eos_token", tok.eos_id());
        Self::from_str(&template, &bos, &eos)
            .map(|t| Some(t.with_origin(format!("{} (`chat_template`)", path.display()))))
    }

    /// Compiles `template`; `bos` and `eos` are the texts the template sees as `bos_token` and
    /// `eos_token`.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(template: &str, bos: &str, eos: &str) -> Result<Self, LlmError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(TEMPLATE_RECURSION_LIMIT);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, template.to_string())
            .map_err(|e| template_err(&e))?;
        Ok(Self {
            env,
            source: template.to_string(),
            bos: bos.to_string(),
            eos: eos.to_string(),
            origin: None,
            #[cfg(target_os = "linux")]
            server: render_server::Slot::default(),
        })
    }

    /// Names where the template came from (e.g. "`tokenizer.chat_template` of model.gguf"),
    /// for the errors of its renders.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// "the chat template of ORIGIN", or "the chat template".
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn describe(&self) -> String {
        match &self.origin {
            Some(o) => format!("the chat template of {o}"),
            None => "the chat template".to_string(),
        }
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with the assistant turn
    /// opened. On Linux in the template's memory-limited child process
    /// (`TEMPLATE_MEMORY_MIB`, `TEMPLATE_RENDER_TIMEOUT_SECS`): a template past either limit
    /// is an error, and the next render starts a fresh child. Elsewhere in this process,
    /// with fuel and the recursion limit only.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, LlmError> {
        #[cfg(target_os = "linux")]
        return render_server::render(self, messages, add_generation_prompt);
        #[cfg(not(target_os = "linux"))]
        return self.render_in_process(messages, add_generation_prompt);
    }

    /// The PID of the child process that renders this template, if one is running (Linux;
    /// for tests that check it is replaced after a failure and gone after a drop).
    #[doc(hidden)]
    pub fn render_process_id(&self) -> Option<u32> {
        #[cfg(target_os = "linux")]
        return self.server.child_pid();
        #[cfg(not(target_os = "linux"))]
        return None;
    }

    /// Renders in this process, with fuel and the recursion limit but no memory limit: a
    /// hostile template can exhaust memory and abort the process. [`Self::render`] uses it
    /// in the child; tests compare the two.
    pub fn render_in_process(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, LlmError> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| template_err(&e))?;
        let ctx = minijinja::context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        };
        tmpl.render(ctx).map_err(|e| template_err(&e))
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn bos_token(&self) -> &str {
        &self.bos
    }

    pub fn eos_token(&self) -> &str {
        &self.eos
    }
}

/// The paper's plain form: "### User:\n{..}\n\n### Assistant:\n".
///
/// System messages come first as plain paragraphs; each user turn is `### User:\n{content}\n\n`,
/// each assistant turn `### Assistant:\n{content}\n\n`; the text ends with `### Assistant:\n`.
pub fn render_raw(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        match m.role.as_str() {
            "system" => {
                out.push_str(&m.content);
                out.push_str("\n\n");
            }
            "assistant" => {
                out.push_str("### Assistant:\n");
                out.push_str(&m.content);
                out.push_str("\n\n");
            }
            _ => {
                out.push_str("### User:\n");
                out.push_str(&m.content);
                out.push_str("\n\n");
            }
        }
    }
    out.push_str("### Assistant:\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_form_matches_the_paper_layout() {
        let text = render_raw(&[ChatMessage::user("Summarize.")]);
        assert_eq!(text, "### User:\nSummarize.\n\n### Assistant:\n");
        let text = render_raw(&[
            ChatMessage::system("Be brief."),
            ChatMessage::user("a"),
            ChatMessage::assistant("b"),
            ChatMessage::user("c"),
        ]);
        assert_eq!(
            text,
            "Be brief.\n\n### User:\na\n\n### Assistant:\nb\n\n### User:\nc\n\n### Assistant:\n"
        );
    }

    #[test]
    fn python_string_methods_and_block_trimming_work() {
        let t = ChatTemplate::from_str(
            "{% for m in messages %}\n  {{ m['content'].strip() }}|{{ m.role.upper() }}\n{% endfor %}",
            "",
            "",
        )
        .unwrap();
        // As jinja2 with trim_blocks + lstrip_blocks: the newline after a block tag goes, the
        // indentation before a `{{` stays.
        let out = t.render(&[ChatMessage::user("  hi  ")], false).unwrap();
        assert_eq!(out, "  hi|USER\n");
        let t = ChatTemplate::from_str(
            "{% for m in messages %}\n  {% if true %}{{ m['content'].strip() }}{% endif %}\n{% endfor %}",
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            t.render(&[ChatMessage::user("  hi  ")], false).unwrap(),
            "hi"
        );
    }

    #[test]
    fn raise_exception_becomes_a_template_error_with_its_message() {
        let t = ChatTemplate::from_str(
            "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('first must be user') }}{% endif %}ok",
            "",
            "",
        )
        .unwrap();
        assert_eq!(t.render(&[ChatMessage::user("x")], false).unwrap(), "ok");
        let err = t.render(&[ChatMessage::assistant("x")], false).unwrap_err();
        assert!(matches!(err, LlmError::Template(_)));
        assert!(err.to_string().contains("first must be user"), "{err}");
    }

    #[test]
    fn bos_and_eos_and_generation_prompt_reach_the_template() {
        let t = ChatTemplate::from_str(
            "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{{ eos_token }}{% endfor %}{% if add_generation_prompt %}>{% endif %}",
            "<s>",
            "</s>",
        )
        .unwrap();
        assert_eq!(
            t.render(&[ChatMessage::user("a")], true).unwrap(),
            "<s>[a]</s>>"
        );
        assert_eq!(
            t.render(&[ChatMessage::user("a")], false).unwrap(),
            "<s>[a]</s>"
        );
    }

    #[test]
    fn a_syntax_error_is_reported_not_panicked() {
        let err = ChatTemplate::from_str("{% for m in messages %}", "", "").unwrap_err();
        assert!(matches!(err, LlmError::Template(_)), "{err}");
    }

    #[test]
    fn tojson_uses_python_separators() {
        let t = ChatTemplate::from_str(
            "{{ messages[0] | tojson }}|{{ [1, 2] | tojson(indent=2) }}",
            "",
            "",
        )
        .unwrap();
        let out = t.render(&[ChatMessage::user("é\"")], false).unwrap();
        assert_eq!(
            out,
            "{\"role\": \"user\", \"content\": \"é\\\"\"}|[\n  1,\n  2\n]"
        );
    }

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-02-29 13:05:09 UTC (a Thursday, day 60 of a leap year).
        let secs = 1_709_211_909;
        assert_eq!(strftime_utc("%d %b %Y", secs), "29 Feb 2024");
        assert_eq!(
            strftime_utc("%A %B %e %H:%M:%S %j %y %%", secs),
            "Thursday February 29 13:05:09 060 24 %"
        );
        assert_eq!(strftime_utc("%Y-%m-%d", 0), "1970-01-01");
    }
}
