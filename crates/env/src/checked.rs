//! `Checked`: the wrapper that makes any `Env` safe to drive from outside.

use crate::{Action, Env, EnvError, Frame, Space, Transition};

/// Where an env is in its episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    NeverReset,
    Running,
    Ended { terminated: bool },
}

/// Wraps an env with what Gymnasium's `make` adds around every env, and a
/// little more:
/// * the time limit (`TimeLimit`): `truncated` is set once `max_episode_steps`
///   steps have been taken in the episode (together with `terminated` when
///   both happen on the same step, as in Gymnasium);
/// * order enforcing: stepping before the first reset, or after the episode
///   ended without a reset, is an error;
/// * input checking: actions outside the action space (wrong kind, index out
///   of range, wrong length, NaN or infinity) and observation buffers of the
///   wrong length are errors that name the env, the value and what is allowed.
#[derive(Clone, Debug)]
pub struct Checked<E> {
    inner: E,
    id: String,
    max_episode_steps: Option<u32>,
    elapsed_steps: u32,
    phase: Phase,
    // Copies of the inner env's spaces, taken once: spaces are fixed for an
    // env's lifetime, and the hot path then needs no virtual calls.
    action_space: Space,
    obs_dim: usize,
}

impl<E: Env> Checked<E> {
    /// Wraps `inner`, naming it `id` in messages.
    pub fn new(id: impl Into<String>, inner: E, max_episode_steps: Option<u32>) -> Self {
        let action_space = inner.action_space().clone();
        let obs_dim = inner.observation_space().flat_dim();
        Checked {
            inner,
            id: id.into(),
            max_episode_steps,
            elapsed_steps: 0,
            phase: Phase::NeverReset,
            action_space,
            obs_dim,
        }
    }

    /// The registered id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The time limit, if any.
    pub fn max_episode_steps(&self) -> Option<u32> {
        self.max_episode_steps
    }

    /// Steps taken in the current episode.
    pub fn elapsed_steps(&self) -> u32 {
        self.elapsed_steps
    }

    /// The wrapped env (Gymnasium's `env.unwrapped`).
    pub fn unwrapped(&self) -> &E {
        &self.inner
    }

    /// The wrapped env, mutably. Stepping it directly bypasses every check.
    pub fn unwrapped_mut(&mut self) -> &mut E {
        &mut self.inner
    }

    #[inline]
    fn check_obs_buffer(&self, obs: &[f32]) -> Result<(), EnvError> {
        if obs.len() == self.obs_dim {
            Ok(())
        } else {
            Err(EnvError::BufferLength {
                env: self.id.clone(),
                what: "observation",
                got: obs.len(),
                expected: self.obs_dim,
            })
        }
    }

    /// Steps with an action the caller has already checked against the
    /// action space and a buffer of the right length; keeps the episode
    /// bookkeeping. The vectorised env checks a whole batch once up front.
    #[inline]
    pub(crate) fn step_prechecked(
        &mut self,
        action: Action<'_>,
        obs: &mut [f32],
    ) -> Result<Transition, EnvError> {
        match self.phase {
            Phase::Running => {}
            Phase::NeverReset => {
                return Err(EnvError::StepBeforeReset {
                    env: self.id.clone(),
                })
            }
            Phase::Ended { terminated } => {
                return Err(EnvError::StepAfterEpisodeEnd {
                    env: self.id.clone(),
                    how: if terminated {
                        "terminated"
                    } else {
                        "truncated"
                    },
                })
            }
        }
        let mut t = self.inner.step_into(action, obs)?;
        self.elapsed_steps += 1;
        if let Some(limit) = self.max_episode_steps {
            if self.elapsed_steps >= limit {
                t.truncated = true;
            }
        }
        if t.terminated || t.truncated {
            self.phase = Phase::Ended {
                terminated: t.terminated,
            };
        }
        Ok(t)
    }
}

impl<E: Env> Env for Checked<E> {
    fn name(&self) -> &str {
        &self.id
    }

    fn observation_space(&self) -> &Space {
        self.inner.observation_space()
    }

    fn action_space(&self) -> &Space {
        &self.action_space
    }

    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<(), EnvError> {
        self.check_obs_buffer(obs)?;
        self.inner.reset_into(seed, obs)?;
        self.elapsed_steps = 0;
        self.phase = Phase::Running;
        Ok(())
    }

    #[inline]
    fn step_into(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Transition, EnvError> {
        self.action_space.check_action(&self.id, action)?;
        self.check_obs_buffer(obs)?;
        self.step_prechecked(action, obs)
    }

    fn state(&self) -> Option<Vec<f64>> {
        self.inner.state()
    }

    /// Sets the state of the current episode; only valid after a reset, like
    /// assigning `env.unwrapped.state` in Gymnasium. The episode's step count
    /// is kept.
    fn set_state(&mut self, state: &[f64], obs: &mut [f32]) -> Result<(), EnvError> {
        self.check_obs_buffer(obs)?;
        if self.phase == Phase::NeverReset {
            return Err(EnvError::State {
                env: self.id.clone(),
                problem: "set_state() called before reset(); reset first, then set the state"
                    .to_string(),
            });
        }
        self.inner.set_state(state, obs)?;
        self.phase = Phase::Running;
        Ok(())
    }

    fn render_rgb(&mut self) -> Result<Option<Frame>, EnvError> {
        self.inner.render_rgb()
    }

    /// The episode bookkeeping (steps taken, reset/end state) and the inner
    /// env's snapshot.
    fn snapshot(&self) -> Option<Vec<u8>> {
        let inner = self.inner.snapshot()?;
        let mut w = crate::snapshot::SnapshotWriter::new();
        w.u32(self.elapsed_steps);
        match self.phase {
            Phase::NeverReset => w.u8(0),
            Phase::Running => w.u8(1),
            Phase::Ended { terminated: false } => w.u8(2),
            Phase::Ended { terminated: true } => w.u8(3),
        };
        w.bytes(&inner);
        Some(w.finish())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), EnvError> {
        let mut r = crate::snapshot::SnapshotReader::new(&self.id, snapshot);
        let elapsed_steps = r.u32()?;
        let phase = match r.u8()? {
            0 => Phase::NeverReset,
            1 => Phase::Running,
            2 => Phase::Ended { terminated: false },
            3 => Phase::Ended { terminated: true },
            other => {
                return Err(EnvError::State {
                    env: self.id.clone(),
                    problem: format!("cannot restore the snapshot: episode phase {other}"),
                })
            }
        };
        let inner = r.bytes()?;
        r.finish()?;
        self.inner.restore(inner)?;
        self.elapsed_steps = elapsed_steps;
        self.phase = phase;
        Ok(())
    }
}
