//! `trsr score`.

#[derive(clap::Args, Debug, Clone)]
pub struct ScoreArgs {}

pub fn run(_args: ScoreArgs) -> anyhow::Result<()> {
    anyhow::bail!("`trsr score` is not built yet")
}
