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

use std::cell::RefCell;
use std::ffi::{c_void, CString};
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyModule, PyTuple};
use pyo3::{ffi, IntoPyObjectExt};

use rl_gym::abi::{AbiStep, MakeRequest, ABI_VERSION};

const BRIDGE_SOURCE: &str = include_str!("bridge.py");
const BRIDGE_MODULE: &str = "ferrorl_gym_bridge";

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

// ---------------------------------------------------------------------------
// The interpreter.

static STARTED: Mutex<Option<Result<(), String>>> = Mutex::new(None);

fn ensure_interpreter(python: &str, rendering: bool) -> Result<(), String> {
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(result) = &*started {
        return result.clone();
    }
    // SAFETY: called once per process, under the lock, before any other use
    // of the interpreter by this plugin.
    let result = unsafe { start_interpreter(python, rendering) };
    *started = Some(result.clone());
    result
}

/// The `major.minor` of a version string such as "3.11.7 (main, ...)".
fn minor_version(version: &str) -> String {
    version
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or_default()
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

/// The Python version a venv was made with, from its `pyvenv.cfg`.
fn venv_version(python: &str) -> Option<String> {
    let exe = std::path::Path::new(python);
    exe.ancestors().skip(1).take(2).find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("pyvenv.cfg")).ok()?;
        text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            matches!(key.trim(), "version" | "version_info").then(|| value.trim().to_string())
        })
    })
}

unsafe fn start_interpreter(python: &str, rendering: bool) -> Result<(), String> {
    // SAFETY: a query that is valid at any time.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return Ok(());
    }
    // SAFETY: Py_GetVersion may be called before initialisation; it
    // returns a static string.
    let linked = unsafe { std::ffi::CStr::from_ptr(ffi::Py_GetVersion()) }
        .to_string_lossy()
        .into_owned();
    if let Some(theirs) = venv_version(python) {
        if minor_version(&theirs) != minor_version(&linked) {
            return Err(format!(
                "{python} is Python {theirs}, but the Gymnasium bridge was built against Python {}: use a Python {} venv (set FERRORL_PYTHON), or rebuild with PYO3_PYTHON={python} cargo build --release",
                minor_version(&linked),
                minor_version(&linked)
            ));
        }
    }
    for var in ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, "1");
        }
    }
    // MuJoCo renders headless through EGL where there is no display (only
    // when rendering: with MUJOCO_GL set, importing mujoco loads the GL
    // library, which a machine that never renders need not have).
    if rendering && std::env::var_os("MUJOCO_GL").is_none() && std::env::var_os("DISPLAY").is_none()
    {
        std::env::set_var("MUJOCO_GL", "egl");
    }
    let program = CString::new(python).map_err(|_| format!("{python:?} holds a NUL byte"))?;
    let mut config = MaybeUninit::<ffi::PyConfig>::zeroed();
    // SAFETY: the config is initialised by PyConfig_InitPythonConfig before
    // any field is read, and cleared after use; the strings are copied.
    unsafe {
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let config = config.assume_init_mut();
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        let config_ptr: *mut ffi::PyConfig = config;
        for field in [
            std::ptr::addr_of_mut!((*config_ptr).program_name),
            std::ptr::addr_of_mut!((*config_ptr).executable),
        ] {
            let status = ffi::PyConfig_SetBytesString(config_ptr, field, program.as_ptr());
            if ffi::PyStatus_Exception(status) != 0 {
                ffi::PyConfig_Clear(config_ptr);
                return Err(format!(
                    "cannot configure Python from {python}: {}",
                    status_message(&status)
                ));
            }
        }
        let status = ffi::Py_InitializeFromConfig(config_ptr);
        ffi::PyConfig_Clear(config_ptr);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(format!(
                "cannot start Python from {python}: {}",
                status_message(&status)
            ));
        }
        // The GIL is taken per call from here on.
        ffi::PyEval_SaveThread();
    }
    Python::attach(|py| {
        PyModule::from_code(
            py,
            &CString::new(BRIDGE_SOURCE).map_err(|e| e.to_string())?,
            c"ferrorl_gym_bridge.py",
            &CString::new(BRIDGE_MODULE).map_err(|e| e.to_string())?,
        )
        .map(|_| ())
        .map_err(|e| {
            format!(
                "cannot import gymnasium in Python from {python}: {}\n(run scripts/setup, which installs it into the project's .venv, or set FERRORL_PYTHON to a Python that has gymnasium)",
                short(py, &e)
            )
        })
    })
}

fn status_message(status: &ffi::PyStatus) -> String {
    if status.err_msg.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: err_msg is a static C string when set.
        unsafe { std::ffi::CStr::from_ptr(status.err_msg) }
            .to_string_lossy()
            .into_owned()
    }
}

