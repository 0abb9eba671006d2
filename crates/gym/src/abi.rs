//! The C ABI between the loader (this crate) and the plugin
//! `librl_gym_python.so` (crate rl-gym-python), which embeds CPython.
//!
//! Every function returns a status or a length and never unwinds; on an
//! error it records a message that `ferrorl_gym_last_error` hands out (per
//! thread). Handles are opaque pointers owned by the loader's `GymEnv` and
//! freed with `ferrorl_gym_close`.
//!
//! ```text
//! ferrorl_gym_abi() -> u32                         ABI_VERSION
//! ferrorl_gym_version(buf, cap) -> usize           package version, UTF-8
//! ferrorl_gym_last_error(buf, cap) -> usize        message of the last failure
//! ferrorl_gym_make(request, len) -> handle|null    request: MakeRequest as JSON
//! ferrorl_gym_describe(handle, buf, cap) -> usize  Description as JSON (total length)
//! ferrorl_gym_reset(handle, has_seed, seed, obs, obs_len) -> i32
//! ferrorl_gym_step(handle, discrete, action, action_len, obs, obs_len, *AbiStep) -> i32
//! ferrorl_gym_render(handle, buf, cap, shape[3]) -> i64   bytes of the HxWx3 frame, -1 on error
//! ferrorl_gym_close(handle)
//! ```
//!
//! Statuses: 0 success, 1 failure (message recorded).

use serde::{Deserialize, Serialize};

use rl_env::Kwargs;

/// Bumped whenever a signature or a JSON layout below changes.
pub const ABI_VERSION: u32 = 1;

/// The plugin's file name.
pub const PLUGIN_FILE: &str = "librl_gym_python.so";

/// What one step returned besides the observation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AbiStep {
    pub reward: f64,
    pub terminated: u8,
    pub truncated: u8,
}

/// Which env to make, and with which interpreter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MakeRequest {
    /// The Python executable whose installation (a venv's, usually)
    /// provides Gymnasium; it only matters for the first env of a process,
    /// which starts the interpreter.
    pub python: String,
    /// Gymnasium's id, e.g. `HalfCheetah-v5` or `my_module:MyEnv-v0`.
    pub id: String,
    /// `gymnasium.make(id, **kwargs)`.
    pub kwargs: Kwargs,
    /// `render_mode`, e.g. `rgb_array` for videos.
    pub render_mode: Option<String>,
}

/// A space as the plugin describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum SpaceDescription {
    /// `Box(low, high, shape, dtype)`: bounds flattened row-major, `None`
    /// for an infinite bound (JSON has no infinity).
    Box {
        low: Vec<Option<f64>>,
        high: Vec<Option<f64>>,
        shape: Vec<usize>,
        dtype: String,
    },
    /// `Discrete(n, start)`.
    Discrete { n: u64, start: i64 },
}

/// An env's spaces and time limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Description {
    pub observation: SpaceDescription,
    pub action: SpaceDescription,
    /// `env.spec.max_episode_steps` (Gymnasium applies it as `TimeLimit`).
    pub max_episode_steps: Option<u64>,
}
