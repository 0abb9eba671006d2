//! Rollouts: what acting produces and learning consumes.

use rl_env::rng::{derive_seed, Rng};
use rl_env::{Actions, EnvError, Space, VecEnv};

use crate::{ObsNormalizer, Policy};

/// A salt that keeps action-sampling streams apart from env streams.
const SAMPLING_SALT: u64 = 0xA5A5_5A5A_C3C3_3C3C;

/// One episode that ended during a rollout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeRecord {
    pub episode_return: f64,
    pub length: u32,
}

/// `num_steps` transitions of `num_envs` envs, time-major.
///
/// Observations are raw (not normalised); `values`, `log_probs` and
/// `final_values` were computed on observations normalised with the
/// statistics the collector was given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollout {
    pub num_steps: usize,
    pub num_envs: usize,
    pub obs_dim: usize,
    pub action_dim: usize,
    pub obs: Vec<f32>,         // [T, E, obs_dim]
    pub actions: Vec<f32>,     // [T, E, action_dim], unclipped; indices for Discrete
    pub log_probs: Vec<f32>,   // [T, E]
    pub values: Vec<f32>,      // [T, E]
    pub rewards: Vec<f32>,     // [T, E], raw
    pub terminated: Vec<bool>, // [T, E]
    pub truncated: Vec<bool>,  // [T, E]
    /// Value of the final observation where the step truncated an episode
    /// (0 elsewhere): the learner bootstraps with it.
    pub final_values: Vec<f32>, // [T, E]
    pub last_obs: Vec<f32>,    // [E, obs_dim], after the last step, raw
    pub last_values: Vec<f32>, // [E]
    pub episodes: Vec<EpisodeRecord>,
}

/// Steps a vectorised env with a policy and records rollouts.
///
/// Env `i` of this collector is env `first_env_index + i` of the whole run:
/// its env seed and its action-sampling stream depend only on that global
/// index, so splitting the envs over several collectors changes nothing.
pub struct RolloutCollector {
    envs: VecEnv,
    policy: Policy,
    obs_norm: Option<ObsNormalizer>,
    rngs: Vec<Rng>,               // [E], one action-sampling stream per env
    normalized: Vec<f32>,         // [obs_dim]
    action: Vec<f32>,             // [action_dim]
    discrete_actions: Vec<i64>,   // [E]
    continuous_actions: Vec<f32>, // [E, action_dim], clipped
}

impl RolloutCollector {
    /// Resets the envs with seeds `derive_seed(seed, first_env_index + i)`.
    pub fn new(
        mut envs: VecEnv,
        policy: Policy,
        seed: u64,
        first_env_index: u64,
    ) -> Result<Self, EnvError> {
        let n = envs.num_envs();
        let seeds: Vec<u64> = (0..n as u64)
            .map(|i| derive_seed(seed, first_env_index + i))
            .collect();
        envs.reset_with_seeds(&seeds)?;
        let rngs = (0..n as u64)
            .map(|i| Rng::from_seed(derive_seed(seed ^ SAMPLING_SALT, first_env_index + i)))
            .collect();
        let action_dim = policy.spec().head.action_dim();
        let obs_dim = envs.obs_dim();
        Ok(RolloutCollector {
            envs,
            policy,
            obs_norm: None,
            rngs,
            normalized: vec![0.0; obs_dim],
            action: vec![0.0; action_dim],
            discrete_actions: vec![0; n],
            continuous_actions: vec![0.0; n * action_dim],
        })
    }

    pub fn num_envs(&self) -> usize {
        self.envs.num_envs()
    }

    /// Installs the weights (flat, layout order) and normalisation statistics
    /// to act with.
    pub fn set_policy(
        &mut self,
        weights: &[f32],
        obs_norm: Option<ObsNormalizer>,
    ) -> Result<(), crate::PolicyError> {
        self.policy.set_weights(weights)?;
        self.obs_norm = obs_norm;
        Ok(())
    }

    fn normalize_into(obs_norm: &Option<ObsNormalizer>, raw: &[f32], out: &mut [f32]) {
        match obs_norm {
            Some(norm) => norm.normalize(raw, out),
            None => out.copy_from_slice(raw),
        }
    }

    /// Collects `num_steps` steps of every env.
    pub fn collect(&mut self, num_steps: usize) -> Result<Rollout, EnvError> {
        let n = self.envs.num_envs();
        let obs_dim = self.envs.obs_dim();
        let action_dim = self.action.len();
        let mut r = Rollout {
            num_steps,
            num_envs: n,
            obs_dim,
            action_dim,
            obs: Vec::with_capacity(num_steps * n * obs_dim),
            actions: Vec::with_capacity(num_steps * n * action_dim),
            log_probs: Vec::with_capacity(num_steps * n),
            values: Vec::with_capacity(num_steps * n),
            rewards: Vec::with_capacity(num_steps * n),
            terminated: Vec::with_capacity(num_steps * n),
            truncated: Vec::with_capacity(num_steps * n),
            final_values: Vec::with_capacity(num_steps * n),
            ..Rollout::default()
        };
        let bounds = match self.envs.action_space() {
            Space::Box(b) => Some((b.low.clone(), b.high.clone())),
            Space::Discrete { .. } => None,
        };
        for _ in 0..num_steps {
            r.obs.extend_from_slice(self.envs.obs());
            for i in 0..n {
                let raw = &self.envs.obs()[i * obs_dim..(i + 1) * obs_dim];
                Self::normalize_into(&self.obs_norm, raw, &mut self.normalized);
                let log_prob =
                    self.policy
                        .sample(&self.normalized, &mut self.rngs[i], &mut self.action);
                let value = self.policy.value(&self.normalized);
                r.actions.extend_from_slice(&self.action);
                r.log_probs.push(log_prob);
                r.values.push(value);
                match &bounds {
                    None => self.discrete_actions[i] = self.action[0] as i64,
                    Some((low, high)) => {
                        for d in 0..action_dim {
                            self.continuous_actions[i * action_dim + d] =
                                self.action[d].clamp(low[d], high[d]);
                        }
                    }
                }
            }
            if bounds.is_none() {
                self.envs.step(Actions::Discrete(&self.discrete_actions))?;
            } else {
                self.envs
                    .step(Actions::Continuous(&self.continuous_actions))?;
            }
            r.rewards.extend_from_slice(self.envs.rewards());
            r.terminated.extend_from_slice(self.envs.terminated());
            r.truncated.extend_from_slice(self.envs.truncated());
            for i in 0..n {
                let bootstrap = self.envs.truncated()[i] && !self.envs.terminated()[i];
                let final_value = if bootstrap {
                    let raw = &self.envs.final_obs()[i * obs_dim..(i + 1) * obs_dim];
                    Self::normalize_into(&self.obs_norm, raw, &mut self.normalized);
                    self.policy.value(&self.normalized)
                } else {
                    0.0
                };
                r.final_values.push(final_value);
            }
            r.episodes
                .extend(self.envs.finished_episodes().iter().map(|e| EpisodeRecord {
                    episode_return: e.episode_return,
                    length: e.length,
                }));
        }
        r.last_obs = self.envs.obs().to_vec();
        for i in 0..n {
            let raw = &self.envs.obs()[i * obs_dim..(i + 1) * obs_dim];
            Self::normalize_into(&self.obs_norm, raw, &mut self.normalized);
            r.last_values.push(self.policy.value(&self.normalized));
        }
        Ok(r)
    }
}
