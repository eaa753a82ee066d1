//! `trsr gui`.

#[derive(clap::Args, Debug, Default, Clone)]
pub struct GuiArgs {}

pub fn run(_args: GuiArgs) -> anyhow::Result<()> {
    anyhow::bail!("`trsr gui` is not built yet")
}
