//! `trsr summarize`.

#[derive(clap::Args, Debug, Clone)]
pub struct SummarizeArgs {}

pub fn run(_args: SummarizeArgs) -> anyhow::Result<()> {
    anyhow::bail!("`trsr summarize` is not built yet")
}
