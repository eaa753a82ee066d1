//! Where a model file comes from: the default model, a local path, or a Hugging Face
//! repository file (local hf-hub cache first, then a download).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use hf_hub::{Cache, Repo, RepoType};

use super::LlmError;

/// A model reference as users write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    /// The default model (SmolLM2-135M-Instruct Q4_1), fetched by `trsr fetch-model`.
    Default,
    /// A local file.
    Path(PathBuf),
    /// A file in a Hugging Face repository.
    Hub {
        repo: String,
        file: String,
        revision: Option<String>,
    },
}

/// Why a model reference could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("model reference {input:?}: {reason} (write `default`, a path to a .gguf file, `hf:owner/repo/file.gguf` or `owner/repo:file.gguf`)")]
pub struct ModelRefParseError {
    pub input: String,
    pub reason: String,
}

fn valid_repo(repo: &str) -> bool {
    let mut parts = repo.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    ok(owner) && ok(name)
}

/// `owner/repo` or `owner/repo@revision`.
fn split_revision(repo: &str) -> (String, Option<String>) {
    match repo.split_once('@') {
        Some((r, rev)) if !rev.is_empty() => (r.to_string(), Some(rev.to_string())),
        _ => (repo.to_string(), None),
    }
}

impl FromStr for ModelRef {
    type Err = ModelRefParseError;

    /// `default` | an existing path | `hf:owner/repo[@rev]/path/file.gguf` |
    /// `owner/repo[@rev]:path/file.gguf`. Anything else is taken as a path (which `resolve`
    /// reports as missing if it is).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ModelRefParseError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(err("empty"));
        }
        if t.eq_ignore_ascii_case("default") {
            return Ok(ModelRef::Default);
        }
        if let Some(rest) = t.strip_prefix("hf:") {
            let mut parts = rest.splitn(3, '/');
            let (Some(owner), Some(name), Some(file)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(err("a Hugging Face reference needs owner/repo/file"));
            };
            let (name, revision) = split_revision(name);
            let repo = format!("{owner}/{name}");
            if !valid_repo(&repo) || file.is_empty() {
                return Err(err("a Hugging Face reference needs owner/repo/file"));
            }
            return Ok(ModelRef::Hub {
                repo,
                file: file.to_string(),
                revision,
            });
        }
        let path = PathBuf::from(t);
        if path.exists() {
            return Ok(ModelRef::Path(path));
        }
        if let Some((repo, file)) = t.split_once(':') {
            let (repo, revision) = split_revision(repo);
            if valid_repo(&repo)
                && !file.is_empty()
                && !file.starts_with('/')
                && !file.starts_with('\\')
            {
                return Ok(ModelRef::Hub {
                    repo,
                    file: file.to_string(),
                    revision,
                });
            }
        }
        Ok(ModelRef::Path(path))
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Default => write!(f, "default"),
            ModelRef::Path(p) => write!(f, "{}", p.display()),
            ModelRef::Hub {
                repo,
                file,
                revision: None,
            } => write!(f, "hf:{repo}/{file}"),
            ModelRef::Hub {
                repo,
                file,
                revision: Some(rev),
            } => {
                let (owner, name) = repo.split_once('/').unwrap_or((repo.as_str(), ""));
                write!(f, "hf:{owner}/{name}@{rev}/{file}")
            }
        }
    }
}

/// Where and how to look for Hugging Face files.
#[derive(Clone, Debug, Default)]
pub struct HubOptions {
    /// The hf-hub cache folder (`.../huggingface/hub`); `None`: `$HF_HOME/hub` or
    /// `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// The hub address; `None`: `$HF_ENDPOINT` or https://huggingface.co.
    pub endpoint: Option<String>,
    /// Never download (also set by `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Show a download progress bar.
    pub progress: bool,
}

impl HubOptions {
    /// Settings from the environment (`HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`).
    pub fn from_env() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"));
        Self {
            cache_dir: None,
            endpoint: std::env::var("HF_ENDPOINT").ok(),
            offline,
            progress: true,
        }
    }

    fn cache(&self) -> Cache {
        match &self.cache_dir {
            Some(dir) => Cache::new(dir.clone()),
            None => Cache::from_env(),
        }
    }
}

/// File name of the default model.
pub use super::fetch::DEFAULT_MODEL_FILE;

use super::fetch::ensure_default_model;

impl ModelRef {
    /// Local file for this reference: the default path (fetching it if missing via fetch::ensure_default_model),
    /// the path itself (clear error if missing), or the hf-hub local cache first, then a download;
    /// offline: an error naming what to download and where to put it.
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        self.resolve_with(&HubOptions::from_env())
    }

    /// [`ModelRef::resolve`] with explicit hub settings.
    pub fn resolve_with(&self, hub: &HubOptions) -> anyhow::Result<PathBuf> {
        match self {
            ModelRef::Default => ensure_default_model(),
            ModelRef::Path(p) => resolve_path(p),
            ModelRef::Hub {
                repo,
                file,
                revision,
            } => resolve_hub(repo, file, revision.as_deref(), hub),
        }
    }
}

