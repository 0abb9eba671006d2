//! The plugin `librl_gym_python.so`: CPython embedded (pyo3), stepping
//! Gymnasium envs for the loader in crate rl-gym (see `rl_gym::abi` for the
//! functions and their contract).
//!
//! * The interpreter starts with the first env of a process, from the
//!   Python executable the request names (a venv's `bin/python`: its
//!   `pyvenv.cfg` makes the venv's packages importable), without Python's
//!   signal handlers (the runtime owns SIGINT and SIGTERM), and with
//!   single-threaded BLAS unless the user set otherwise: each worker is one
//!   process of several.
//! * The GIL is taken for each call and released when it returns.
//! * Observations are read through the buffer protocol straight into the
//!   caller's `f32` buffer (a `float64` array is read as such and
//!   narrowed); only other dtypes, and `Discrete` observations (one-hot),
//!   go through NumPy first.

mod bridge;
mod interpreter;

use std::cell::RefCell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rl_gym::abi::{AbiStep, MakeRequest, ABI_VERSION};

use crate::bridge::{make, Bridge};

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_error(message: String) {
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
}

/// Runs `f`, turning an error or a panic into status 1 and a message.
fn guarded(f: impl FnOnce() -> Result<(), String>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            set_error(message);
            1
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            set_error(format!("the Gymnasium bridge panicked: {what}"));
            1
        }
    }
}

/// Copies `text` into `buf` (as much as fits); returns its whole length.
///
/// # Safety
/// `buf` is valid for `cap` bytes (or `cap` is 0).
unsafe fn write_text(text: &str, buf: *mut u8, cap: usize) -> usize {
    let n = text.len().min(cap);
    if n > 0 {
        // SAFETY: the caller's buffer holds `cap >= n` bytes.
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buf, n) };
    }
    text.len()
}

#[no_mangle]
pub extern "C" fn ferrorl_gym_abi() -> u32 {
    ABI_VERSION
}

/// # Safety
/// `buf` is valid for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_gym_version(buf: *mut u8, cap: usize) -> usize {
    // SAFETY: the caller's contract.
    unsafe { write_text(env!("CARGO_PKG_VERSION"), buf, cap) }
}

/// # Safety
/// `buf` is valid for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_gym_last_error(buf: *mut u8, cap: usize) -> usize {
    // SAFETY: the caller's contract.
    LAST_ERROR.with(|e| unsafe { write_text(&e.borrow(), buf, cap) })
}

/// # Safety
/// `request` is valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_gym_make(request: *const u8, len: usize) -> *mut c_void {
    let mut made = None;
    let status = guarded(|| {
        // SAFETY: the caller's contract.
        let bytes = unsafe { std::slice::from_raw_parts(request, len) };
        let request: MakeRequest =
            serde_json::from_slice(bytes).map_err(|e| format!("unreadable request: {e}"))?;
        made = Some(make(&request)?);
        Ok(())
    });
    match (status, made) {
        (0, Some(bridge)) => Box::into_raw(Box::new(bridge)).cast(),
        _ => std::ptr::null_mut(),
    }
}

/// # Safety
/// `handle` came from `ferrorl_gym_make`; `buf` is valid for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_gym_describe(
    handle: *mut c_void,
    buf: *mut u8,
    cap: usize,
) -> usize {
    // SAFETY: the caller's contract.
    let bridge = unsafe { &*handle.cast::<Bridge>() };
    // SAFETY: the caller's contract.
    unsafe { write_text(&bridge.description, buf, cap) }
}

/// # Safety
/// `handle` came from `ferrorl_gym_make`; `obs` is valid for `obs_len`.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_gym_reset(
    handle: *mut c_void,
    has_seed: i32,
    seed: u64,
    obs: *mut f32,
    obs_len: usize,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (bridge, obs) = unsafe {
            (
                &mut *handle.cast::<Bridge>(),
                std::slice::from_raw_parts_mut(obs, obs_len),
            )
        };
        bridge.reset((has_seed != 0).then_some(seed), obs)
    })
}

/// # Safety
/// `handle` came from `ferrorl_gym_make`; `action` is valid for
/// `action_len` values (or null with 0), `obs` for `obs_len`, `out` for one
/// `AbiStep`.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_gym_step(
    handle: *mut c_void,
    discrete: i64,
    action: *const f32,
    action_len: usize,
    obs: *mut f32,
    obs_len: usize,
    out: *mut AbiStep,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (bridge, action, obs, out) = unsafe {
            (
                &mut *handle.cast::<Bridge>(),
                if action_len == 0 {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(action, action_len)
                },
                std::slice::from_raw_parts_mut(obs, obs_len),
                &mut *out,
            )
        };
        bridge.step(discrete, action, obs, out)
    })
}

/// # Safety
/// `handle` came from `ferrorl_gym_make`; `buf` is valid for `cap` bytes
/// (or `cap` is 0) and `shape` for 3 values.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_gym_render(
    handle: *mut c_void,
    buf: *mut u8,
    cap: usize,
    shape: *mut usize,
) -> i64 {
    let mut n = 0;
    let status = guarded(|| {
        // SAFETY: the caller's contract.
        let (bridge, buf, shape) = unsafe {
            (
                &mut *handle.cast::<Bridge>(),
                if cap == 0 {
                    &mut [][..]
                } else {
                    std::slice::from_raw_parts_mut(buf, cap)
                },
                &mut *shape.cast::<[usize; 3]>(),
            )
        };
        n = bridge.render(buf, shape)?;
        Ok(())
    });
    if status == 0 {
        n as i64
    } else {
        -1
    }
}

/// # Safety
/// `handle` came from `ferrorl_gym_make` and is not used again.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_gym_close(handle: *mut c_void) {
    if handle.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller's contract.
        drop(unsafe { Box::from_raw(handle.cast::<Bridge>()) });
    }));
}
