//! The `[sac]`, `[td3]` and `[dqn]` tables: each algorithm's
//! hyperparameters with CleanRL's names and defaults
//! (`sac_continuous_action.py`, `td3_continuous_action.py`, `dqn.py`), the
//! replay and pacing settings they share, and their validation.
//!
//! Pacing: collectors step every env `train_frequency` times (a *chunk* of
//! `train_frequency * num_envs` transitions), then the learner runs
//! `gradient_steps` updates. The update-to-data ratio is
//! `gradient_steps / (train_frequency * num_envs)`; CleanRL's (one update
//! per env step of one env) is the default.

use serde::{Deserialize, Serialize};

use crate::validate::{Checks, FieldError, MAX_CONFIG_INT};

/// What the three tables share: the replay buffer, the pacing and the
/// targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Common {
    pub buffer_size: u64,
    pub batch_size: usize,
    pub learning_starts: u64,
    pub train_frequency: usize,
    pub gradient_steps: u64,
    pub gamma: f64,
    pub tau: f64,
    pub save_replay: bool,
    pub save_replay_max_mb: u64,
    pub log_interval: u64,
}

impl Common {
    fn check(&self, c: &mut Checks) {
        c.count("buffer_size", self.buffer_size)
            .count("batch_size", self.batch_size as u64)
            .require(
                self.learning_starts <= MAX_CONFIG_INT,
                "learning_starts",
                self.learning_starts,
                "an integer in 0..=9223372036854775807",
            )
            .count("train_frequency", self.train_frequency as u64)
            .require(
                self.gradient_steps <= MAX_CONFIG_INT,
                "gradient_steps",
                self.gradient_steps,
                "an integer in 0..=9223372036854775807",
            )
            .unit("gamma", self.gamma)
            .require(
                self.tau > 0.0 && self.tau <= 1.0,
                "tau",
                self.tau,
                "a number in (0, 1]",
            )
            .count("save_replay_max_mb", self.save_replay_max_mb)
            .count("log_interval", self.log_interval);
    }
}

macro_rules! common_of {
    ($t:ty) => {
        impl $t {
            /// The settings every off-policy table has.
            pub fn common(&self) -> Common {
                Common {
                    buffer_size: self.buffer_size,
                    batch_size: self.batch_size,
                    learning_starts: self.learning_starts,
                    train_frequency: self.train_frequency,
                    gradient_steps: self.gradient_steps,
                    gamma: self.gamma,
                    tau: self.tau,
                    save_replay: self.save_replay,
                    save_replay_max_mb: self.save_replay_max_mb,
                    log_interval: self.log_interval,
                }
            }
        }
    };
}

fn default_save_replay_max_mb() -> u64 {
    4096
}

/// SAC (the `[sac]` table), CleanRL's `sac_continuous_action.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SacConfig {
    /// Transitions the replay buffer holds (the oldest are overwritten).
    pub buffer_size: u64,
    pub gamma: f64,
    /// Polyak coefficient of the target networks.
    pub tau: f64,
    pub batch_size: usize,
    /// Env steps (over all envs) of uniformly random actions before
    /// learning starts.
    pub learning_starts: u64,
    /// Steps each env takes per chunk.
    pub train_frequency: usize,
    /// Updates per chunk.
    pub gradient_steps: u64,
    /// Adam learning rate of the actor.
    pub policy_lr: f64,
    /// Adam learning rate of the Q-networks (and of alpha).
    pub q_lr: f64,
    /// The actor (and alpha) is updated every this many updates, that many
    /// times (CleanRL's compensated delay).
    pub policy_frequency: u64,
    /// The target networks are updated every this many updates.
    pub target_network_frequency: u64,
    /// The entropy coefficient (its start when `autotune`; CleanRL starts
    /// the tuned one at 1).
    pub alpha: f64,
    /// Tune alpha towards the target entropy -dim(A).
    pub autotune: bool,
    /// Save the replay buffer in checkpoints...
    pub save_replay: bool,
    /// ...while it is at most this many MiB.
    #[serde(default = "default_save_replay_max_mb")]
    pub save_replay_max_mb: u64,
    /// Env steps between rows of train.csv (the mean of the updates').
    pub log_interval: u64,
}

impl Default for SacConfig {
    fn default() -> Self {
        SacConfig {
            buffer_size: 1_000_000,
            gamma: 0.99,
            tau: 0.005,
            batch_size: 256,
            learning_starts: 5_000,
            train_frequency: 1,
            gradient_steps: 1,
            policy_lr: 3e-4,
            q_lr: 1e-3,
            policy_frequency: 2,
            target_network_frequency: 1,
            alpha: 0.2,
            autotune: true,
            save_replay: true,
            save_replay_max_mb: default_save_replay_max_mb(),
            log_interval: 1_000,
        }
    }
}
common_of!(SacConfig);

impl SacConfig {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut c = Checks::default();
        self.common().check(&mut c);
        c.positive("policy_lr", self.policy_lr)
            .positive("q_lr", self.q_lr)
            .count("policy_frequency", self.policy_frequency)
            .count("target_network_frequency", self.target_network_frequency)
            .positive("alpha", self.alpha);
        c.finish()
    }
}

