//! Item text: how an item is rendered into prompt text.

use serde::{Deserialize, Serialize};

use super::Item;

/// Renders an item as ordered `field: value` pairs joined by `; ` (the paper's
/// form), or through a user format string with `{field}` placeholders.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemTextTemplate {
    /// Fields to render, in order. Empty means all of the item's fields in their order.
    pub fields: Vec<String>,
    /// A format string such as `"{title} ({category})"`; when set, `fields` is ignored.
    pub format: Option<String>,
    /// Cap on each field's length, in characters; longer values end with `...`.
    pub max_field_chars: Option<usize>,
}

impl ItemTextTemplate {
    pub fn with_fields(fields: &[&str]) -> Self {
        Self {
            fields: fields.iter().map(|f| f.to_string()).collect(),
            ..Self::default()
        }
    }

    fn cap<'a>(&self, value: &'a str) -> std::borrow::Cow<'a, str> {
        match self.max_field_chars {
            Some(max) if value.chars().count() > max => {
                let cut: String = value.chars().take(max).collect();
                std::borrow::Cow::Owned(format!("{cut}..."))
            }
            _ => std::borrow::Cow::Borrowed(value),
        }
    }

    /// Renders the item; empty fields are skipped.
    pub fn render(&self, item: &Item) -> String {
        if let Some(fmt) = &self.format {
            return self.render_format(fmt, item);
        }
        let mut out = String::new();
        let mut push = |k: &str, v: &str| {
            let v = v.trim();
            if v.is_empty() {
                return;
            }
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(k);
            out.push_str(": ");
            out.push_str(&self.cap(v));
        };
        if self.fields.is_empty() {
            push("id", &item.id);
            for (k, v) in &item.fields {
                push(k, v);
            }
        } else {
            for f in &self.fields {
                if f == "id" {
                    push("id", &item.id);
                } else if let Some(v) = item.field(f) {
                    push(f, v);
                }
            }
        }
        out
    }

    fn render_format(&self, fmt: &str, item: &Item) -> String {
        let mut out = String::with_capacity(fmt.len() + 64);
        let mut rest = fmt;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            match after.find('}') {
                Some(end) => {
                    let name = &after[..end];
                    let value = if name == "id" {
                        Some(item.id.as_str())
                    } else {
                        item.field(name)
                    };
                    out.push_str(&self.cap(value.unwrap_or("").trim()));
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}
