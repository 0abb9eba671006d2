//! `VecEnv`: many envs stepped together into contiguous buffers.

use crate::seeds::env_seed;
use crate::snapshot::{SnapshotReader, SnapshotWriter};
use crate::{Action, Actions, Checked, Env, EnvError, Space};

/// An episode that ended during the last `step` of a [`VecEnv`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FinishedEpisode {
    /// Which env (row) it ran in.
    pub env_index: usize,
    /// The undiscounted sum of its rewards.
    pub episode_return: f64,
    /// Its number of steps.
    pub length: u32,
    pub terminated: bool,
    pub truncated: bool,
}

/// Steps `num_envs` envs of one kind into contiguous row-major buffers.
///
/// **Autoreset mode: same-step.** When env `i` ends an episode (terminated or
/// truncated) in `step`, its row of `obs()` already holds the first
/// observation of the next episode, `final_obs()` holds the last observation
/// of the episode that ended, and `terminated()`/`truncated()` describe that
/// ended episode. This is Gymnasium's `AutoresetMode.SAME_STEP` and what
/// Stable-Baselines3 does. We chose it over Gymnasium's default
/// `NEXT_STEP` because every call then yields a real transition for every env
/// (no dummy step whose action is ignored, so no masking in rollouts), and the
/// learner gets the final observation it needs to bootstrap truncated
/// episodes in the same step.
///
/// Actions are checked for the whole batch before any env moves, so a bad
/// action leaves every env where it was. Any other error (from an env
/// itself) may leave the batch partly stepped: reset before stepping again.
pub struct VecEnv<E = Box<dyn Env>> {
    envs: Vec<Checked<E>>,
    observation_space: Space,
    action_space: Space,
    obs_dim: usize,
    action_dim: usize,
    obs: Vec<f32>,             // [num_envs, obs_dim]
    final_obs: Vec<f32>,       // [num_envs, obs_dim], valid in rows that ended
    rewards: Vec<f32>,         // [num_envs]
    terminated: Vec<bool>,     // [num_envs]
    truncated: Vec<bool>,      // [num_envs]
    episode_returns: Vec<f64>, // [num_envs], running
    episode_lengths: Vec<u32>, // [num_envs], running
    finished: Vec<FinishedEpisode>,
    was_reset: bool,
}

impl<E: Env> VecEnv<E> {
    /// Builds a vectorised env from envs that share one observation and one
    /// action space.
    pub fn new(envs: Vec<Checked<E>>) -> Result<Self, EnvError> {
        let first = envs.first().ok_or_else(|| EnvError::NoEnvs {
            env: "VecEnv".to_string(),
            num_envs: 0,
        })?;
        let observation_space = first.observation_space().clone();
        let action_space = first.action_space().clone();
        for (i, env) in envs.iter().enumerate() {
            if env.observation_space() != &observation_space || env.action_space() != &action_space
            {
                return Err(EnvError::Custom {
                    env: env.id().to_string(),
                    message: format!(
                        "env {i} of the vectorised env has spaces {} / {}, but env 0 has {} / {}; all envs must share their spaces",
                        env.observation_space(),
                        env.action_space(),
                        observation_space,
                        action_space
                    ),
                });
            }
        }
        let num_envs = envs.len();
        let obs_dim = observation_space.flat_dim();
        let action_dim = action_space.flat_dim();
        Ok(VecEnv {
            envs,
            observation_space,
            action_space,
            obs_dim,
            action_dim,
            obs: vec![0.0; num_envs * obs_dim],
            final_obs: vec![0.0; num_envs * obs_dim],
            rewards: vec![0.0; num_envs],
            terminated: vec![false; num_envs],
            truncated: vec![false; num_envs],
            episode_returns: vec![0.0; num_envs],
            episode_lengths: vec![0; num_envs],
            finished: Vec::new(),
            was_reset: false,
        })
    }

    /// Resets every env; env `i` is seeded with `env_seed(base_seed, i)`.
    pub fn reset(&mut self, base_seed: u64) -> Result<(), EnvError> {
        let seeds: Vec<u64> = (0..self.num_envs() as u64)
            .map(|i| env_seed(base_seed, i))
            .collect();
        self.reset_with_seeds(&seeds)
    }

