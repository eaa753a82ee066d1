// placeholder: replaced by engine-io's version at merge
//! Chat templates (minijinja) and the paper's raw prompt form.

use candle_core::quantized::gguf_file;

use super::tokenizer::Tokenizer;
use super::LlmError;
use crate::lm::ChatMessage;

pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    pub fn from_gguf(
        content: &gguf_file::Content,
        tok: &Tokenizer,
    ) -> Result<Option<Self>, LlmError> {
        let Some(t) = content.metadata.get("tokenizer.chat_template") else {
            return Ok(None);
        };
        let template = t.to_string()?;
        let name = |id: Option<u32>| -> String {
            id.and_then(|i| tok.decode(&[i]).ok()).unwrap_or_default()
        };
        let bos = name(tok.bos_id());
        let eos = name(tok.eos_ids().first().copied());
        Self::from_str(template, &bos, &eos).map(Some)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn from_str(template: &str, bos: &str, eos: &str) -> Result<Self, LlmError> {
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_template_owned("chat", template.to_string())
            .map_err(|e| LlmError::Template(e.to_string()))?;
        Ok(Self {
            env,
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, LlmError> {
        let t = self
            .env
            .get_template("chat")
            .map_err(|e| LlmError::Template(e.to_string()))?;
        t.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| LlmError::Template(e.to_string()))
    }
}

/// The paper's plain form: "### User:\n{..}\n\n### Assistant:\n"
pub fn render_raw(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        let role = match m.role.as_str() {
            "assistant" => "Assistant",
            "system" => "System",
            _ => "User",
        };
        out.push_str(&format!("### {role}:\n{}\n\n", m.content));
    }
    out.push_str("### Assistant:\n");
    out
}
