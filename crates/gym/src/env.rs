//! `GymEnv`: one Gymnasium env in this process's interpreter.

use rl_env::{Action, BoxSpace, Env, EnvError, Frame, Kwargs, Space, Transition};

use crate::abi::{AbiStep, Description, MakeRequest, SpaceDescription};
use crate::plugin::{plugin, Handle, Plugin};
use crate::PREFIX;

/// A Gymnasium env made by `gymnasium.make(id, **kwargs)`, with its
/// wrappers (time limit included), stepped in this process's interpreter.
///
/// * Observations: a `Box` of any shape and numeric dtype is flattened
///   row-major to `f32`; a `Discrete(n)` observation becomes a one-hot
///   vector of `n` values (as Stable-Baselines3 does).
/// * Actions: `Discrete(n, start)` takes indices `0..n` (`start` is added);
///   a floating-point `Box` takes flat `f32` values, converted to the
///   space's dtype and shape.
/// * Other spaces (`Dict`, `Tuple`, `MultiDiscrete`, `MultiBinary`, `Text`,
///   integer `Box` actions) are refused when the env is made.
/// * `reset(Some(seed))` is `env.reset(seed=seed)`; `reset(None)` is
///   `env.reset()`, continuing the env's own random stream, as Gymnasium's
///   vector envs do on autoreset.
/// * An observation with NaN or infinite values, or with the wrong number
///   of values, is an error naming the env. So is any exception, whose
///   message carries the Python traceback.
///
/// Snapshots are not supported: a resumed run starts fresh episodes.
pub struct GymEnv {
    plugin: &'static Plugin,
    handle: Handle,
    name: String,
    observation_space: Space,
    action_space: Space,
}

// SAFETY: the handle is only used through `&mut self` or `&self` (render
// and step are `&mut`), and the plugin takes the GIL for every call, so
// the env may move to another thread.
unsafe impl Send for GymEnv {}

impl GymEnv {
    /// Makes `gymnasium.make(id, **kwargs)` (with `render_mode` if given);
    /// `id` without the `gymnasium:` prefix.
    pub fn make(id: &str, kwargs: &Kwargs, render_mode: Option<&str>) -> Result<Self, EnvError> {
        let name = format!("{PREFIX}{id}");
        let fail = |message: String| EnvError::Custom {
            env: name.clone(),
            message,
        };
        if id.trim().is_empty() {
            return Err(fail(format!(
                "no Gymnasium id after '{PREFIX}'; write e.g. {PREFIX}CartPole-v1 or {PREFIX}my_module:MyEnv-v0"
            )));
        }
        let python = crate::python_executable()?;
        let plugin = plugin().map_err(&fail)?;
        let request = MakeRequest {
            python: python.display().to_string(),
            id: id.to_string(),
            kwargs: kwargs.clone(),
            render_mode: render_mode.map(str::to_string),
        };
        let json = serde_json::to_vec(&request).map_err(|e| fail(e.to_string()))?;
        // SAFETY: the request is valid for its length.
        let handle = unsafe { (plugin.make)(json.as_ptr(), json.len()) };
        if handle.is_null() {
            return Err(fail(plugin.last_error()));
        }
        let spaces = describe(plugin, handle)
            .and_then(|d| Ok((observation_space(&d.observation), action_space(&d.action)?)));
        let (observation_space, action_space) = match spaces {
            Ok(spaces) => spaces,
            Err(message) => {
                // SAFETY: the handle is live and not used again.
                unsafe { (plugin.close)(handle) };
                return Err(fail(message));
            }
        };
        Ok(GymEnv {
            plugin,
            handle,
            name,
            observation_space,
            action_space,
        })
    }

    /// `env.render()` of an env made with `render_mode = "rgb_array"`.
    pub fn render(&mut self) -> Result<Frame, EnvError> {
        let mut shape = [0usize; 3];
        let mut rgb = Vec::new();
        // SAFETY: a zero-length buffer asks for the size; shape holds 3.
        let needed =
            unsafe { (self.plugin.render)(self.handle, rgb.as_mut_ptr(), 0, shape.as_mut_ptr()) };
        if needed < 0 {
            return Err(self.error());
        }
        rgb.resize(needed as usize, 0);
        // SAFETY: the buffer holds the frame's bytes.
        let got = unsafe {
            (self.plugin.render)(self.handle, rgb.as_mut_ptr(), rgb.len(), shape.as_mut_ptr())
        };
        if got < 0 {
            return Err(self.error());
        }
        rgb.truncate(got as usize);
        Ok(Frame {
            height: shape[0],
            width: shape[1],
            rgb,
        })
    }

