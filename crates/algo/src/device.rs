//! Where the learner computes, and with how many threads.

use thiserror::Error;

/// The `device` setting: `"auto"`, `"cpu"` or `"cuda"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA when libtorch sees a GPU, else the CPU.
    Auto,
    Cpu,
    Cuda,
}

impl std::str::FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            other => Err(DeviceError::Unknown(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeviceError {
    #[error("device '{0}' is not allowed; use \"auto\", \"cpu\" or \"cuda\"")]
    Unknown(String),
    #[error("device \"cuda\" was asked for, but libtorch sees no CUDA GPU (is this a GPU host, was scripts/setup run there with the CUDA torch, and was the binary built after it?)")]
    CudaUnavailable,
}

/// Whether libtorch can use a CUDA GPU in this process.
pub fn cuda_available() -> bool {
    tch::Cuda::is_available()
}

/// The tch device for a choice.
pub fn resolve_device(choice: DeviceChoice) -> Result<tch::Device, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(tch::Device::Cpu),
        DeviceChoice::Cuda if cuda_available() => Ok(tch::Device::Cuda(0)),
        DeviceChoice::Cuda => Err(DeviceError::CudaUnavailable),
        DeviceChoice::Auto if cuda_available() => Ok(tch::Device::Cuda(0)),
        DeviceChoice::Auto => Ok(tch::Device::Cpu),
    }
}

/// Sets libtorch's intra-op thread count for this process. On a busy
/// 2-core machine one thread is fastest for small networks (see DESIGN.md).
pub fn set_torch_threads(threads: usize) {
    tch::set_num_threads(threads.max(1) as i32);
}
