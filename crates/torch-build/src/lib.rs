//! Build-script helper for every package whose binaries or tests link
//! libtorch (through `tch`).
//!
//! Cargo applies `rustc-link-arg` only to the package whose build script
//! prints it, so each such package has a two-line `build.rs` that calls
//! [`link_libtorch`] and a direct `torch-sys` dependency (which is what makes
//! `DEP_TCH_LIBTORCH_LIB` visible to its build script).
//!
//! What it emits:
//! * an rpath to libtorch's `lib` folder, so binaries run without
//!   `LD_LIBRARY_PATH`;
//! * an rpath to the CUDA runtime folder of the PyPI wheels
//!   (`nvidia/cu13/lib`): even `libtorch_cpu` needs `libcudart` and
//!   `libcupti`;
//! * with a full CUDA install (cuBLAS present in that folder), or when
//!   `FERRORL_LINK_CUDA=1`, a forced link of `libtorch_cuda`: without
//!   `--no-as-needed` the linker drops it, its static initialisers never run
//!   and CUDA is silently unavailable. `FERRORL_LINK_CUDA=0` forbids it.
//!
//! **Invariant:** it only prints cargo instructions; it never fails a build
//! that tch itself would accept.

use std::env;
use std::path::{Path, PathBuf};

/// Whether libtorch_cuda gets linked, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CudaLink {
    Linked,
    NotLinked,
}

/// Prints the cargo instructions described in the crate documentation.
pub fn link_libtorch() -> CudaLink {
    println!("cargo:rerun-if-env-changed=FERRORL_LINK_CUDA");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!(
            "cargo:warning=DEP_TCH_LIBTORCH_LIB is not set: add torch-sys as a direct dependency of this package"
        );
        return CudaLink::NotLinked;
    };
    let lib = PathBuf::from(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let cuda_libs = cuda_runtime_dir(&lib);
    if let Some(dir) = &cuda_libs {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let full_cuda_install = cuda_libs
        .as_deref()
        .is_some_and(|dir| dir.join("libcublas.so.13").exists());
    let link_cuda = match env::var("FERRORL_LINK_CUDA").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => full_cuda_install,
    };
    if link_cuda && lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        CudaLink::Linked
    } else {
        CudaLink::NotLinked
    }
}

/// `<site-packages>/nvidia/cu13/lib` next to `<site-packages>/torch/lib`.
fn cuda_runtime_dir(torch_lib: &Path) -> Option<PathBuf> {
    let torch_lib = torch_lib.canonicalize().ok()?;
    let site_packages = torch_lib.parent()?.parent()?;
    let dir = site_packages.join("nvidia").join("cu13").join("lib");
    dir.canonicalize().ok()
}