/// TD3 (the `[td3]` table), CleanRL's `td3_continuous_action.py`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Td3Config {
    pub buffer_size: u64,
    pub gamma: f64,
    pub tau: f64,
    pub batch_size: usize,
    pub learning_starts: u64,
    pub train_frequency: usize,
    pub gradient_steps: u64,
    /// Adam learning rate of the actor and the Q-networks.
    pub learning_rate: f64,
    /// Std of the Gaussian exploration noise, as a fraction of the
    /// action scale.
    pub exploration_noise: f64,
    /// Std of the target policy smoothing noise (a fraction of the action
    /// scale)...
    pub policy_noise: f64,
    /// ...clipped to this.
    pub noise_clip: f64,
    /// The actor and the targets are updated every this many updates.
    pub policy_frequency: u64,
    pub save_replay: bool,
    #[serde(default = "default_save_replay_max_mb")]
    pub save_replay_max_mb: u64,
    pub log_interval: u64,
}

impl Default for Td3Config {
    fn default() -> Self {
        Td3Config {
            buffer_size: 1_000_000,
            gamma: 0.99,
            tau: 0.005,
            batch_size: 256,
            learning_starts: 25_000,
            train_frequency: 1,
            gradient_steps: 1,
            learning_rate: 3e-4,
            exploration_noise: 0.1,
            policy_noise: 0.2,
            noise_clip: 0.5,
            policy_frequency: 2,
            save_replay: true,
            save_replay_max_mb: default_save_replay_max_mb(),
            log_interval: 1_000,
        }
    }
}
common_of!(Td3Config);

impl Td3Config {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut c = Checks::default();
        self.common().check(&mut c);
        c.positive("learning_rate", self.learning_rate)
            .non_negative("exploration_noise", self.exploration_noise)
            .non_negative("policy_noise", self.policy_noise)
            .non_negative("noise_clip", self.noise_clip)
            .count("policy_frequency", self.policy_frequency);
        c.finish()
    }
}

/// DQN (the `[dqn]` table), CleanRL's `dqn.py`, with SB3's Huber loss and
/// a Double-DQN switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DqnConfig {
    pub buffer_size: u64,
    pub gamma: f64,
    /// Polyak coefficient of the target network (1: a copy).
    pub tau: f64,
    pub batch_size: usize,
    pub learning_starts: u64,
    pub train_frequency: usize,
    pub gradient_steps: u64,
    pub learning_rate: f64,
    /// The target network is updated every this many env steps (over all
    /// envs), checked at the end of each chunk.
    pub target_network_frequency: u64,
    /// Epsilon falls linearly from `start_e`...
    pub start_e: f64,
    /// ...to `end_e`...
    pub end_e: f64,
    /// ...over this fraction of `total_timesteps`.
    pub exploration_fraction: f64,
    /// Double DQN: the online network picks the next action, the target
    /// network values it.
    pub double_q: bool,
    pub save_replay: bool,
    #[serde(default = "default_save_replay_max_mb")]
    pub save_replay_max_mb: u64,
    pub log_interval: u64,
}

impl Default for DqnConfig {
    fn default() -> Self {
        DqnConfig {
            buffer_size: 10_000,
            gamma: 0.99,
            tau: 1.0,
            batch_size: 128,
            learning_starts: 10_000,
            train_frequency: 10,
            gradient_steps: 1,
            learning_rate: 2.5e-4,
            target_network_frequency: 500,
            start_e: 1.0,
            end_e: 0.05,
            exploration_fraction: 0.5,
            double_q: false,
            save_replay: true,
            save_replay_max_mb: default_save_replay_max_mb(),
            log_interval: 1_000,
        }
    }
}
common_of!(DqnConfig);

impl DqnConfig {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut c = Checks::default();
        self.common().check(&mut c);
        c.positive("learning_rate", self.learning_rate)
            .count("target_network_frequency", self.target_network_frequency)
            .unit("start_e", self.start_e)
            .unit("end_e", self.end_e)
            .unit("exploration_fraction", self.exploration_fraction);
        c.finish()
    }

    /// CleanRL's `linear_schedule`: epsilon at env step `t` of a run of
    /// `total_timesteps`.
    pub fn epsilon(&self, t: u64, total_timesteps: u64) -> f64 {
        let duration = self.exploration_fraction * total_timesteps as f64;
        if duration <= 0.0 {
            return self.end_e;
        }
        let slope = (self.end_e - self.start_e) / duration;
        (slope * t as f64 + self.start_e).max(self.end_e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        assert!(SacConfig::default().validate().is_empty());
        assert!(Td3Config::default().validate().is_empty());
        assert!(DqnConfig::default().validate().is_empty());
        let bad = SacConfig {
            tau: 0.0,
            batch_size: 0,
            ..SacConfig::default()
        };
        let fields: Vec<&str> = bad.validate().iter().map(|e| e.field).collect();
        assert_eq!(fields, ["batch_size", "tau"]);
        let bad = DqnConfig {
            end_e: 1.5,
            ..DqnConfig::default()
        };
        assert_eq!(bad.validate()[0].field, "end_e");
    }

    #[test]
    fn epsilon_follows_cleanrl_linear_schedule() {
        let c = DqnConfig::default();
        assert_eq!(c.epsilon(0, 1000), 1.0);
        assert!((c.epsilon(250, 1000) - 0.525).abs() < 1e-12);
        assert!((c.epsilon(500, 1000) - 0.05).abs() < 1e-12);
        assert_eq!(c.epsilon(900, 1000), 0.05);
    }
}