    /// Resets every env, env `i` with `seeds[i]`. A caller that splits one
    /// set of envs over several vectorised envs passes each its slice of the
    /// seeds, so the split does not change any env's trajectory.
    pub fn reset_with_seeds(&mut self, seeds: &[u64]) -> Result<(), EnvError> {
        if seeds.len() != self.num_envs() {
            return Err(EnvError::BufferLength {
                env: self.id().to_string(),
                what: "seed",
                got: seeds.len(),
                expected: self.num_envs(),
            });
        }
        for (i, (env, seed)) in self.envs.iter_mut().zip(seeds).enumerate() {
            let row = &mut self.obs[i * self.obs_dim..(i + 1) * self.obs_dim];
            env.reset_into(Some(*seed), row)?;
        }
        self.rewards.fill(0.0);
        self.terminated.fill(false);
        self.truncated.fill(false);
        self.episode_returns.fill(0.0);
        self.episode_lengths.fill(0);
        self.finished.clear();
        self.was_reset = true;
        Ok(())
    }

    /// Every env's state and the vectorised env's own (current
    /// observations, running episode returns and lengths), as bytes; `None`
    /// when an env does not support snapshots.
    pub fn snapshot(&self) -> Option<Vec<u8>> {
        let mut w = SnapshotWriter::new();
        w.u64(self.num_envs() as u64)
            .u64(self.obs_dim as u64)
            .bool(self.was_reset);
        for ((env, ret), len) in self
            .envs
            .iter()
            .zip(&self.episode_returns)
            .zip(&self.episode_lengths)
        {
            w.f64(*ret).u32(*len).bytes(&env.snapshot()?);
        }
        for x in &self.obs {
            w.f32(*x);
        }
        Some(w.finish())
    }

