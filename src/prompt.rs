//! Prompt templates: the summarizer's block / update / merge prompts and the
//! recommender prompt, as one editable RON file.
//!
//! The wording is our own; the structure follows LLM-TRSR (Zheng et al., WWW 2024).
//! A template is plain text with placeholders:
//!
//! - `{name}` is replaced by the value of `name`;
//! - `{#name}...{/name}` is a section kept only when `name` has a value (used for the
//!   recommender's ablations: no summary, no recent items, full history);
//! - any other `{` is literal text.
//!
//! Placeholders per template:
//!
//! | template | placeholders |
//! |---|---|
//! | `summarize_block` | `items` (the block's items, numbered, oldest first) |
//! | `summarize_update` | `summary` (the summary so far), `items` |
//! | `summarize_merge` | `summaries` (the ordered partial summaries, numbered) |
//! | `recommend` | `summary`, `recent`, `history`, `candidate`, `yes`, `no` |
//!
//! The templates are the *user* message; [`crate::lm::LanguageModel::render_chat`]
//! wraps them (with `system`, when set) in the model's chat template.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::preset::ReferenceWording;

/// How a filled template becomes the model's prompt, and how lists are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromptForm {
    /// The template is the user message: wrapped (with `system`) in the model's chat
    /// template; items and summaries numbered `1. ...`, trimmed.
    #[default]
    Chat,
    /// The template is the whole prompt, given to the model as it is (no system
    /// message, no chat template): items joined by `\n` unnumbered and untrimmed,
    /// summaries labelled `[Preference Summary {j}:\n]` from 0, a missing summary or
    /// empty recent list written `NULL`, generated text kept untrimmed. This is what
    /// the reference code does (`--preset reference`).
    Verbatim,
}

/// Every prompt the method uses, editable as a RON file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Templates {
    /// How the templates become prompts (see [`PromptForm`]).
    #[serde(default)]
    pub form: PromptForm,
    /// Optional system message put before every prompt.
    pub system: Option<String>,
    /// Summarize one block alone (hierarchical steps, and the first recurrent step
    /// unless `summarize_first` is set).
    pub summarize_block: String,
    /// The first recurrent step's prompt when it differs from `summarize_block` (the
    /// reference's MIND code indents the two differently). Placeholders: `items`.
    #[serde(default)]
    pub summarize_first: Option<String>,
    /// Recurrent update: the previous summary plus the next block.
    pub summarize_update: String,
    /// Hierarchical merge of the ordered block summaries.
    pub summarize_merge: String,
    /// Recommender prompt; `{candidate}` marks where the shared prefix ends.
    pub recommend: String,
    /// The answer words the recommender compares (P(yes) = softmax over the two).
    pub yes: String,
    pub no: String,
}

/// Which wording of the default templates suits a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Wording {
    /// News articles (MIND): read/click wording.
    News,
    /// Products (Amazon-M2): shopping wording.
    Products,
}

const NEWS_BLOCK: &str = "Below are news articles a user clicked, oldest first:\n{items}\n\n\
Describe this user's reading interests in a few sentences: the topics, categories and kinds of \
stories they are drawn to. Reply with the description only.";

const NEWS_UPDATE: &str =
    "Here is a description of a user's reading interests so far:\n{summary}\n\n\
Below are the news articles the same user clicked next, oldest first:\n{items}\n\n\
Rewrite the description so that it covers both the earlier interests and the new clicks. It must \
stand on its own, without referring to an earlier description. Reply with the description only.";

const NEWS_MERGE: &str =
    "Below are descriptions of one user's reading interests, each written from \
a consecutive stretch of their click history, oldest first:\n{summaries}\n\n\
Combine them into one description of the user's reading interests, giving weight to interests \
that recur and to the most recent ones. Reply with the description only.";

const NEWS_RECOMMEND: &str = "Decide whether the user will click the candidate news article. \
{#summary}The interest summary describes the user's long-term interests. {/summary}\
{#history}The click history shows everything the user read. {/history}\
{#recent}The most recent clicks show the user's short-term interests. {/recent}\
Answer with {yes} or {no} only.\n\n\
{#summary}Interest summary:\n{summary}\n\n{/summary}\
{#history}Click history, oldest first:\n{history}\n\n{/history}\
{#recent}Most recent clicks, oldest first:\n{recent}\n\n{/recent}\
Candidate article:\n{candidate}\n\n\
Will the user click the candidate article? Answer {yes} or {no}.";

