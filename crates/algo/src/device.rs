//! Where the learner computes, and with how many threads.
//!
//! Choosing the CPU never loads libtorch. `cuda` loads the libtorch engine
//! ([`crate::engine::libtorch`]) to ask it for a GPU; `auto` does so only
//! when the machine has an NVIDIA device node, so CPU machines never pay
//! for loading libtorch.

use thiserror::Error;

use crate::engine::gradient::Device;
use crate::engine::libtorch::cuda_devices;

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
    #[error("device \"cuda\" needs the libtorch engine: {0}")]
    NoEngine(String),
}

/// Whether this machine has an NVIDIA GPU device node (no libtorch needed
/// to ask).
pub fn nvidia_device_present() -> bool {
    std::path::Path::new("/dev/nvidiactl").exists()
        || std::path::Path::new("/proc/driver/nvidia/version").exists()
}

/// Whether libtorch can use a CUDA GPU in this process (loads the libtorch
/// engine when the machine has an NVIDIA device).
pub fn cuda_available() -> bool {
    nvidia_device_present() && cuda_devices().is_ok_and(|n| n > 0)
}

/// The device for a choice.
pub fn resolve_device(choice: DeviceChoice) -> Result<Device, DeviceError> {
    resolve_device_for(choice, 0)
}

/// The device for a choice, for the `local_rank`-th learner on this host
/// (data-parallel ranks): CUDA device `local_rank % GPUs`, so that the
/// ranks of one node spread over its GPUs (and share them round-robin
/// when there are more ranks than GPUs).
pub fn resolve_device_for(choice: DeviceChoice, local_rank: usize) -> Result<Device, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => match cuda_devices() {
            Ok(n) if n > 0 => Ok(Device::Cuda(cuda_index(local_rank, n))),
            Ok(_) => Err(DeviceError::CudaUnavailable),
            Err(e) => Err(DeviceError::NoEngine(e)),
        },
        DeviceChoice::Auto if cuda_available() => Ok(Device::Cuda(cuda_index(
            local_rank,
            cuda_devices().unwrap_or(1),
        ))),
        DeviceChoice::Auto => Ok(Device::Cpu),
    }
}

/// Which of `gpus` devices the `local_rank`-th learner of a host takes.
pub fn cuda_index(local_rank: usize, gpus: usize) -> usize {
    local_rank % gpus.max(1)
}

/// Sets libtorch's intra-op thread count for this process, when it uses
/// libtorch. On a busy 2-core machine one thread is fastest for small
/// networks (see DESIGN.md).
pub fn set_torch_threads(threads: usize) {
    crate::engine::libtorch::set_threads(threads);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranks_of_a_host_spread_over_its_gpus() {
        assert_eq!(
            (0..6).map(|r| cuda_index(r, 4)).collect::<Vec<_>>(),
            [0, 1, 2, 3, 0, 1]
        );
        assert_eq!(cuda_index(3, 1), 0);
        assert_eq!(cuda_index(3, 0), 0);
    }
}