    fn error(&self) -> EnvError {
        EnvError::Custom {
            env: self.name.clone(),
            message: self.plugin.last_error(),
        }
    }
}

impl Drop for GymEnv {
    fn drop(&mut self) {
        // SAFETY: the handle is live and not used again.
        unsafe { (self.plugin.close)(self.handle) }
    }
}

/// The env's spaces and time limit, as the plugin describes them.
fn describe(plugin: &Plugin, handle: Handle) -> Result<Description, String> {
    let mut buf = vec![0u8; 1 << 16];
    // SAFETY: the buffer is valid for its length; the handle is live.
    let mut n = unsafe { (plugin.describe)(handle, buf.as_mut_ptr(), buf.len()) };
    if n > buf.len() {
        buf = vec![0u8; n];
        // SAFETY: as above.
        n = unsafe { (plugin.describe)(handle, buf.as_mut_ptr(), buf.len()) };
    }
    buf.truncate(n);
    serde_json::from_slice(&buf)
        .map_err(|e| format!("the bridge described the env unreadably: {e}"))
}

/// A described `Box` as ours (`None` bounds are infinite).
fn box_space(low: &[Option<f64>], high: &[Option<f64>], shape: &[usize]) -> Space {
    let bounds = |xs: &[Option<f64>], infinite: f32| -> Vec<f32> {
        xs.iter()
            .map(|x| x.map_or(infinite, |v| v as f32))
            .collect()
    };
    Space::Box(BoxSpace::new(
        bounds(low, f32::NEG_INFINITY),
        bounds(high, f32::INFINITY),
        shape.to_vec(),
    ))
}

/// Observations: a `Box`, or the one-hot vector of a `Discrete(n)`.
fn observation_space(d: &SpaceDescription) -> Space {
    match d {
        SpaceDescription::Box {
            low, high, shape, ..
        } => box_space(low, high, shape),
        SpaceDescription::Discrete { n, .. } => {
            Space::Box(BoxSpace::uniform(0.0, 1.0, *n as usize))
        }
    }
}

fn action_space(d: &SpaceDescription) -> Result<Space, String> {
    Ok(match d {
        SpaceDescription::Box {
            low, high, shape, ..
        } => box_space(low, high, shape),
        SpaceDescription::Discrete { n, .. } => Space::Discrete {
            n: usize::try_from(*n).map_err(|_| format!("Discrete({n}) is too large"))?,
        },
    })
}

impl Env for GymEnv {
    fn name(&self) -> &str {
        &self.name
    }

    fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        // SAFETY: the buffer is valid for its length; the handle is live.
        let status = unsafe {
            (self.plugin.reset)(
                self.handle,
                i32::from(seed.is_some()),
                seed.unwrap_or(0),
                obs.as_mut_ptr(),
                obs.len(),
            )
        };
        if status != 0 {
            return Err(self.error());
        }
        Ok(())
    }

    /// `env.render()`: the env must have been made with
    /// `render_mode="rgb_array"` (kwargs or [`GymEnv::make`]'s argument).
    fn render_rgb(&mut self) -> Result<Option<Frame>, EnvError> {
        self.render().map(Some)
    }

    fn step_into(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Transition, EnvError> {
        let (discrete, values): (i64, &[f32]) = match action {
            Action::Discrete(a) => (a, &[]),
            Action::Continuous(v) => (0, v),
        };
        let mut out = AbiStep::default();
        // SAFETY: the buffers are valid for their lengths; the handle is live.
        let status = unsafe {
            (self.plugin.step)(
                self.handle,
                discrete,
                values.as_ptr(),
                values.len(),
                obs.as_mut_ptr(),
                obs.len(),
                &mut out,
            )
        };
        if status != 0 {
            return Err(self.error());
        }
        Ok(Transition {
            reward: out.reward,
            terminated: out.terminated != 0,
            truncated: out.truncated != 0,
        })
    }
}
