//! `trsr export`.

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {}

pub fn run(_args: ExportArgs) -> anyhow::Result<()> {
    anyhow::bail!("`trsr export` is not built yet")
}
