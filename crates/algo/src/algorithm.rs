//! What every algorithm is given besides its own config table.

/// The run an algorithm learns in: its envs, its length, its seed, and the
/// env-side normalisation (`[env] normalize_obs` / `normalize_reward`,
/// SB3's `VecNormalize`), which the learner keeps the statistics of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSpec {
    /// Envs stepped together, over all collectors.
    pub num_envs: usize,
    /// Env steps to train for, over all envs.
    pub total_timesteps: u64,
    /// The run's seed (see `rl_env::seeds` for what is derived from it).
    pub seed: u64,
    /// The clip of normalised observations, when observations are
    /// normalised.
    pub obs_norm_clip: Option<f64>,
    /// The clip of scaled rewards, when rewards are scaled.
    pub reward_scale_clip: Option<f64>,
}

impl RunSpec {
    /// `num_envs` envs for `total_timesteps` steps, without normalisation.
    pub fn new(num_envs: usize, total_timesteps: u64, seed: u64) -> Self {
        RunSpec {
            num_envs,
            total_timesteps,
            seed,
            obs_norm_clip: None,
            reward_scale_clip: None,
        }
    }
}
