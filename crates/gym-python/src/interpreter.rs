//! The interpreter: started once per process from the Python executable a
//! request names, and Python's errors as text.

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::sync::Mutex;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyModule;

const BRIDGE_SOURCE: &str = include_str!("bridge.py");
pub(crate) const BRIDGE_MODULE: &str = "ferrorl_gym_bridge";

static STARTED: Mutex<Option<Result<(), String>>> = Mutex::new(None);

pub(crate) fn ensure_interpreter(python: &str, rendering: bool) -> Result<(), String> {
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
pub(crate) fn short(py: Python<'_>, err: &PyErr) -> String {
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
pub(crate) fn traceback(py: Python<'_>, err: &PyErr) -> String {
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
