//! Device choice at run time: CUDA or Metal when built with that feature and present,
//! otherwise the CPU.

use candle_core::Device;

use super::DevicePref;

/// A device name that is none of `auto`, `cpu`, `cuda`, `cuda:N`, `metal`.
#[derive(Debug, thiserror::Error)]
#[error("device `{0}`: expected auto, cpu, cuda, cuda:N or metal")]
pub struct BadDevice(pub String);

impl std::str::FromStr for DevicePref {
    type Err = BadDevice;

    /// `auto` (also an empty string: the window's unset field), `cpu`, `cuda` (device 0),
    /// `cuda:N`, `metal`; case and surrounding spaces do not matter. One rule for the
    /// command line and the window.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "" | "auto" => DevicePref::Auto,
            "cpu" => DevicePref::Cpu,
            "cuda" => DevicePref::Cuda(0),
            "metal" => DevicePref::Metal,
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => DevicePref::Cuda(n),
                _ => return Err(BadDevice(s.to_string())),
            },
        })
    }
}

/// The device for `pref`: `Auto` takes the best available (CUDA, then Metal, then CPU);
/// an explicit GPU that is not available is an error naming the feature to build with.
pub fn select(pref: &DevicePref) -> anyhow::Result<Device> {
    match pref {
        DevicePref::Cpu => Ok(Device::Cpu),
        DevicePref::Auto => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok(d);
                }
            }
            if candle_core::utils::metal_is_available() {
                if let Ok(d) = Device::new_metal(0) {
                    return Ok(d);
                }
            }
            Ok(Device::Cpu)
        }
        DevicePref::Cuda(i) => Device::new_cuda(*i).map_err(|e| cuda_unavailable(*i, &e)),
        DevicePref::Metal => Device::new_metal(0).map_err(|e| {
            anyhow::anyhow!("Metal is not available ({e}); build with `--features metal` on macOS, or choose the CPU")
        }),
    }
}

/// The error for `--device cuda[:i]` that cannot be had: what is missing (the `cuda`
/// feature in this build, a GPU, a driver new enough), and the CPU offered instead.
fn cuda_unavailable(i: usize, e: &candle_core::Error) -> anyhow::Error {
    if !cfg!(feature = "cuda") {
        return anyhow::anyhow!(
            "CUDA device {i} requested, but this build of trsr has no CUDA support (built \
             without the `cuda` feature; scripts/build_cuda.sh makes a CUDA build); use \
             `--device cpu` (or `auto`) to run on the CPU"
        );
    }
    let detail = e.to_string();
    let what = if detail.contains("NO_DEVICE") || detail.contains("INVALID_DEVICE") {
        format!("no NVIDIA GPU with index {i} was found")
    } else if detail.contains("INSUFFICIENT_DRIVER") || detail.contains("DRIVER_MISMATCH") {
        format!(
            "the NVIDIA driver is too old for this build (CUDA {})",
            cuda_build_version()
        )
    } else if detail.contains("NOT_INITIALIZED") || detail.contains("NO_BINARY_FOR_GPU") {
        "the NVIDIA driver could not start the GPU".to_string()
    } else {
        format!("CUDA device {i} could not be opened")
    };
    anyhow::anyhow!(
        "{what} ({detail}); check `nvidia-smi`, or use `--device cpu` (or `auto`) to run on the CPU"
    )
}

/// The CUDA toolkit version this build was made with, e.g. `"11.8"` (`"none"` without
/// the feature).
pub fn cuda_build_version() -> String {
    #[cfg(feature = "cuda")]
    {
        let v = candle_core::cuda::cudarc::driver::sys::CUDA_VERSION;
        format!("{}.{}", v / 1000, (v % 1000) / 10)
    }
    #[cfg(not(feature = "cuda"))]
    {
        "none".to_string()
    }
}

/// Human-readable name of a device: the CPU thread count, or a GPU's index, name,
/// compute capability and free/total memory where the driver tells them.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", candle_core::utils::get_num_threads()),
        Device::Cuda(_) => match gpu_status(device) {
            Some(g) => g.to_string(),
            None => "cuda".to_string(),
        },
        Device::Metal(_) => "metal".to_string(),
    }
}

/// A CUDA GPU as the driver describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuStatus {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_cap: (i32, i32),
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl std::fmt::Display for GpuStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const GIB: f64 = (1u64 << 30) as f64;
        write!(
            f,
            "cuda:{} {} (sm_{}{}, {:.1} of {:.1} GiB free)",
            self.ordinal,
            self.name,
            self.compute_cap.0,
            self.compute_cap.1,
            self.free_bytes as f64 / GIB,
            self.total_bytes as f64 / GIB
        )
    }
}