    /// Puts every env back as a [`VecEnv::snapshot`] of a vectorised env of
    /// the same envs found them; the next `step` continues exactly.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), EnvError> {
        let id = self.id().to_string();
        let mut r = SnapshotReader::new(&id, snapshot);
        let (num_envs, obs_dim) = (r.u64()?, r.u64()?);
        if (num_envs, obs_dim) != (self.num_envs() as u64, self.obs_dim as u64) {
            return Err(EnvError::State {
                env: id.clone(),
                problem: format!(
                    "cannot restore a snapshot of {num_envs} envs with {obs_dim} observations into {} envs with {}",
                    self.num_envs(),
                    self.obs_dim
                ),
            });
        }
        let was_reset = r.bool()?;
        let mut returns = Vec::with_capacity(self.num_envs());
        let mut lengths = Vec::with_capacity(self.num_envs());
        let mut envs = Vec::with_capacity(self.num_envs());
        for _ in 0..self.num_envs() {
            returns.push(r.f64()?);
            lengths.push(r.u32()?);
            envs.push(r.bytes()?);
        }
        let mut obs = Vec::with_capacity(self.obs.len());
        for _ in 0..self.obs.len() {
            obs.push(r.f32()?);
        }
        r.finish()?;
        for (env, bytes) in self.envs.iter_mut().zip(envs) {
            env.restore(bytes)?;
        }
        self.obs = obs;
        self.episode_returns = returns;
        self.episode_lengths = lengths;
        self.was_reset = was_reset;
        self.rewards.fill(0.0);
        self.terminated.fill(false);
        self.truncated.fill(false);
        self.finished.clear();
        Ok(())
    }

    fn check_actions(&self, actions: Actions<'_>) -> Result<(), EnvError> {
        let n = self.num_envs();
        let (got, expected) = match actions {
            Actions::Discrete(a) => (a.len(), n),
            Actions::Continuous(a) => (a.len(), n * self.action_dim),
        };
        if actions_kind_mismatch(&self.action_space, actions) {
            return Err(EnvError::ActionKind {
                env: self.id().to_string(),
                got: match actions {
                    Actions::Discrete(_) => "discrete",
                    Actions::Continuous(_) => "continuous",
                },
                space: self.action_space.to_string(),
            });
        }
        if got != expected {
            return Err(EnvError::BufferLength {
                env: self.id().to_string(),
                what: "action",
                got,
                expected,
            });
        }
        for i in 0..n {
            let action = action_at(actions, i, self.action_dim);
            self.action_space.check_action(self.id(), action)?;
        }
        Ok(())
    }

    /// Steps every env with its action (`Discrete`: `[num_envs]` indices;
    /// `Continuous`: `[num_envs, action_dim]` values) and autoresets the envs
    /// whose episode ended (see the type's documentation).
    pub fn step(&mut self, actions: Actions<'_>) -> Result<(), EnvError> {
        if !self.was_reset {
            return Err(EnvError::StepBeforeReset {
                env: self.id().to_string(),
            });
        }
        self.check_actions(actions)?;
        self.finished.clear();
        let obs_dim = self.obs_dim;
        for (i, env) in self.envs.iter_mut().enumerate() {
            let row = &mut self.obs[i * obs_dim..(i + 1) * obs_dim];
            let t = env.step_prechecked(action_at(actions, i, self.action_dim), row)?;
            self.rewards[i] = t.reward as f32;
            self.terminated[i] = t.terminated;
            self.truncated[i] = t.truncated;
            self.episode_returns[i] += t.reward;
            self.episode_lengths[i] += 1;
            if t.terminated || t.truncated {
                self.final_obs[i * obs_dim..(i + 1) * obs_dim].copy_from_slice(row);
                self.finished.push(FinishedEpisode {
                    env_index: i,
                    episode_return: self.episode_returns[i],
                    length: self.episode_lengths[i],
                    terminated: t.terminated,
                    truncated: t.truncated,
                });
                self.episode_returns[i] = 0.0;
                self.episode_lengths[i] = 0;
                env.reset_into(None, row)?;
            }
        }
        Ok(())
    }

    /// The id of the envs.
    pub fn id(&self) -> &str {
        self.envs[0].id()
    }

    pub fn num_envs(&self) -> usize {
        self.envs.len()
    }

    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Values per action: 1 for `Discrete`, the element count for `Box`.
    pub fn action_dim(&self) -> usize {
        self.action_dim
    }

    pub fn observation_space(&self) -> &Space {
        &self.observation_space
    }

    pub fn action_space(&self) -> &Space {
        &self.action_space
    }

    /// Current observations, `[num_envs, obs_dim]`.
    pub fn obs(&self) -> &[f32] {
        &self.obs
    }

    /// Last observations of the episodes that ended in the last step,
    /// `[num_envs, obs_dim]`; rows of envs that did not end hold stale data.
    pub fn final_obs(&self) -> &[f32] {
        &self.final_obs
    }

    /// Rewards of the last step, `[num_envs]`.
    pub fn rewards(&self) -> &[f32] {
        &self.rewards
    }

    /// Whether each env's episode terminated in the last step, `[num_envs]`.
    pub fn terminated(&self) -> &[bool] {
        &self.terminated
    }

    /// Whether each env's episode was truncated in the last step, `[num_envs]`.
    pub fn truncated(&self) -> &[bool] {
        &self.truncated
    }

    /// Episodes that ended in the last step, in env order.
    pub fn finished_episodes(&self) -> &[FinishedEpisode] {
        &self.finished
    }

    /// The envs themselves, e.g. to read their states.
    pub fn envs(&self) -> &[Checked<E>] {
        &self.envs
    }
}

fn actions_kind_mismatch(space: &Space, actions: Actions<'_>) -> bool {
    matches!(
        (space, actions),
        (Space::Discrete { .. }, Actions::Continuous(_)) | (Space::Box(_), Actions::Discrete(_))
    )
}

#[inline]
fn action_at(actions: Actions<'_>, i: usize, action_dim: usize) -> Action<'_> {
    match actions {
        Actions::Discrete(a) => Action::Discrete(a[i]),
        Actions::Continuous(a) => Action::Continuous(&a[i * action_dim..(i + 1) * action_dim]),
    }
}
