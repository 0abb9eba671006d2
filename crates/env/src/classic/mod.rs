//! Classic control, ported from Gymnasium 1.4 line by line: the same
//! constants, integrators, rewards, termination rules, observation bounds,
//! action clipping, reset distributions and internal dtypes (including the
//! places where Gymnasium computes in float32), so that its traces replay
//! here to within float32 rounding.

mod acrobot;
mod cartpole;
mod continuous_mountain_car;
mod mountain_car;
mod pendulum;

pub use acrobot::Acrobot;
pub use cartpole::CartPole;
pub use continuous_mountain_car::MountainCarContinuous;
pub use mountain_car::MountainCar;
pub use pendulum::Pendulum;

use crate::rng::Rng;
use crate::{Action, EnvError, Registry, Space};

/// Registers the five classic-control envs under their Gymnasium ids and time
/// limits.
pub fn register_all(registry: &mut Registry) {
    let entries: [(&str, u32); 5] = [
        (CartPole::ID, 500),
        (Pendulum::ID, 200),
        (MountainCar::ID, 200),
        (MountainCarContinuous::ID, 999),
        (Acrobot::ID, 500),
    ];
    for (id, limit) in entries {
        let result = match id {
            CartPole::ID => registry.register(id, Some(limit), CartPole::new),
            Pendulum::ID => registry.register(id, Some(limit), Pendulum::new),
            MountainCar::ID => registry.register(id, Some(limit), MountainCar::new),
            MountainCarContinuous::ID => {
                registry.register(id, Some(limit), MountainCarContinuous::new)
            }
            _ => registry.register(id, Some(limit), Acrobot::new),
        };
        // Ids are fixed and distinct, and the registry starts empty here or
        // holds only user ids that cannot clash unless a user reused one.
        if let Err(e) = result {
            debug_assert!(false, "registering built-in env failed: {e}");
        }
    }
}

/// The env's random generator: reseeded by `reset(Some(seed))`, seeded from
/// entropy on a first unseeded reset, as Gymnasium does.
#[derive(Clone, Debug, Default)]
pub(crate) struct EnvRng(pub(crate) Option<Rng>);

impl EnvRng {
    pub(crate) fn for_reset(&mut self, seed: Option<u64>) -> &mut Rng {
        match seed {
            Some(seed) => self.0.insert(Rng::from_seed(seed)),
            None => self.0.get_or_insert_with(Rng::from_entropy),
        }
    }
}

/// Copies an observation into a caller's buffer, or reports its length.
#[inline]
pub(crate) fn write_obs<const N: usize>(
    env: &str,
    obs: &mut [f32],
    values: [f32; N],
) -> Result<(), EnvError> {
    if obs.len() != N {
        return Err(EnvError::BufferLength {
            env: env.to_string(),
            what: "observation",
            got: obs.len(),
            expected: N,
        });
    }
    obs.copy_from_slice(&values);
    Ok(())
}

/// The index of an action for `Discrete(n)`, checked.
#[inline]
pub(crate) fn discrete_action(
    env: &str,
    space: &Space,
    n: usize,
    action: Action<'_>,
) -> Result<usize, EnvError> {
    match action {
        Action::Discrete(a) if a >= 0 && (a as u64) < n as u64 => Ok(a as usize),
        _ => space.check_action(env, action).map(|_| 0),
    }
}

/// The value of an action for a one-element `Box`, checked.
#[inline]
pub(crate) fn continuous_action_1d(
    env: &str,
    space: &Space,
    action: Action<'_>,
) -> Result<f32, EnvError> {
    match action {
        Action::Continuous([a]) if a.is_finite() => Ok(*a),
        _ => space.check_action(env, action).map(|_| 0.0),
    }
}

/// A state of `N` values, or an error naming the wrong length.
pub(crate) fn state_array<const N: usize>(env: &str, state: &[f64]) -> Result<[f64; N], EnvError> {
    <[f64; N]>::try_from(state).map_err(|_| EnvError::State {
        env: env.to_string(),
        problem: format!("the state has {N} values, got {}", state.len()),
    })
}

/// The snapshot of an env whose whole state is its `N` state values and its
/// generator (see [`crate::snapshot`]).
pub(crate) fn snapshot_state<const N: usize>(state: &[f64; N], rng: &EnvRng) -> Vec<u8> {
    let mut w = crate::snapshot::SnapshotWriter::new();
    w.f64s(state).optional_rng(rng.0.as_ref());
    w.finish()
}

/// Reads a snapshot written by [`snapshot_state`].
pub(crate) fn restore_state<const N: usize>(
    env: &str,
    snapshot: &[u8],
) -> Result<([f64; N], EnvRng), EnvError> {
    let mut r = crate::snapshot::SnapshotReader::new(env, snapshot);
    let state = r.f64s()?;
    let rng = r.optional_rng()?;
    r.finish()?;
    Ok((state, EnvRng(rng)))
}
