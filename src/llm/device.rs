//! Device choice at run time: CUDA or Metal when built with that feature and present,
//! otherwise the CPU.

use candle_core::Device;

use super::DevicePref;

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
