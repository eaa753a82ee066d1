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
        DevicePref::Cuda(i) => Device::new_cuda(*i).map_err(|e| {
            anyhow::anyhow!("CUDA device {i} is not available ({e}); build with `--features cuda` on a machine with an NVIDIA GPU, or choose the CPU")
        }),
        DevicePref::Metal => Device::new_metal(0).map_err(|e| {
            anyhow::anyhow!("Metal is not available ({e}); build with `--features metal` on macOS, or choose the CPU")
        }),
    }
}

/// Human-readable name of a device, with the CPU thread count.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", candle_core::utils::get_num_threads()),
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
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
}
