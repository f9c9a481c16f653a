//! The one place the compute device is chosen.

use candle_core::Device;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The GPU when built with `cuda` and one is present, else the CPU.
    #[default]
    Auto,
    Cuda,
    Cpu,
}

/// The device for `choice`. `cuda` fails with the reason when there is no usable GPU
/// (or the binary was built without CUDA); `auto` then says why it uses the CPU.
pub fn select(choice: DeviceChoice) -> anyhow::Result<Device> {
    match (choice, cuda()) {
        (DeviceChoice::Cpu, _) => Ok(Device::Cpu),
        (DeviceChoice::Cuda, Ok(d)) | (DeviceChoice::Auto, Ok(d)) => Ok(d),
        (DeviceChoice::Cuda, Err(why)) => anyhow::bail!("--device cuda: {why}"),
        (DeviceChoice::Auto, Err(why)) => {
            if cfg!(feature = "cuda") {
                eprintln!("canard-train: no usable GPU ({why}); training on the CPU");
            }
            Ok(Device::Cpu)
        }
    }
}

fn cuda() -> Result<Device, String> {
    #[cfg(feature = "cuda")]
    {
        Device::new_cuda(0).map_err(|e| format!("cannot open CUDA device 0: {e}"))
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err("this canard-train was built without CUDA; build it with scripts/build-cuda.sh or `cargo build --release --features cuda`".into())
    }
}

pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!("CPU ({} threads)", candle_core::utils::get_num_threads()),
        Device::Cuda(_) => "CUDA GPU 0".into(),
        Device::Metal(_) => "Metal GPU".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available_and_cuda_failures_say_why() {
        assert!(matches!(select(DeviceChoice::Cpu).unwrap(), Device::Cpu));
        assert!(select(DeviceChoice::Auto).is_ok());
        #[cfg(not(feature = "cuda"))]
        {
            let err = select(DeviceChoice::Cuda).unwrap_err().to_string();
            assert!(err.contains("without CUDA") && err.contains("build-cuda.sh"), "{err}");
        }
    }
}
