// placeholder: replaced by engine-io's version at merge
//! Model references: `default`, a local path, or a Hugging Face repo + file.

use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    Default,
    Path(PathBuf),
    Hub {
        repo: String,
        file: String,
        revision: Option<String>,
    },
}

impl FromStr for ModelRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "default" {
            return Ok(ModelRef::Default);
        }
        if let Some(rest) = s.strip_prefix("hf:") {
            let parts: Vec<&str> = rest.splitn(3, '/').collect();
            if parts.len() == 3 {
                return Ok(ModelRef::Hub {
                    repo: format!("{}/{}", parts[0], parts[1]),
                    file: parts[2].to_string(),
                    revision: None,
                });
            }
            return Err(format!("`{s}`: expected hf:owner/repo/file.gguf"));
        }
        Ok(ModelRef::Path(PathBuf::from(s)))
    }
}

impl ModelRef {
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        match self {
            ModelRef::Default => super::fetch::ensure_default_model(),
            ModelRef::Path(p) => {
                if p.is_file() {
                    Ok(p.clone())
                } else {
                    anyhow::bail!("model file not found: {}", p.display())
                }
            }
            ModelRef::Hub { repo, file, .. } => {
                anyhow::bail!(
                    "Hugging Face references ({repo} {file}) are not supported in this build"
                )
            }
        }
    }
}

/// SHA-256 hex of a file (streamed).
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