const PRODUCTS_BLOCK: &str =
    "Below are products a user viewed in one shopping session, in order:\n\
{items}\n\n\
Describe this user's shopping preferences in a few sentences: the kinds of products, brands, \
price range and features they look for. Reply with the description only.";

const PRODUCTS_UPDATE: &str = "Here is a description of a user's shopping preferences so far:\n\
{summary}\n\n\
Below are the products the same user viewed next, in order:\n{items}\n\n\
Rewrite the description so that it covers both the earlier preferences and the new products. It \
must stand on its own, without referring to an earlier description. Reply with the description \
only.";

const PRODUCTS_MERGE: &str = "Below are descriptions of one user's shopping preferences, each \
written from a consecutive stretch of their browsing, oldest first:\n{summaries}\n\n\
Combine them into one description of the user's shopping preferences, giving weight to \
preferences that recur and to the most recent ones. Reply with the description only.";

const PRODUCTS_RECOMMEND: &str = "Decide whether the user will choose the candidate product next. \
{#summary}The preference summary describes the user's long-term preferences. {/summary}\
{#history}The browsing history shows every product the user viewed. {/history}\
{#recent}The most recently viewed products show the user's short-term interest. {/recent}\
Answer with {yes} or {no} only.\n\n\
{#summary}Preference summary:\n{summary}\n\n{/summary}\
{#history}Browsing history, oldest first:\n{history}\n\n{/history}\
{#recent}Most recently viewed products, oldest first:\n{recent}\n\n{/recent}\
Candidate product:\n{candidate}\n\n\
Will the user choose the candidate product next? Answer {yes} or {no}.";

/// A Python triple-quoted string opened at the end of a line and closed on its own
/// line at `indent` spaces, around one line of text at the same indent:
/// `'''\n<indent>text\n<indent>'''`.
fn py_indented(indent: usize, text: &str) -> String {
    let pad = " ".repeat(indent);
    format!("\n{pad}{text}\n{pad}")
}

/// The reference's strings for one dataset.
struct ReferenceStrings {
    /// Indent of the block instruction in `summary_generation_hierarchical`.
    hierarchical_indent: usize,
    /// Indent of the instructions in `summary_generation_recurrent`.
    recurrent_indent: usize,
    /// The block instruction, up to its source line's end (`\n` escape included).
    block: &'static str,
    block_label: &'static str,
    update: &'static str,
    update_label: &'static str,
    /// `prompt_text` of `LLM-TRSR/test.py` without its `### User:\n`.
    recommend: &'static str,
    history_label: &'static str,
    next_label: &'static str,
}

const MIND_REFERENCE: ReferenceStrings = ReferenceStrings {
    hierarchical_indent: 12,
    recurrent_indent: 16,
    block: "Given the historical news reading data of a user, including the categories, titles, \
and abstracts of the news they have read, craft a concise summary that captures the user's news \
reading preferences. \n",
    block_label: "[news reading data]",
    update: "Given the following summary of a user's news reading preference, and a list of recent \
news they have read, analyze whether the user's news reading preferences and habits have changed. \
Taking into account both the existing summary of user preferences and the user\u{2019}s most recent \
reading records, generate an updated concise summary that captures the user's news reading \
preferences. Note that the newly generated summary of user preferences should be consistent with \
the format of the previous Preference Summary. It should serve as a complete summary of the user, \
rather than a separate narrative of the user's original summary and current preferences. \n",
    update_label: "[Recent news reading data]",
    recommend: "Given a news reading preference summary of the user, and information related to \
the historical news the user has read, predict whether the user will click on the given next news. \
Note that the preference summary captures long-term interests, while the recent five news indicate \
short term interests. Both of them should be holistically considered for a more comprehensive \
understanding of user behavior. Please output 'yes' or 'no'.",
    history_label: "[Historical News]",
    next_label: "[Next News]",
};