/// `Type: message` of a Python exception.
fn short(py: Python<'_>, err: &PyErr) -> String {
    let kind = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".to_string());
    let value = err
        .value(py)
        .str()
        .map(|s| s.to_string())
        .unwrap_or_default();
    if value.is_empty() {
        kind
    } else {
        format!("{kind}: {value}")
    }
}

/// The full Python traceback of an exception.
fn traceback(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        // The traceback is kept apart from the exception object by pyo3.
        let trace = err
            .traceback(py)
            .map(|t| t.into_any())
            .unwrap_or_else(|| py.None().into_bound(py));
        let lines =
            tb.call_method1("format_exception", (err.get_type(py), err.value(py), trace))?;
        let joined = "".into_pyobject(py)?.call_method1("join", (lines,))?;
        joined.extract::<String>()
    });
    formatted
        .unwrap_or_else(|_| short(py, err))
        .trim_end()
        .to_string()
}

// ---------------------------------------------------------------------------
// One env.

struct Bridge {
    /// The Python `Bridge` object (bridge.py), holding the env.
    bridge: Py<PyAny>,
    env: Py<PyAny>,
    description: String,
    one_hot: bool,
    continuous: bool,
    discrete_start: i64,
    scratch: Vec<f64>,
}

fn make(request: &MakeRequest) -> Result<Bridge, String> {
    let rendering = request.render_mode.is_some() || request.kwargs.contains_key("render_mode");
    ensure_interpreter(&request.python, rendering)?;
    Python::attach(|py| {
        let module = py
            .import(BRIDGE_MODULE)
            .map_err(|e| format!("the bridge module is missing: {}", short(py, &e)))?;
        let kwargs = serde_json::to_string(&request.kwargs).map_err(|e| e.to_string())?;
        let bridge = module
            .call_method1(
                "make",
                (&request.id, &kwargs, request.render_mode.as_deref()),
            )
            .map_err(|e| {
                let unsupported = module
                    .getattr("Unsupported")
                    .is_ok_and(|u| e.matches(py, u).unwrap_or(false));
                if unsupported {
                    let value = e.value(py).str().map(|s| s.to_string()).unwrap_or_default();
                    format!("{value}; it cannot be trained here (no env was stepped)")
                } else {
                    let place = module
                        .call_method0("where")
                        .and_then(|w| w.extract::<String>())
                        .unwrap_or_default();
                    format!(
                        "gymnasium.make({:?}{}) failed: {} ({place})",
                        request.id,
                        if request.kwargs.is_empty() {
                            String::new()
                        } else {
                            format!(", **{kwargs}")
                        },
                        short(py, &e)
                    )
                }
            })?;
        let get = |name: &str| bridge.getattr(name).map_err(|e| short(py, &e));
        let description: String = get("description")?.extract().map_err(|e| short(py, &e))?;
        let one_hot = get("one_hot")?
            .extract::<u64>()
            .map_err(|e| short(py, &e))?
            > 0;
        let continuous = !get("act_dtype")?.is_none();
        let discrete_start = get("discrete_start")?
            .extract::<i64>()
            .map_err(|e| short(py, &e))?;
        let env = get("env")?.unbind();
        Ok(Bridge {
            bridge: bridge.unbind(),
            env,
            description,
            one_hot,
            continuous,
            discrete_start,
            scratch: Vec::new(),
        })
    })
}