/// The GPU behind `device` (`None` for the CPU, Metal, or a build without CUDA).
pub fn gpu_status(device: &Device) -> Option<GpuStatus> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        let stream = d.cuda_stream();
        let ctx = stream.context();
        let (free, total) = ctx.mem_get_info().ok()?;
        return Some(GpuStatus {
            ordinal: ctx.ordinal(),
            name: ctx.name().unwrap_or_else(|_| "NVIDIA GPU".into()),
            compute_cap: ctx.compute_capability().unwrap_or((0, 0)),
            free_bytes: free as u64,
            total_bytes: total as u64,
        });
    }
    let _ = device;
    None
}

/// The CUDA GPUs the driver reports, as `(cuda:N, "name, X GiB")`, asked once per process
/// without opening a context on them (none in a build without the `cuda` feature, or
/// without a driver).
pub fn cuda_devices() -> &'static [(String, String)] {
    use std::sync::OnceLock;
    static LIST: OnceLock<Vec<(String, String)>> = OnceLock::new();
    LIST.get_or_init(|| {
        #[cfg(feature = "cuda")]
        {
            use candle_core::cuda::cudarc::driver::result;
            if result::init().is_err() {
                return Vec::new();
            }
            let n = result::device::get_count().unwrap_or(0).max(0);
            (0..n)
                .filter_map(|i| {
                    let dev = result::device::get(i).ok()?;
                    let name =
                        result::device::get_name(dev).unwrap_or_else(|_| "NVIDIA GPU".into());
                    // SAFETY: `dev` is a device handle the driver just returned.
                    let total = unsafe { result::device::total_mem(dev) }.unwrap_or(0);
                    Some((
                        format!("cuda:{i}"),
                        format!("{name}, {:.0} GiB", total as f64 / (1u64 << 30) as f64),
                    ))
                })
                .collect()
        }
        #[cfg(not(feature = "cuda"))]
        Vec::new()
    })
}

/// Whether an error is the GPU running out of memory.
pub fn is_out_of_memory(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        let s = e.to_string();
        s.contains("OUT_OF_MEMORY") || s.contains("out of memory")
    })
}

/// `err` with a clear note when it is the GPU running out of memory while `doing`
/// something: what to do instead (a smaller model, fewer candidates, the CPU).
pub fn explain_oom(err: anyhow::Error, doing: &str, device: &Device) -> anyhow::Error {
    if device.is_cpu() || !is_out_of_memory(&err) {
        return err;
    }
    let mem = gpu_status(device)
        .map(|g| format!(" ({g})"))
        .unwrap_or_default();
    err.context(format!(
        "out of GPU memory {doing}{mem}: free the GPU, choose a smaller or more quantized \
         model, or load the model on the CPU (`--device cpu`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_the_same_everywhere() {
        assert_eq!("".parse::<DevicePref>().unwrap(), DevicePref::Auto);
        assert_eq!(" Auto ".parse::<DevicePref>().unwrap(), DevicePref::Auto);
        assert_eq!("CPU".parse::<DevicePref>().unwrap(), DevicePref::Cpu);
        assert_eq!("cuda".parse::<DevicePref>().unwrap(), DevicePref::Cuda(0));
        assert_eq!("cuda:3".parse::<DevicePref>().unwrap(), DevicePref::Cuda(3));
        assert_eq!("Metal".parse::<DevicePref>().unwrap(), DevicePref::Metal);
        let e = "gpu".parse::<DevicePref>().unwrap_err();
        assert!(e.to_string().contains("`gpu`"), "{e}");
        assert!("cuda:x".parse::<DevicePref>().is_err());
    }

    #[test]
    fn cuda_without_the_feature_or_a_gpu_names_what_is_missing_and_offers_the_cpu() {
        // On this machine (no GPU; the `cuda` feature off in CI) `cuda` cannot be had.
        if candle_core::utils::cuda_is_available() && Device::new_cuda(0).is_ok() {
            eprintln!("skipped: a CUDA GPU is present here");
            return;
        }
        let e = select(&DevicePref::Cuda(0)).unwrap_err().to_string();
        assert!(e.contains("--device cpu"), "{e}");
        if cfg!(feature = "cuda") {
            assert!(e.contains("nvidia-smi"), "{e}");
        } else {
            assert!(e.contains("without the `cuda` feature"), "{e}");
            assert!(e.contains("scripts/build_cuda.sh"), "{e}");
        }
        // `auto` falls back to the CPU quietly.
        assert!(select(&DevicePref::Auto).unwrap().is_cpu());
    }

    #[test]
    fn out_of_memory_is_explained_only_on_a_gpu() {
        let oom = || anyhow::anyhow!("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")");
        assert!(is_out_of_memory(&oom()));
        assert!(!is_out_of_memory(&anyhow::anyhow!("file not found")));
        // On the CPU the error is left as it is.
        let e = explain_oom(oom(), "loading x.gguf", &Device::Cpu);
        assert_eq!(format!("{e:#}"), format!("{:#}", oom()));
        assert_eq!(gpu_status(&Device::Cpu), None);
        assert!(describe(&Device::Cpu).starts_with("cpu ("));
    }
}