const AMAZON_REFERENCE: ReferenceStrings = ReferenceStrings {
    hierarchical_indent: 12,
    recurrent_indent: 12,
    block:
        "Given the above historical purchase data of a user, including the titles, descriptions, \
and attributes of the items they have bought, craft a concise summary that captures the user's \
preferences, personality, and shopping habits. \n",
    block_label: "[historical purchase data]",
    update: "Given the following summary of a user's preferences and a list of recent purchases \
they have made, analyze whether the user's shopping preferences and habits have changed. Taking \
into account both the existing summary of user preferences and the user\u{2019}s most recent \
purchase records, generate an updated concise summary that captures the user's preferences, \
personality, and shopping habits. Note that the newly generated summary of user preferences should \
be consistent with the format of the previous Preference Summary. It should serve as a complete \
summary of the user, rather than a separate narrative of the user's original summary and current \
preferences. \n",
    update_label: "[Recent purchase data]",
    recommend: "Given a preference summary of the user, and information related to the historical \
items the user has purchased, predict whether the user will click on the given next product. Note \
that the preference summary captures long-term interests, while the recent items indicate short \
term interests. Both of them should be holistically considered for a more comprehensive \
understanding of user behavior. Please output 'yes' or 'no'.",
    history_label: "[Historical Items]",
    next_label: "[Next Item]",
};

/// The merge instruction (both datasets), indented 8 in `summary_generation_hierarchical`.
const MERGE_INDENT: usize = 8;
const MERGE: &str =
    "Given a series of user preferences summaries arranged in chronological order, \
generate a concise summary that encapsulates the user's overall preference. Note that the newly \
generated summary of user preferences should be consistent with the format of the given \
summaries.\n";

/// Placeholders each template may use (and must use, for the first group).
const BLOCK_VARS: &[&str] = &["items"];
const UPDATE_VARS: &[&str] = &["summary", "items"];
const MERGE_VARS: &[&str] = &["summaries"];
const RECOMMEND_VARS: &[&str] = &["summary", "recent", "history", "candidate", "yes", "no"];

impl Templates {
    /// Whether the answer tokens are the vocabulary entries spelled exactly `yes` / `no`
    /// (the reference's `convert_tokens_to_ids`), rather than the first token of each
    /// word: so with the verbatim (reference) form. The CLI and the window both load
    /// the model by this rule.
    pub fn answer_by_vocab(&self) -> bool {
        self.form == PromptForm::Verbatim
    }

    /// The default wording for news (MIND).
    pub fn news() -> Self {
        Self {
            form: PromptForm::Chat,
            summarize_first: None,
            system: Some(
                "You help a news website understand its readers. Follow the instructions exactly."
                    .into(),
            ),
            summarize_block: NEWS_BLOCK.into(),
            summarize_update: NEWS_UPDATE.into(),
            summarize_merge: NEWS_MERGE.into(),
            recommend: NEWS_RECOMMEND.into(),
            yes: "yes".into(),
            no: "no".into(),
        }
    }

    /// The default wording for products (Amazon-M2).
    pub fn products() -> Self {
        Self {
            form: PromptForm::Chat,
            summarize_first: None,
            system: Some(
                "You help an online shop understand its customers. Follow the instructions exactly."
                    .into(),
            ),
            summarize_block: PRODUCTS_BLOCK.into(),
            summarize_update: PRODUCTS_UPDATE.into(),
            summarize_merge: PRODUCTS_MERGE.into(),
            recommend: PRODUCTS_RECOMMEND.into(),
            yes: "yes".into(),
            no: "no".into(),
        }
    }

    pub fn for_wording(w: Wording) -> Self {
        match w {
            Wording::News => Self::news(),
            Wording::Products => Self::products(),
        }
    }

    /// The reference code's prompts for MIND or Amazon-M2, byte for byte (see
    /// [`PromptForm::Verbatim`]).
    pub fn reference(w: ReferenceWording) -> Self {
        let r = match w {
            ReferenceWording::Mind => &MIND_REFERENCE,
            ReferenceWording::Amazon => &AMAZON_REFERENCE,
        };
        // `'### User:\n' + instruction + '[label]:\n' + '\n'.join(sentences) + '\n### Assistant:\n'`
        let block = |indent: usize| {
            format!(
                "### User:\n{}{}:\n{{items}}\n### Assistant:\n",
                py_indented(indent, r.block),
                r.block_label
            )
        };
        Self {
            form: PromptForm::Verbatim,
            system: None,
            summarize_block: block(r.hierarchical_indent),
            summarize_first: Some(block(r.recurrent_indent)),
            summarize_update: format!(
                "### User:\n{}[Previous Preference Summary]:\n{{summary}}\n{}:\n{{items}}\n### Assistant:\n",
                py_indented(r.recurrent_indent, r.update),
                r.update_label
            ),
            summarize_merge: format!(
                "### User:\n{}{{summaries}}\n### Assistant:\n",
                py_indented(MERGE_INDENT, MERGE)
            ),
            recommend: format!(
                "### User:\n{}\n[Preference Summary]\n{{summary}}\n{}\n{{recent}}\n{}\n{{candidate}}\n### Assistant:\n",
                r.recommend, r.history_label, r.next_label
            ),
            yes: "yes".into(),
            no: "no".into(),
        }
    }

