//! One env: making it, stepping it with observations read through the
//! buffer protocol, rendering it.

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use pyo3::IntoPyObjectExt;

use rl_gym::abi::{AbiStep, MakeRequest};

use crate::interpreter::{ensure_interpreter, short, traceback, BRIDGE_MODULE};

pub(crate) struct Bridge {
    /// The Python `Bridge` object (bridge.py), holding the env.
    bridge: Py<PyAny>,
    env: Py<PyAny>,
    pub(crate) description: String,
    one_hot: bool,
    continuous: bool,
    discrete_start: i64,
    scratch: Vec<f64>,
}

pub(crate) fn make(request: &MakeRequest) -> Result<Bridge, String> {
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

    pub(crate) fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), String> {
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

    pub(crate) fn step(
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

    pub(crate) fn render(
        &mut self,
        buf: &mut [u8],
        shape: &mut [usize; 3],
    ) -> Result<usize, String> {
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
