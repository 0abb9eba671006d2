//! The `Env` trait: what an environment is, with Gymnasium's semantics.

use crate::{Action, EnvError, Frame, Space};

/// What one step produced besides the observation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition {
    pub reward: f64,
    /// The episode reached a terminal state of the task (the pole fell, the
    /// car reached the flag): there is no future reward to bootstrap.
    pub terminated: bool,
    /// The episode was cut short by something outside the task, such as a
    /// time limit: the value of the final observation still counts.
    pub truncated: bool,
}

/// One step with its observation, for callers that prefer owned values to
/// buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub obs: Vec<f32>,
    pub reward: f64,
    pub terminated: bool,
    pub truncated: bool,
}

/// An environment with Gymnasium's semantics.
///
/// Observations are `f32` vectors of `observation_space().flat_dim()` values,
/// written into caller-owned buffers so the hot path never allocates.
///
/// Implementors may rely on what [`crate::Checked`] (which every env built by
/// the [`crate::Registry`] is wrapped in) guarantees before calling them: the
/// buffer has the right length, the action belongs to the action space
/// (discrete index in range; continuous vector of the right length with
/// finite values, possibly outside the bounds), `reset_into` came before the
/// first `step_into`, and no step follows the end of an episode without a
/// reset. Implementations must still never panic on such input: return an
/// error instead.
///
/// Time limits do not belong here: the registry applies them, as Gymnasium's
/// `TimeLimit` wrapper does, by setting `truncated`.
pub trait Env: Send {
    /// A name for messages; the registry's wrapper uses the registered id.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// The space observations live in (a `Box`).
    fn observation_space(&self) -> &Space;

    /// The space actions live in.
    fn action_space(&self) -> &Space;

    /// Starts a new episode and writes its first observation into `obs`.
    ///
    /// `Some(seed)` reseeds the env's random generator first, so the same seed
    /// always gives the same episode; `None` continues the current stream.
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError>;

    /// Advances one step and writes the next observation into `obs`.
    fn step_into(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Transition, EnvError>;

    /// The internal state (Gymnasium's `env.unwrapped.state`), if the env
    /// exposes it.
    fn state(&self) -> Option<Vec<f64>> {
        None
    }

    /// Replaces the internal state and writes the observation it gives into
    /// `obs`. Envs that do not expose their state return an error.
    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<(), EnvError> {
        let _ = (state, obs);
        Err(EnvError::State {
            env: self.name().to_string(),
            problem: "this environment does not expose its internal state".to_string(),
        })
    }

    /// The env's whole state as bytes: everything its next `step` and
    /// `reset(None)` depend on, its random generator included (see
    /// [`crate::snapshot`]). `None` (the default) when the env does not
    /// support snapshots; a resumed run then starts its episodes afresh.
    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }

    /// Puts the env back in the state of a [`Env::snapshot`] of an env of
    /// the same kind.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), EnvError> {
        let _ = snapshot;
        Err(EnvError::State {
            env: self.name().to_string(),
            problem: "this environment does not support snapshots".to_string(),
        })
    }

    /// A picture of the current state, like Gymnasium's `render()` with
    /// `render_mode="rgb_array"`; `Ok(None)` (the default) when the env
    /// draws nothing.
    fn render_rgb(&mut self) -> Result<Option<Frame>, EnvError> {
        Ok(None)
    }

    /// `reset_into` into a new vector.
    fn reset(&mut self, seed: Option<u64>) -> Result<Vec<f32>, EnvError> {
        let mut obs = vec![0.0; self.observation_space().flat_dim()];
        self.reset_into(seed, &mut obs)?;
        Ok(obs)
    }

    /// `step_into` into a new vector.
    fn step(&mut self, action: Action<'_>) -> Result<Step, EnvError> {
        let mut obs = vec![0.0; self.observation_space().flat_dim()];
        let t = self.step_into(action, &mut obs)?;
        Ok(Step {
            obs,
            reward: t.reward,
            terminated: t.terminated,
            truncated: t.truncated,
        })
    }
}

impl<E: Env + ?Sized> Env for Box<E> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn observation_space(&self) -> &Space {
        (**self).observation_space()
    }
    fn action_space(&self) -> &Space {
        (**self).action_space()
    }
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        (**self).reset_into(seed, obs)
    }
    #[inline]
    fn step_into(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Transition, EnvError> {
        (**self).step_into(action, obs)
    }
    fn state(&self) -> Option<Vec<f64>> {
        (**self).state()
    }
    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<(), EnvError> {
        (**self).set_state(state, obs)
    }
    fn snapshot(&self) -> Option<Vec<u8>> {
        (**self).snapshot()
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), EnvError> {
        (**self).restore(snapshot)
    }
    fn render_rgb(&mut self) -> Result<Option<Frame>, EnvError> {
        (**self).render_rgb()
    }
}