    /// The preset these templates belong to: `reference` for the verbatim form.
    pub fn preset(&self) -> crate::preset::Preset {
        match self.form {
            PromptForm::Chat => crate::preset::Preset::Workbench,
            PromptForm::Verbatim => crate::preset::Preset::Reference,
        }
    }

    /// The first recurrent step's template.
    pub fn first_template(&self) -> &str {
        self.summarize_first
            .as_deref()
            .unwrap_or(&self.summarize_block)
    }

    /// The exact prompt for a filled template: as it is under
    /// [`PromptForm::Verbatim`], else in the model's chat template (with `system`).
    pub fn render(
        &self,
        lm: &dyn crate::lm::LanguageModel,
        filled: String,
    ) -> anyhow::Result<String> {
        match self.form {
            PromptForm::Verbatim => Ok(filled),
            PromptForm::Chat => lm.render_chat(&self.messages(filled)),
        }
    }

    /// A list of items (or recent items) as this form writes it.
    pub fn item_list(&self, lines: &[String]) -> String {
        match self.form {
            PromptForm::Chat => numbered(lines),
            PromptForm::Verbatim => lines.join("\n"),
        }
    }

    /// The ordered partial summaries as this form writes them.
    pub fn summary_list(&self, summaries: &[String]) -> String {
        match self.form {
            PromptForm::Chat => numbered(summaries),
            // `[f'[Preference Summary {j}:\n]' + s for j, s in enumerate(...)]`, joined by `\n`
            PromptForm::Verbatim => summaries
                .iter()
                .enumerate()
                .map(|(j, s)| format!("[Preference Summary {j}:\n]{s}"))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// A generated summary as it is kept: trimmed, except under
    /// [`PromptForm::Verbatim`] (the reference keeps the pipeline's text as it is).
    pub fn keep_output(&self, generated: &str) -> String {
        match self.form {
            PromptForm::Chat => generated.trim().to_string(),
            PromptForm::Verbatim => generated.to_string(),
        }
    }

    /// Reads and checks a RON template file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read templates file {}", path.display()))?;
        let t: Templates = ron::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: not a valid templates file: {}",
                path.display(),
                e.span.start.line,
                e.span.start.col,
                e.code
            )
        })?;
        t.validate()
            .with_context(|| format!("templates file {}", path.display()))?;
        Ok(t)
    }

    /// Writes the templates as pretty RON.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = self.to_ron()?;
        std::fs::write(path, text)
            .with_context(|| format!("could not write templates file {}", path.display()))
    }

    /// The templates as pretty RON text.
    pub fn to_ron(&self) -> anyhow::Result<String> {
        let cfg = ron::ser::PrettyConfig::new()
            .struct_names(true)
            .escape_strings(false);
        ron::ser::to_string_pretty(self, cfg).context("could not write templates as RON")
    }

    /// Checks that each template uses only its placeholders and has the required ones.
    pub fn validate(&self) -> Result<(), TemplateError> {
        check(
            "summarize_block",
            &self.summarize_block,
            BLOCK_VARS,
            &["items"],
        )?;
        if let Some(first) = &self.summarize_first {
            check("summarize_first", first, BLOCK_VARS, &["items"])?;
        }
        check(
            "summarize_update",
            &self.summarize_update,
            UPDATE_VARS,
            &["summary", "items"],
        )?;
        check(
            "summarize_merge",
            &self.summarize_merge,
            MERGE_VARS,
            &["summaries"],
        )?;
        check("recommend", &self.recommend, RECOMMEND_VARS, &["candidate"])?;
        for (field, word) in [("yes", &self.yes), ("no", &self.no)] {
            if word.trim().is_empty() {
                return Err(TemplateError {
                    template: field.into(),
                    message: "the answer word must not be empty".into(),
                });
            }
        }
        Ok(())
    }

    /// Messages for one summarizer / recommender prompt (system first when set).
    pub fn messages(&self, user: String) -> Vec<crate::lm::ChatMessage> {
        let mut m = Vec::with_capacity(2);
        if let Some(s) = &self.system {
            if !s.trim().is_empty() {
                m.push(crate::lm::ChatMessage::system(s.clone()));
            }
        }
        m.push(crate::lm::ChatMessage::user(user));
        m
    }

    /// The block prompt (user message) for the given item texts.
    pub fn block_prompt(&self, item_texts: &[String]) -> String {
        let items = self.item_list(item_texts);
        fill(&self.summarize_block, &[("items", Some(&items))])
    }

    /// The first recurrent step's prompt (the block prompt unless `summarize_first`).
    pub fn first_prompt(&self, item_texts: &[String]) -> String {
        let items = self.item_list(item_texts);
        fill(self.first_template(), &[("items", Some(&items))])
    }

    /// The recurrent update prompt.
    pub fn update_prompt(&self, summary: &str, item_texts: &[String]) -> String {
        let items = self.item_list(item_texts);
        fill(
            &self.summarize_update,
            &[("summary", Some(summary)), ("items", Some(&items))],
        )
    }

    /// The merge prompt for the ordered partial summaries.
    pub fn merge_prompt(&self, summaries: &[String]) -> String {
        let s = self.summary_list(summaries);
        fill(&self.summarize_merge, &[("summaries", Some(&s))])
    }
}

