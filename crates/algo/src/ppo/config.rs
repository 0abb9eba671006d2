//! The `[ppo]` table: PPO's hyperparameters with CleanRL's names and
//! defaults, and their validation. What is not PPO's own (the run's length,
//! observation and reward normalisation) is in `[run]` and `[env]` (see
//! [`crate::algorithm::RunSpec`]).

use serde::{Deserialize, Serialize};

use crate::validate::{Checks, FieldError, MAX_CONFIG_INT};

/// PPO hyperparameters (the `[ppo]` table of a config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Steps each env takes per rollout.
    pub num_steps: usize,
    /// Adam learning rate (the start value when annealed).
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0 over training.
    pub anneal_lr: bool,
    /// Anneal the clip coefficient linearly to 0 over training (SB3 zoo's `lin_0.2`).
    pub anneal_clip: bool,
    /// Discount factor.
    pub gamma: f64,
    /// GAE lambda.
    pub gae_lambda: f64,
    /// Minibatches per epoch; the batch is num_envs * num_steps.
    pub num_minibatches: usize,
    /// Epochs over each batch.
    pub update_epochs: usize,
    /// Normalise advantages per minibatch.
    pub norm_adv: bool,
    /// Surrogate clipping coefficient.
    pub clip_coef: f64,
    /// Clip the value loss around the old values.
    pub clip_vloss: bool,
    /// Entropy bonus coefficient.
    pub ent_coef: f64,
    /// Value loss coefficient.
    pub vf_coef: f64,
    /// Global gradient-norm clipping threshold.
    pub max_grad_norm: f64,
    /// Stop the epochs of an update early once the approximate KL exceeds this.
    pub target_kl: Option<f64>,
    /// Initial log-std of the Gaussian policy (continuous actions).
    pub init_log_std: f64,
    /// Adam epsilon.
    pub adam_eps: f64,
}

impl Default for PpoConfig {
    /// CleanRL's defaults for `ppo.py`.
    fn default() -> Self {
        PpoConfig {
            num_steps: 128,
            learning_rate: 2.5e-4,
            anneal_lr: true,
            anneal_clip: false,
            gamma: 0.99,
            gae_lambda: 0.95,
            num_minibatches: 4,
            update_epochs: 4,
            norm_adv: true,
            clip_coef: 0.2,
            clip_vloss: true,
            ent_coef: 0.01,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            target_kl: None,
            init_log_std: 0.0,
            adam_eps: 1e-5,
        }
    }
}

impl PpoConfig {
    /// Every out-of-range field; `num_envs` is needed to check the minibatch split.
    pub fn validate(&self, num_envs: usize) -> Vec<FieldError> {
        let mut c = Checks::default();
        c.require(
            (1..=MAX_CONFIG_INT as usize).contains(&self.num_steps),
            "num_steps",
            self.num_steps,
            "an integer in 1..=9223372036854775807 (that fits in memory)",
        )
        .positive("learning_rate", self.learning_rate)
        .unit("gamma", self.gamma)
        .unit("gae_lambda", self.gae_lambda)
        .require(
            self.num_minibatches > 0,
            "num_minibatches",
            self.num_minibatches,
            "an integer >= 1",
        );
        let batch = (self.num_steps as u64).checked_mul(num_envs as u64);
        if let Some(batch) = batch.filter(|_| self.num_minibatches > 0) {
            c.require(
                batch % self.num_minibatches as u64 == 0,
                "num_minibatches",
                self.num_minibatches,
                "a divisor of the batch size num_envs * num_steps",
            );
        }
        c.count("update_epochs", self.update_epochs as u64)
            .positive("clip_coef", self.clip_coef)
            .non_negative("ent_coef", self.ent_coef)
            .non_negative("vf_coef", self.vf_coef)
            .positive("max_grad_norm", self.max_grad_norm);
        if let Some(kl) = self.target_kl {
            c.require(
                kl.is_finite() && kl > 0.0,
                "target_kl",
                kl,
                "a number > 0 (or leave it out)",
            );
        }
        c.require(
            self.init_log_std.is_finite() && self.init_log_std.abs() <= 10.0,
            "init_log_std",
            self.init_log_std,
            "a number in [-10, 10]",
        )
        .positive("adam_eps", self.adam_eps);
        c.finish()
    }

    /// Updates in a run of `total_timesteps` env steps:
    /// total_timesteps / (num_envs * num_steps), at least 1.
    pub fn num_updates(&self, num_envs: usize, total_timesteps: u64) -> u64 {
        let batch = (num_envs as u64)
            .saturating_mul(self.num_steps as u64)
            .max(1);
        (total_timesteps / batch).max(1)
    }
}
