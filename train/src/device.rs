//! The one place the compute device is chosen.

use candle_core::Device;

/// The GPU when built with `cuda` and one is present, else the CPU.
pub fn select() -> candle_core::Result<Device> {
    #[cfg(feature = "cuda")]
    {
        if candle_core::utils::cuda_is_available() {
            return Device::new_cuda(0);
        }
    }
    Ok(Device::Cpu)
}

pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!("CPU ({} threads)", candle_core::utils::get_num_threads()),
        Device::Cuda(_) => "CUDA GPU 0".into(),
        Device::Metal(_) => "Metal GPU".into(),
    }
}