/// Items or summaries as numbered lines: `1. ...`.
pub fn numbered(lines: &[String]) -> String {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{}. {}", i + 1, l.trim()));
    }
    out
}

/// A template that uses an unknown placeholder or lacks a required one.
#[derive(Debug, thiserror::Error)]
#[error("template `{template}`: {message}")]
pub struct TemplateError {
    pub template: String,
    pub message: String,
}

/// One parsed piece of a template.
#[derive(Debug, PartialEq)]
enum Tag<'a> {
    Var(&'a str),
    Open(&'a str),
    Close(&'a str),
}

/// If `s` starts with a tag (`{name}`, `{#name}`, `{/name}`), returns it and its length.
fn tag_at(s: &str) -> Option<(Tag<'_>, usize)> {
    let rest = s.strip_prefix('{')?;
    let end = rest.find('}')?;
    let inner = &rest[..end];
    let (kind, name) = if let Some(n) = inner.strip_prefix('#') {
        (1, n)
    } else if let Some(n) = inner.strip_prefix('/') {
        (2, n)
    } else {
        (0, inner)
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let tag = match kind {
        0 => Tag::Var(name),
        1 => Tag::Open(name),
        _ => Tag::Close(name),
    };
    Some((tag, end + 2))
}

/// Names used by a template, and whether its sections are balanced.
fn check(
    name: &str,
    template: &str,
    allowed: &[&str],
    required: &[&str],
) -> Result<(), TemplateError> {
    let err = |message: String| TemplateError {
        template: name.into(),
        message,
    };
    let mut used: Vec<&str> = Vec::new();
    let mut open: Vec<&str> = Vec::new();
    let mut i = 0;
    while let Some(off) = template[i..].find('{') {
        i += off;
        match tag_at(&template[i..]) {
            Some((tag, len)) => {
                match tag {
                    Tag::Var(n) => {
                        if !allowed.contains(&n) {
                            return Err(err(format!(
                                "unknown placeholder `{{{n}}}` (this template may use: {})",
                                allowed.join(", ")
                            )));
                        }
                        used.push(n);
                    }
                    Tag::Open(n) => {
                        if !allowed.contains(&n) {
                            return Err(err(format!(
                                "unknown section `{{#{n}}}` (this template may use: {})",
                                allowed.join(", ")
                            )));
                        }
                        open.push(n);
                    }
                    Tag::Close(n) => match open.pop() {
                        Some(o) if o == n => {}
                        Some(o) => {
                            return Err(err(format!("section `{{#{o}}}` is closed by `{{/{n}}}`")))
                        }
                        None => return Err(err(format!("`{{/{n}}}` closes no section"))),
                    },
                }
                i += len;
            }
            None => i += 1,
        }
    }
    if let Some(o) = open.pop() {
        return Err(err(format!(
            "section `{{#{o}}}` is never closed (add `{{/{o}}}`)"
        )));
    }
    for r in required {
        if !used.contains(r) {
            return Err(err(format!("the placeholder `{{{r}}}` is required")));
        }
    }
    Ok(())
}

/// Fills a template. A section is kept when its value is `Some`; a placeholder
/// without a value renders as nothing. Unknown tags are kept as literal text.
pub fn fill(template: &str, values: &[(&str, Option<&str>)]) -> String {
    let value = |n: &str| values.iter().find(|(k, _)| *k == n).and_then(|(_, v)| *v);
    let mut out = String::with_capacity(template.len() + 256);
    // Names of sections being skipped (depth counter per skipped section).
    let mut skipping: Option<(&str, usize)> = None;
    let mut i = 0;
    let bytes_len = template.len();
    while i < bytes_len {
        let rest = &template[i..];
        let Some(off) = rest.find('{') else {
            if skipping.is_none() {
                out.push_str(rest);
            }
            break;
        };
        if skipping.is_none() {
            out.push_str(&rest[..off]);
        }
        i += off;
        match tag_at(&template[i..]) {
            Some((tag, len)) => {
                i += len;
                match (&mut skipping, tag) {
                    (Some((name, depth)), Tag::Open(n)) if *name == n => *depth += 1,
                    (Some((name, depth)), Tag::Close(n)) if *name == n => {
                        if *depth == 0 {
                            skipping = None;
                        } else {
                            *depth -= 1;
                        }
                    }
                    (Some(_), _) => {}
                    (None, Tag::Var(n)) => match values.iter().find(|(k, _)| *k == n) {
                        Some((_, v)) => out.push_str(v.unwrap_or("")),
                        None => out.push_str(&template[i - len..i]),
                    },
                    (None, Tag::Open(n)) => {
                        if value(n).is_none() {
                            skipping = Some((n, 0));
                        }
                    }
                    (None, Tag::Close(_)) => {}
                }
            }
            None => {
                if skipping.is_none() {
                    out.push('{');
                }
                i += 1;
            }
        }
    }
    out
}

/// Guesses the dataset's kind from its items' fields.
pub fn guess_wording(catalogue: &crate::data::Catalogue) -> Option<Wording> {
    let mut news = 0;
    let mut products = 0;
    for item in catalogue.items().iter().take(200) {
        if item.field("subcategory").is_some() || item.field("category").is_some() {
            news += 1;
        }
        if item.field("price").is_some() || item.field("brand").is_some() {
            products += 1;
        }
    }
    match (news, products) {
        (0, 0) => None,
        (n, p) if p >= n => Some(Wording::Products),
        _ => Some(Wording::News),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_templates_are_valid() {
        Templates::news().validate().unwrap();
        Templates::products().validate().unwrap();
    }

    #[test]
    fn sections_are_dropped_without_a_value() {
        let t = "A{#summary} S={summary}.{/summary}{#recent} R={recent}.{/recent} C={candidate}";
        let s = fill(
            t,
            &[
                ("summary", None),
                ("recent", Some("r1")),
                ("candidate", Some("c")),
            ],
        );
        assert_eq!(s, "A R=r1. C=c");
        let s = fill(
            t,
            &[
                ("summary", Some("sum")),
                ("recent", None),
                ("candidate", Some("c")),
            ],
        );
        assert_eq!(s, "A S=sum. C=c");
    }

    #[test]
    fn literal_braces_survive() {
        assert_eq!(
            fill("{\"a\": {x}} {Y}", &[("x", Some("1"))]),
            "{\"a\": 1} {Y}"
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let mut t = Templates::news();
        t.summarize_update = "only {items}".into();
        let e = t.validate().unwrap_err().to_string();
        assert!(
            e.contains("summarize_update") && e.contains("{summary}"),
            "{e}"
        );
        let mut t = Templates::news();
        t.recommend = "{#summary}x {candidate}".into();
        let e = t.validate().unwrap_err().to_string();
        assert!(e.contains("never closed"), "{e}");
        let mut t = Templates::news();
        t.summarize_block = "{items} {user}".into();
        let e = t.validate().unwrap_err().to_string();
        assert!(e.contains("unknown placeholder `{user}`"), "{e}");
    }

    #[test]
    fn ron_round_trip_and_asset_files_match_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.ron");
        Templates::products().save(&p).unwrap();
        assert_eq!(Templates::load(&p).unwrap(), Templates::products());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/templates");
        assert_eq!(
            Templates::load(&root.join("news.ron")).unwrap(),
            Templates::news()
        );
        assert_eq!(
            Templates::load(&root.join("products.ron")).unwrap(),
            Templates::products()
        );
    }

    #[test]
    fn bad_ron_error_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.ron");
        std::fs::write(&p, "Templates(\n  system: None,\n  summarize_block: 3,\n)").unwrap();
        let e = format!("{:#}", Templates::load(&p).unwrap_err());
        assert!(e.contains("bad.ron:3:"), "{e}");
    }
}
