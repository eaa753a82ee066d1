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
    /// Render as the reference's pandas code does (`--preset reference`); `fields`,
    /// `format` and `max_field_chars` are then ignored. See [`reference_text`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<crate::preset::ReferenceWording>,
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

    /// The reference's item text for MIND or Amazon-M2.
    pub fn reference(w: crate::preset::ReferenceWording) -> Self {
        Self {
            reference: Some(w),
            ..Self::default()
        }
    }

    /// Renders the item; empty fields are skipped.
    pub fn render(&self, item: &Item) -> String {
        if let Some(w) = self.reference {
            return reference_text(w, item);
        }
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

/// The reference's columns per dataset: (label in the text, our field name).
/// MIND: `build_dataset.py`'s `['id', 'Category', 'SubCategory', 'Title']`; Amazon-M2:
/// `['id', 'title', 'price', 'brand', 'color', 'size', 'model', 'material', 'author',
/// 'description']` (`desc` renamed `description`).
const MIND_REFERENCE_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("Category", "category"),
    ("SubCategory", "subcategory"),
    ("Title", "title"),
];
const AMAZON_REFERENCE_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("title", "title"),
    ("price", "price"),
    ("brand", "brand"),
    ("color", "color"),
    ("size", "size"),
    ("model", "model"),
    ("material", "material"),
    ("author", "author"),
    ("description", "description"),
];

/// The strings pandas' `read_csv` reads as missing by default (`na_values`); the
/// reference's `pd.notna(row[col])` leaves such fields out.
const PANDAS_NA: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// `generate_sentence` of the reference's `build_dataset.py`: `"{col}: {value}"` for
/// each column pandas does not read as missing, joined by `"; "`. Values are as pandas
/// holds them: strings untouched, Amazon-M2's `price` (a float column) as Python
/// prints a float (`5` becomes `5.0`).
pub fn reference_text(w: crate::preset::ReferenceWording, item: &Item) -> String {
    let columns = match w {
        crate::preset::ReferenceWording::Mind => MIND_REFERENCE_COLUMNS,
        crate::preset::ReferenceWording::Amazon => AMAZON_REFERENCE_COLUMNS,
    };
    let mut parts = Vec::with_capacity(columns.len());
    for (label, field) in columns {
        let value = if *field == "id" {
            Some(item.id.as_str())
        } else {
            item.field(field)
        };
        let Some(value) = value else { continue };
        if PANDAS_NA.contains(&value) {
            continue;
        }
        let value = if *field == "price" {
            python_float(value).unwrap_or_else(|| value.to_string())
        } else {
            value.to_string()
        };
        parts.push(format!("{label}: {value}"));
    }
    parts.join("; ")
}

/// `str(float(text))` as Python writes it (shortest round trip; `5.0`, `1e-05`,
/// `1e+16`), or `None` when `text` is not a number.
pub fn python_float(text: &str) -> Option<String> {
    let v: f64 = text.trim().parse().ok()?;
    if v.is_nan() {
        return Some("nan".into());
    }
    if v.is_infinite() {
        return Some(if v > 0.0 { "inf" } else { "-inf" }.into());
    }
    let abs = v.abs();
    if abs == 0.0 || (1e-4..1e16).contains(&abs) {
        let s = format!("{v:?}");
        return Some(if s.contains('.') { s } else { format!("{s}.0") });
    }
    // Scientific: Rust's `{:e}` gives `1e-5` / `1.5e16`; Python `1e-05` / `1.5e+16`.
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let sign = if exp < 0 { '-' } else { '+' };
    Some(format!("{mantissa}e{sign}{:02}", exp.abs()))
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    #[test]
    fn python_float_matches_python() {
        for (input, want) in [
            ("5", "5.0"),
            ("19.99", "19.99"),
            ("1.50", "1.5"),
            ("0.00001", "1e-05"),
            ("0.0001", "0.0001"),
            ("1e16", "1e+16"),
            ("123456789012345.0", "123456789012345.0"),
            ("-2", "-2.0"),
        ] {
            assert_eq!(python_float(input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(python_float("abc"), None);
    }

    #[test]
    fn reference_text_leaves_out_what_pandas_reads_as_missing() {
        let item = Item {
            id: "B1".into(),
            fields: vec![
                ("title".into(), "Mug".into()),
                ("price".into(), "7".into()),
                ("brand".into(), "NA".into()),
                ("color".into(), "".into()),
                ("description".into(), " A mug ".into()),
            ],
        };
        assert_eq!(
            reference_text(crate::preset::ReferenceWording::Amazon, &item),
            "id: B1; title: Mug; price: 7.0; description:  A mug "
        );
    }
}
