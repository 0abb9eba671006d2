//! Guards the libtorch set-up: binaries linked against the venv's libtorch
//! start without LD_LIBRARY_PATH (the build script's rpath), compute
//! correctly, and pick the CPU when no GPU is visible.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use std::process::Command;

use rl_algo::device::{resolve_device, DeviceChoice, DeviceError};
use rl_algo::engine::gradient::Device;
use tch::{Kind, Tensor};

#[test]
fn libtorch_computes_a_matmul_on_one_thread() {
    tch::set_num_threads(1);
    assert_eq!(tch::get_num_threads(), 1);
    let a = Tensor::from_slice(&[1.0_f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
    let b = a.matmul(&a.transpose(0, 1));
    let values: Vec<f32> = Vec::try_from(b.flatten(0, -1)).unwrap();
    assert_eq!(values, vec![5.0, 11.0, 11.0, 25.0]);
    assert_eq!(b.kind(), Kind::Float);
}

/// `cargo test` puts libtorch's folder on LD_LIBRARY_PATH itself, so this
/// runs the test above again in a child without it: only the rpath can then
/// find libtorch.
#[test]
fn libtorch_loads_without_ld_library_path() {
    let exe = std::env::current_exe().unwrap();
    let output = Command::new(&exe)
        .args([
            "--exact",
            "libtorch_computes_a_matmul_on_one_thread",
            "--test-threads=1",
        ])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "test binary failed without LD_LIBRARY_PATH:\n{stdout}\n{stderr}"
    );
}

#[test]
fn auto_device_follows_cuda_availability_and_cuda_without_gpu_is_an_error() {
    let auto = resolve_device(DeviceChoice::Auto).unwrap();
    if tch::Cuda::is_available() && rl_algo::device::nvidia_device_present() {
        assert_eq!(auto, Device::Cuda(0));
    } else {
        assert_eq!(auto, Device::Cpu);
        assert_eq!(
            resolve_device(DeviceChoice::Cuda),
            Err(DeviceError::CudaUnavailable)
        );
    }
    assert_eq!(resolve_device(DeviceChoice::Cpu).unwrap(), Device::Cpu);
    let err = "gpu".parse::<DeviceChoice>().unwrap_err().to_string();
    assert!(err.contains("'gpu'") && err.contains("\"cuda\""), "{err}");
}