fn resolve_path(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_dir() {
        // A Hugging Face folder, or the folder `trsr train --full` writes.
        if p.join("config.json").is_file() || p.join(super::full::GGUF_FILE).is_file() {
            return Ok(p.to_path_buf());
        }
        anyhow::bail!(
            "{} is a folder without a model (no config.json, no {}); name the model file \
             inside it (a .gguf file)",
            p.display(),
            super::full::GGUF_FILE
        );
    }
    if !p.is_file() {
        return Err(LlmError::NotFound(p.to_path_buf()).into());
    }
    Ok(p.to_path_buf())
}

fn resolve_hub(
    repo: &str,
    file: &str,
    revision: Option<&str>,
    hub: &HubOptions,
) -> anyhow::Result<PathBuf> {
    let rev = revision.unwrap_or("main");
    let cache = hub.cache();
    let hf_repo = Repo::with_revision(repo.to_string(), RepoType::Model, rev.to_string());
    if let Some(path) = cache.repo(hf_repo.clone()).get(file) {
        return Ok(path);
    }
    // A revision given as a commit hash has a snapshot folder but no ref file.
    let snapshot = cache
        .path()
        .join(hf_repo.folder_name())
        .join("snapshots")
        .join(rev)
        .join(file);
    if snapshot.is_file() {
        return Ok(snapshot);
    }

    let endpoint = hub
        .endpoint
        .clone()
        .unwrap_or_else(|| "https://huggingface.co".to_string());
    let where_to_put = format!(
        "{cache}/{folder}/snapshots/<commit>/{file} with {cache}/{folder}/refs/{rev} holding <commit>",
        cache = cache.path().display(),
        folder = hf_repo.folder_name(),
    );
    let instructions = format!(
        "download {endpoint}/{repo}/resolve/{rev}/{file} on a machine that is online and either pass its path as the model \
         (e.g. --model /path/to/{name}) or place it in the Hugging Face cache as {where_to_put}",
        name = Path::new(file).file_name().map_or(file.to_string(), |n| n.to_string_lossy().into_owned()),
    );
    if hub.offline {
        anyhow::bail!("{file} from Hugging Face repo {repo} (revision {rev}) is not in the local cache and downloads are off (offline); {instructions}");
    }
    let mut builder = hf_hub::api::sync::ApiBuilder::from_cache(cache)
        .with_progress(hub.progress)
        .with_endpoint(endpoint.clone());
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let api = builder
        .build()
        .with_context(|| format!("setting up the Hugging Face client for {repo}"))?;
    api.repo(hf_repo).get(file).map_err(|e| {
        anyhow::anyhow!(
            "could not download {file} from Hugging Face repo {repo} (revision {rev}): {e}; {instructions}"
        )
    })
}

/// SHA-256 hex of a file (streamed).
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(repo: &str, file: &str, revision: Option<&str>) -> ModelRef {
        ModelRef::Hub {
            repo: repo.into(),
            file: file.into(),
            revision: revision.map(str::to_string),
        }
    }

    #[test]
    fn parses_every_written_form() {
        assert_eq!("default".parse::<ModelRef>().unwrap(), ModelRef::Default);
        assert_eq!("DEFAULT".parse::<ModelRef>().unwrap(), ModelRef::Default);
        assert_eq!(
            "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2.q4.gguf"
                .parse::<ModelRef>()
                .unwrap(),
            hub(
                "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
                "smollm2.q4.gguf",
                None
            )
        );
        assert_eq!(
            "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF@v1/sub/q.gguf"
                .parse::<ModelRef>()
                .unwrap(),
            hub("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "sub/q.gguf", Some("v1"))
        );
        assert_eq!(
            "TheBloke/TinyLlama-1.1B-GGUF:tinyllama.Q4_0.gguf"
                .parse::<ModelRef>()
                .unwrap(),
            hub("TheBloke/TinyLlama-1.1B-GGUF", "tinyllama.Q4_0.gguf", None)
        );
        assert_eq!(
            "a/b@abc:f.gguf".parse::<ModelRef>().unwrap(),
            hub("a/b", "f.gguf", Some("abc"))
        );
        assert_eq!(
            "models/missing.gguf".parse::<ModelRef>().unwrap(),
            ModelRef::Path(PathBuf::from("models/missing.gguf"))
        );
        assert!("".parse::<ModelRef>().is_err());
        assert!("hf:onlyowner".parse::<ModelRef>().is_err());
    }

    #[test]
    fn an_existing_path_wins_over_the_hub_form() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a:b.gguf");
        std::fs::write(&odd, b"x").unwrap();
        let text = odd.to_str().unwrap();
        assert_eq!(
            text.parse::<ModelRef>().unwrap(),
            ModelRef::Path(odd.clone())
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["default", "hf:a/b/c.gguf", "hf:a/b@r1/d/c.gguf"] {
            let r: ModelRef = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
            assert_eq!(r.to_string().parse::<ModelRef>().unwrap(), r);
        }
    }

    #[test]
    fn sha256_of_a_known_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc.txt");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            file_sha256(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(file_sha256(&dir.path().join("none")).is_err());
    }
}

