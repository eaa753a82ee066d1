//! `trsr generate`.

#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {}

pub fn run(_args: GenerateArgs) -> anyhow::Result<()> {
    anyhow::bail!("`trsr generate` is not built yet")
}
