//! `trsr prepare`.

#[derive(clap::Args, Debug, Clone)]
pub struct PrepareArgs {}

pub fn run(_args: PrepareArgs) -> anyhow::Result<()> {
    anyhow::bail!("`trsr prepare` is not built yet")
}
