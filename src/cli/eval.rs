//! `trsr eval`.

#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {}

pub fn run(_args: EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("`trsr eval` is not built yet")
}