#[cfg(test)]
mod hub_tests {
    use super::*;

    /// A hub that refuses connections at once (port 9 on loopback), so no test touches the network.
    fn unreachable(cache: &Path) -> HubOptions {
        HubOptions {
            cache_dir: Some(cache.to_path_buf()),
            endpoint: Some("http://127.0.0.1:9".to_string()),
            offline: false,
            progress: false,
        }
    }

    /// Lays out the hf-hub cache the way a download leaves it.
    fn fake_cache(
        root: &Path,
        repo: &str,
        rev: &str,
        commit: &str,
        file: &str,
        body: &[u8],
    ) -> PathBuf {
        let folder = root.join(format!("models--{}", repo.replace('/', "--")));
        std::fs::create_dir_all(folder.join("refs")).unwrap();
        std::fs::write(folder.join("refs").join(rev), commit).unwrap();
        let snap = folder.join("snapshots").join(commit).join(file);
        std::fs::create_dir_all(snap.parent().unwrap()).unwrap();
        std::fs::write(&snap, body).unwrap();
        snap
    }

    #[test]
    fn a_cached_hub_file_resolves_without_the_network() {
        let dir = tempfile::tempdir().unwrap();
        let placed = fake_cache(
            dir.path(),
            "acme/tiny-GGUF",
            "main",
            "0123abcd",
            "tiny.Q4_0.gguf",
            b"GGUF-bytes",
        );
        let r: ModelRef = "hf:acme/tiny-GGUF/tiny.Q4_0.gguf".parse().unwrap();
        let got = r.resolve_with(&unreachable(dir.path())).unwrap();
        assert_eq!(got, placed);
        assert_eq!(std::fs::read(&got).unwrap(), b"GGUF-bytes");
    }

    #[test]
    fn a_commit_hash_revision_finds_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let placed = fake_cache(
            dir.path(),
            "acme/tiny-GGUF",
            "main",
            "feedbeef",
            "sub/t.gguf",
            b"x",
        );
        let r: ModelRef = "acme/tiny-GGUF@feedbeef:sub/t.gguf".parse().unwrap();
        assert_eq!(r.resolve_with(&unreachable(dir.path())).unwrap(), placed);
    }

    #[test]
    fn an_unreachable_hub_names_the_file_to_download_and_where_to_put_it() {
        let dir = tempfile::tempdir().unwrap();
        let r: ModelRef = "hf:acme/tiny-GGUF/tiny.Q4_0.gguf".parse().unwrap();
        let msg = format!(
            "{:#}",
            r.resolve_with(&unreachable(dir.path())).unwrap_err()
        );
        assert!(msg.contains("could not download tiny.Q4_0.gguf"), "{msg}");
        assert!(msg.contains("acme/tiny-GGUF"), "{msg}");
        assert!(
            msg.contains("http://127.0.0.1:9/acme/tiny-GGUF/resolve/main/tiny.Q4_0.gguf"),
            "{msg}"
        );
        assert!(
            msg.contains(
                &dir.path()
                    .join("models--acme--tiny-GGUF")
                    .display()
                    .to_string()
            ),
            "{msg}"
        );
    }

    #[test]
    fn offline_mode_never_downloads_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = unreachable(dir.path());
        opts.offline = true;
        opts.endpoint = None;
        let r: ModelRef = "acme/tiny-GGUF:tiny.gguf".parse().unwrap();
        let msg = format!("{:#}", r.resolve_with(&opts).unwrap_err());
        assert!(msg.contains("offline"), "{msg}");
        assert!(
            msg.contains("https://huggingface.co/acme/tiny-GGUF/resolve/main/tiny.gguf"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_local_path_is_a_not_found_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.gguf");
        let err = ModelRef::Path(p.clone()).resolve().unwrap_err();
        assert!(
            matches!(err.downcast_ref::<LlmError>(), Some(LlmError::NotFound(q)) if *q == p),
            "{err:#}"
        );
        let err = ModelRef::Path(dir.path().to_path_buf())
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("is a folder"), "{err:#}");
    }
}
