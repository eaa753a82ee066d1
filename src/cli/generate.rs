//! `trsr generate`: stream a model's continuation of a prompt to stdout.

use std::io::Write;

use anyhow::Context;

use crate::llm::source::ModelRef;
use crate::llm::{DevicePref, Engine, LoadOptions};
use crate::lm::{CancelToken, ChatMessage, LanguageModel, SamplingParams};

#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    /// Model: `default`, a path to a GGUF file, `hf:owner/repo/file.gguf`, or an
    /// OpenAI-compatible server `http://HOST:PORT/v1`.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// The prompt text.
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// With --chat: use a plain `### User:` / `### Assistant:` form instead of the chat template.
    #[arg(long)]
    pub raw: bool,
    #[arg(long, default_value_t = 150)]
    pub max_new_tokens: usize,
    /// 0 means greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long, default_value_t = 1.1)]
    pub repeat_penalty: f32,
    /// Stop when the output contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Force the CPU even when a GPU is available.
    #[arg(long)]
    pub cpu: bool,
    /// A PEFT LoRA adapter folder to put on the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<std::path::PathBuf>,
    /// Accept an adapter whose config names another base model.
    #[arg(long)]
    pub ignore_adapter_base: bool,
    #[command(flatten)]
    pub remote: super::batch::RemoteArgs,
}

/// The model `--model` names: a server (`http(s)://…/v1`) or the in-process engine.
fn load(args: &GenerateArgs) -> anyhow::Result<Box<dyn LanguageModel>> {
    if crate::remote::is_remote_ref(&args.model) {
        if args.adapter.is_some() {
            anyhow::bail!("--adapter applies to a local model, not to a server model");
        }
        let mut servers = args.remote.connect(&args.model, args.raw, "yes", "no")?;
        let server = servers.remove(0);
        eprintln!(
            "server {} ({}): model {}, context {} tokens",
            server.url(),
            server.kind().tag(),
            server.served_model(),
            server.identity().context_len
        );
        return Ok(Box::new(server));
    }
    Ok(Box::new(load_engine(args)?))
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let mut engine = load(&args)?;
    generate_with(&args, engine.as_mut())
}

fn load_engine(args: &GenerateArgs) -> anyhow::Result<Engine> {
    let model: ModelRef = args
        .model
        .parse()
        .map_err(|e| anyhow::anyhow!("--model {}: {e}", args.model))?;
    let opts = LoadOptions {
        device: if args.cpu {
            DevicePref::Cpu
        } else {
            DevicePref::Auto
        },
        threads: args.threads,
        raw_prompt: args.raw,
        adapter: args.adapter.clone(),
        ignore_adapter_base: args.ignore_adapter_base,
        ..LoadOptions::default()
    };
    let engine =
        Engine::load(&model, &opts).with_context(|| format!("loading model {}", args.model))?;
    let info = engine.info();
    eprintln!(
        "model {} ({}, {:.0}M params, {}) on {}, loaded in {:.0} ms",
        info.identity.name,
        info.identity.architecture,
        info.n_params as f64 / 1e6,
        info.weight_form,
        info.device,
        info.load_ms
    );
    Ok(engine)
}

fn generate_with(args: &GenerateArgs, engine: &mut dyn LanguageModel) -> anyhow::Result<()> {
    let prompt = if args.chat {
        engine.render_chat(&[ChatMessage::user(args.prompt.clone())])?
    } else {
        args.prompt.clone()
    };
    let defaults = SamplingParams::default();
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k.or(if args.temperature > 0.0 {
            defaults.top_k
        } else {
            None
        }),
        top_p: args.top_p.or(if args.temperature > 0.0 {
            defaults.top_p
        } else {
            None
        }),
        repeat_penalty: args.repeat_penalty,
        seed: args.seed,
        max_new_tokens: args.max_new_tokens,
        stop: args.stop.clone(),
        ..defaults
    };
    let cancel = CancelToken::new();
    {
        let c = cancel.clone();
        // Ctrl-C stops the generation at the next token; a handler may already exist.
        let _ = ctrlc::set_handler(move || c.cancel());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_err = None;
    let generated = engine.generate(&prompt, &params, &cancel, &mut |d| {
        if write_err.is_none() {
            if let Err(e) = out.write_all(d.text.as_bytes()).and_then(|_| out.flush()) {
                write_err = Some(e);
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(e).context("writing to stdout");
    }
    writeln!(out).context("writing to stdout")?;
    let prefill_tps = if generated.prefill_ms > 0.0 {
        generated.prompt_tokens as f64 / (generated.prefill_ms / 1000.0)
    } else {
        0.0
    };
    eprintln!(
        "prompt {} tokens in {:.0} ms ({:.1} tokens/s); generated {} tokens in {:.0} ms ({:.1} tokens/s); stop: {:?}",
        generated.prompt_tokens,
        generated.prefill_ms,
        prefill_tps,
        generated.new_tokens,
        generated.decode_ms,
        generated.decode_tokens_per_sec(),
        generated.stop
    );
    Ok(())
}
