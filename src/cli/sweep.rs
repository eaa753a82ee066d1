//! `trsr sweep`.

#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {}

pub fn run(_args: SweepArgs) -> anyhow::Result<()> {
    anyhow::bail!("`trsr sweep` is not built yet")
}