impl Bridge {
    /// Writes an observation into `out`, checking its size and values.
    fn write_obs<'py>(
        &mut self,
        py: Python<'py>,
        obs: &Bound<'py, PyAny>,
        out: &mut [f32],
        what: &str,
    ) -> Result<(), String> {
        let bridge = self.bridge.bind(py);
        let convert = |obs: &Bound<'py, PyAny>| -> Result<Bound<'py, PyAny>, String> {
            bridge.call_method1("observation", (obs,)).map_err(|e| {
                format!(
                    "{what} returned an observation the bridge cannot read: {}",
                    short(py, &e)
                )
            })
        };
        let converted;
        let obs = if self.one_hot {
            converted = convert(obs)?;
            &converted
        } else {
            obs
        };
        let count_error = |got: usize| {
            format!(
                "{what} returned an observation with {got} value(s), but the observation space has {}; the env's observations must match its observation_space",
                out.len()
            )
        };
        if let Ok(buf) = PyBuffer::<f32>::get(obs) {
            if buf.item_count() != out.len() {
                return Err(count_error(buf.item_count()));
            }
            buf.copy_to_slice(py, out).map_err(|e| short(py, &e))?;
        } else if let Ok(buf) = PyBuffer::<f64>::get(obs) {
            if buf.item_count() != out.len() {
                return Err(count_error(buf.item_count()));
            }
            self.scratch.resize(out.len(), 0.0);
            buf.copy_to_slice(py, &mut self.scratch)
                .map_err(|e| short(py, &e))?;
            for (o, x) in out.iter_mut().zip(&self.scratch) {
                *o = *x as f32;
            }
        } else {
            let array = convert(obs)?;
            let buf = PyBuffer::<f32>::get(&array).map_err(|e| short(py, &e))?;
            if buf.item_count() != out.len() {
                return Err(count_error(buf.item_count()));
            }
            buf.copy_to_slice(py, out).map_err(|e| short(py, &e))?;
        }
        if let Some((i, v)) = out.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(format!(
                "{what} returned an observation with the value {v} at index {i}; observations must be finite numbers"
            ));
        }
        Ok(())
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), String> {
        Python::attach(|py| {
            let env = self.env.bind(py).clone();
            let kwargs = PyDict::new(py);
            if let Some(seed) = seed {
                kwargs.set_item("seed", seed).map_err(|e| short(py, &e))?;
            }
            let what = match seed {
                Some(seed) => format!("reset(seed={seed})"),
                None => "reset()".to_string(),
            };
            let result = env
                .call_method("reset", (), Some(&kwargs))
                .map_err(|e| format!("{what} raised an exception:\n{}", traceback(py, &e)))?;
            let tuple = result
                .cast::<PyTuple>()
                .map_err(|_| format!("{what} returned something other than a tuple (obs, info)"))?;
            if tuple.len() != 2 {
                return Err(format!(
                    "{what} returned {} values; Gymnasium envs return 2 (obs, info)",
                    tuple.len()
                ));
            }
            let first = tuple.get_item(0).map_err(|e| short(py, &e))?;
            self.write_obs(py, &first, obs, &what)
        })
    }

    fn step(
        &mut self,
        discrete: i64,
        action: &[f32],
        obs: &mut [f32],
        out: &mut AbiStep,
    ) -> Result<(), String> {
        Python::attach(|py| {
            let env = self.env.bind(py).clone();
            let action = if self.continuous {
                // SAFETY: f32 has no padding; the bytes are the slice's own.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        action.as_ptr().cast::<u8>(),
                        std::mem::size_of_val(action),
                    )
                };
                self.bridge
                    .bind(py)
                    .call_method1("action", (PyBytes::new(py, bytes),))
                    .map_err(|e| short(py, &e))?
            } else {
                (discrete + self.discrete_start)
                    .into_bound_py_any(py)
                    .map_err(|e| short(py, &e))?
            };
            let result = env
                .call_method1("step", (action,))
                .map_err(|e| format!("step() raised an exception:\n{}", traceback(py, &e)))?;
            let tuple = result
                .cast::<PyTuple>()
                .map_err(|_| "step() returned something other than a tuple".to_string())?;
            if tuple.len() != 5 {
                return Err(format!(
                    "step() returned {} values; Gymnasium envs return 5 (obs, reward, terminated, truncated, info)",
                    tuple.len()
                ));
            }
            let item = |i: usize| tuple.get_item(i).map_err(|e| short(py, &e));
            self.write_obs(py, &item(0)?, obs, "step()")?;
            let reward = item(1)?;
            out.reward = reward.extract::<f64>().map_err(|_| {
                format!(
                    "step() returned the reward {}, which is not a number",
                    reward.repr().map(|r| r.to_string()).unwrap_or_default()
                )
            })?;
            out.terminated = u8::from(item(2)?.is_truthy().map_err(|e| short(py, &e))?);
            out.truncated = u8::from(item(3)?.is_truthy().map_err(|e| short(py, &e))?);
            Ok(())
        })
    }

    fn render(&mut self, buf: &mut [u8], shape: &mut [usize; 3]) -> Result<usize, String> {
        Python::attach(|py| {
            let frame = self
                .env
                .bind(py)
                .call_method0("render")
                .map_err(|e| format!("render() raised an exception:\n{}", traceback(py, &e)))?;
            if frame.is_none() {
                return Err(
                    "render() returned None; the env must be made with render_mode=\"rgb_array\""
                        .to_string(),
                );
            }
            let pixels = PyBuffer::<u8>::get(&frame).map_err(|e| {
                format!(
                    "render() did not return an array of bytes (uint8): {}",
                    short(py, &e)
                )
            })?;
            let dims = pixels.shape();
            if dims.len() != 3 || dims[2] != 3 {
                return Err(format!("render() returned a frame of shape {dims:?}; an RGB frame is (height, width, 3)"));
            }
            shape.copy_from_slice(&[dims[0], dims[1], dims[2]]);
            let n = pixels.item_count();
            if buf.len() >= n {
                pixels
                    .copy_to_slice(py, &mut buf[..n])
                    .map_err(|e| short(py, &e))?;
            }
            Ok(n)
        })
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        Python::attach(|py| {
            // Gymnasium's close frees what the env holds (MuJoCo's
            // renderer); an exception there changes nothing for the run.
            let _ = self.env.bind(py).call_method0("close");
        });
    }
}

// ---------------------------------------------------------------------------
// The ABI.

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
