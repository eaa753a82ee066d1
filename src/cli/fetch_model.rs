//! `trsr fetch-model`.

#[derive(clap::Args, Debug, Clone)]
pub struct FetchModelArgs {}

pub fn run(_args: FetchModelArgs) -> anyhow::Result<()> {
    anyhow::bail!("`trsr fetch-model` is not built yet")
}
