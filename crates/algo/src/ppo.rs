//! Proximal Policy Optimization (Schulman et al. 2017), with the maths of
//! CleanRL's `ppo.py` / `ppo_continuous_action.py` and Stable-Baselines3's
//! PPO, and CleanRL's names.

use rl_env::rng::Rng;
use rl_policy::{ActionHead, ObsNormalizer, Policy, PolicySpec, Rollout, RunningMeanStd};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::adam::{clip_grad_norm, Adam};
use crate::divergence::{first_non_finite, first_non_finite_f64, suspects, Divergence, Stage};
use crate::gae::gae;
use crate::host::{clip_grad_norm_host, HostAdam, HostGradient, HostMinibatch, LossTerms};
use crate::net::ActorCritic;
use crate::FieldError;

/// The largest integer a config file can hold: TOML integers are signed 64-bit,
/// so every accepted value must read back from the `config.toml` a run writes.
pub const MAX_CONFIG_INT: u64 = i64::MAX as u64;

/// PPO hyperparameters (the `[ppo]` table of a config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Env steps to train for, over all envs.
    pub total_timesteps: u64,
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
    /// Normalise observations by running mean and variance.
    pub normalize_obs: bool,
    /// Scale rewards by the running std of discounted returns.
    pub normalize_reward: bool,
    /// Clip normalised observations to [-obs_clip, obs_clip].
    pub obs_clip: f64,
    /// Clip scaled rewards to [-reward_clip, reward_clip].
    pub reward_clip: f64,
    /// Initial log-std of the Gaussian policy (continuous actions).
    pub init_log_std: f64,
    /// Adam epsilon.
    pub adam_eps: f64,
}

impl Default for PpoConfig {
    /// CleanRL's defaults for `ppo.py`.
    fn default() -> Self {
        PpoConfig {
            total_timesteps: 500_000,
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
            normalize_obs: false,
            normalize_reward: false,
            obs_clip: 10.0,
            reward_clip: 10.0,
            init_log_std: 0.0,
            adam_eps: 1e-5,
        }
    }
}

fn check(
    errors: &mut Vec<FieldError>,
    ok: bool,
    field: &'static str,
    value: String,
    allowed: &'static str,
) {
    if !ok {
        errors.push(FieldError {
            field,
            value,
            allowed,
        });
    }
}

impl PpoConfig {
    /// Every out-of-range field; `num_envs` is needed to check the minibatch split.
    pub fn validate(&self, num_envs: usize) -> Vec<FieldError> {
        let mut e = Vec::new();
        let finite_pos = |x: f64| x.is_finite() && x > 0.0;
        check(
            &mut e,
            (1..=MAX_CONFIG_INT).contains(&self.total_timesteps),
            "total_timesteps",
            self.total_timesteps.to_string(),
            "an integer in 1..=9223372036854775807",
        );
        check(
            &mut e,
            (1..=MAX_CONFIG_INT as usize).contains(&self.num_steps),
            "num_steps",
            self.num_steps.to_string(),
            "an integer in 1..=9223372036854775807 (that fits in memory)",
        );
        check(
            &mut e,
            finite_pos(self.learning_rate),
            "learning_rate",
            self.learning_rate.to_string(),
            "a number > 0",
        );
        check(
            &mut e,
            (0.0..=1.0).contains(&self.gamma),
            "gamma",
            self.gamma.to_string(),
            "a number in [0, 1]",
        );
        check(
            &mut e,
            (0.0..=1.0).contains(&self.gae_lambda),
            "gae_lambda",
            self.gae_lambda.to_string(),
            "a number in [0, 1]",
        );
        check(
            &mut e,
            self.num_minibatches > 0,
            "num_minibatches",
            self.num_minibatches.to_string(),
            "an integer >= 1",
        );
        let batch = (self.num_steps as u64).checked_mul(num_envs as u64);
        if let Some(batch) = batch.filter(|_| self.num_minibatches > 0) {
            check(
                &mut e,
                batch % self.num_minibatches as u64 == 0,
                "num_minibatches",
                self.num_minibatches.to_string(),
                "a divisor of the batch size num_envs * num_steps",
            );
        }
        check(
            &mut e,
            (1..=MAX_CONFIG_INT as usize).contains(&self.update_epochs),
            "update_epochs",
            self.update_epochs.to_string(),
            "an integer in 1..=9223372036854775807",
        );
        check(
            &mut e,
            finite_pos(self.clip_coef),
            "clip_coef",
            self.clip_coef.to_string(),
            "a number > 0",
        );
        check(
            &mut e,
            self.ent_coef.is_finite() && self.ent_coef >= 0.0,
            "ent_coef",
            self.ent_coef.to_string(),
            "a number >= 0",
        );
        check(
            &mut e,
            self.vf_coef.is_finite() && self.vf_coef >= 0.0,
            "vf_coef",
            self.vf_coef.to_string(),
            "a number >= 0",
        );
        check(
            &mut e,
            finite_pos(self.max_grad_norm),
            "max_grad_norm",
            self.max_grad_norm.to_string(),
            "a number > 0",
        );
        if let Some(kl) = self.target_kl {
            check(
                &mut e,
                finite_pos(kl),
                "target_kl",
                kl.to_string(),
                "a number > 0 (or leave it out)",
            );
        }
        check(
            &mut e,
            finite_pos(self.obs_clip),
            "obs_clip",
            self.obs_clip.to_string(),
            "a number > 0",
        );
        check(
            &mut e,
            finite_pos(self.reward_clip),
            "reward_clip",
            self.reward_clip.to_string(),
            "a number > 0",
        );
        check(
            &mut e,
            self.init_log_std.is_finite() && self.init_log_std.abs() <= 10.0,
            "init_log_std",
            self.init_log_std.to_string(),
            "a number in [-10, 10]",
        );
        check(
            &mut e,
            finite_pos(self.adam_eps),
            "adam_eps",
            self.adam_eps.to_string(),
            "a number > 0",
        );
        e
    }

    /// Updates in a run: total_timesteps / (num_envs * num_steps), at least 1.
    pub fn num_updates(&self, num_envs: usize) -> u64 {
        let batch = (num_envs as u64)
            .saturating_mul(self.num_steps as u64)
            .max(1);
        (self.total_timesteps / batch).max(1)
    }
}

/// What one update reports, averaged over its minibatches.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UpdateStats {
    pub policy_loss: f64,
    pub value_loss: f64,
    pub entropy: f64,
    pub approx_kl: f64,
    pub old_approx_kl: f64,
    pub clip_frac: f64,
    pub explained_variance: f64,
    pub learning_rate: f64,
    pub clip_coef: f64,
    /// Epochs actually run (fewer than `update_epochs` after a `target_kl` stop).
    pub epochs: usize,
}

/// One minibatch's loss and diagnostics.
pub struct MinibatchLoss {
    pub loss: Tensor,
    pub policy_loss: f64,
    pub value_loss: f64,
    pub entropy: f64,
    pub approx_kl: f64,
    pub old_approx_kl: f64,
    pub clip_frac: f64,
}

/// A minibatch on the learner's device.
pub struct Minibatch<'a> {
    pub obs: &'a Tensor,           // [B, obs_dim], normalised
    pub actions: &'a Tensor,       // [B, action_dim]
    pub old_log_probs: &'a Tensor, // [B]
    pub advantages: &'a Tensor,    // [B]
    pub returns: &'a Tensor,       // [B]
    pub old_values: &'a Tensor,    // [B]
}

/// The PPO loss of CleanRL: clipped surrogate, (clipped) value loss, entropy
/// bonus; `loss = pg_loss - ent_coef * entropy + vf_coef * v_loss`.
pub fn ppo_loss(
    net: &ActorCritic,
    mb: &Minibatch<'_>,
    config: &PpoConfig,
    clip_coef: f64,
) -> MinibatchLoss {
    let eval = net.evaluate(mb.obs, mb.actions);
    let log_ratio = &eval.log_prob - mb.old_log_probs;
    let ratio = log_ratio.exp();
    let (old_approx_kl, approx_kl, clip_frac) = tch::no_grad(|| {
        let old_kl = (-&log_ratio).mean(Kind::Float).double_value(&[]);
        let kl = ((&ratio - 1.0) - &log_ratio)
            .mean(Kind::Float)
            .double_value(&[]);
        let frac = (&ratio - 1.0)
            .abs()
            .gt(clip_coef)
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        (old_kl, kl, frac)
    });
    let advantages = if config.norm_adv {
        (mb.advantages - mb.advantages.mean(Kind::Float)) / (mb.advantages.std(true) + 1e-8)
    } else {
        mb.advantages.shallow_clone()
    };
    let pg_loss1 = -&advantages * &ratio;
    let pg_loss2 = -&advantages * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef);
    let pg_loss = pg_loss1.max_other(&pg_loss2).mean(Kind::Float);
    let new_value = eval.value.view([-1]);
    let v_loss = if config.clip_vloss {
        let unclipped = (&new_value - mb.returns).square();
        let clipped = mb.old_values + (&new_value - mb.old_values).clamp(-clip_coef, clip_coef);
        let clipped = (clipped - mb.returns).square();
        unclipped.max_other(&clipped).mean(Kind::Float) * 0.5
    } else {
        (&new_value - mb.returns).square().mean(Kind::Float) * 0.5
    };
    let entropy = eval.entropy.mean(Kind::Float);
    let loss = &pg_loss - &entropy * config.ent_coef + &v_loss * config.vf_coef;
    MinibatchLoss {
        policy_loss: pg_loss.double_value(&[]),
        value_loss: v_loss.double_value(&[]),
        entropy: entropy.double_value(&[]),
        loss,
        approx_kl,
        old_approx_kl,
        clip_frac,
    }
}

/// Scales rewards by the running std of discounted returns (SB3's
/// `VecNormalize(norm_reward=True)`), keeping one running return per env.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardScaler {
    pub stats: RunningMeanStd,
    pub returns: Vec<f64>, // [E]
    pub gamma: f64,
    pub clip: f64,
}

impl RewardScaler {
    pub fn new(num_envs: usize, gamma: f64, clip: f64) -> Self {
        RewardScaler {
            stats: RunningMeanStd::new(1),
            returns: vec![0.0; num_envs],
            gamma,
            clip,
        }
    }

    /// Scales a time-major `[T, E]` reward array in place, step by step.
    pub fn scale(&mut self, rewards: &mut [f32], dones: &[bool]) {
        let n = self.returns.len();
        for (row, done_row) in rewards.chunks_exact_mut(n).zip(dones.chunks_exact(n)) {
            let step_returns: Vec<f32> = row
                .iter()
                .zip(&mut self.returns)
                .map(|(r, ret)| {
                    *ret = *ret * self.gamma + *r as f64;
                    *ret as f32
                })
                .collect();
            self.stats.update(&step_returns);
            let scale = (self.stats.var[0] + ObsNormalizer::EPSILON).sqrt();
            for ((r, ret), done) in row.iter_mut().zip(&mut self.returns).zip(done_row) {
                *r = (*r as f64 / scale).clamp(-self.clip, self.clip) as f32;
                if *done {
                    *ret = 0.0;
                }
            }
        }
    }
}

/// Everything a learner needs to continue exactly where it was: what a
/// checkpoint holds of it.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnerState {
    /// Parameters, flat in layout order.
    pub weights: Vec<f32>,
    /// Adam's first and second moments, flat like the parameters.
    pub adam_exp_avg: Vec<f32>,
    pub adam_exp_avg_sq: Vec<f32>,
    /// Adam steps taken.
    pub adam_step: u64,
    pub obs_norm: Option<RunningMeanStd>,
    /// The reward scaler's statistics and its running discounted return per env.
    pub reward_scaler: Option<(RunningMeanStd, Vec<f64>)>,
    /// The minibatch-shuffle generator's position.
    pub rng: [u64; 4],
    /// Updates done: the position in the learning-rate and clip schedules.
    pub updates_done: u64,
}

fn tensor_to_vec(t: &Tensor) -> Vec<f32> {
    Vec::try_from(&t.detach().to_device(Device::Cpu)).unwrap_or_default()
}

fn copy_into_tensor(t: &mut Tensor, values: &[f32]) {
    tch::no_grad(|| {
        let source = Tensor::from_slice(values).to_device(t.device());
        t.copy_(&source);
    });
}

/// Which implementation computes the gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The hand-written CPU path of [`crate::host`] (no libtorch).
    Host,
    /// libtorch through tch, on the given device.
    Torch(Device),
}

impl Backend {
    /// The host path on the CPU, libtorch on a GPU.
    pub fn for_device(device: Device) -> Self {
        match device {
            Device::Cpu => Backend::Host,
            other => Backend::Torch(other),
        }
    }
}

/// The parameters, their optimizer and the gradient machinery.
enum Engine {
    Host {
        weights: Vec<f32>,
        grad: Vec<f32>,
        adam: HostAdam,
        gradient: HostGradient,
    },
    Torch {
        net: ActorCritic,
        adam: Adam,
    },
}

/// A copy of the engine's parameters and optimizer state, where they live.
enum EngineBackup {
    None,
    Host {
        weights: Vec<f32>,
        exp_avg: Vec<f32>,
        exp_avg_sq: Vec<f32>,
        step: u64,
    },
    Torch {
        flat: Tensor,
        exp_avg: Tensor,
        exp_avg_sq: Tensor,
        step: u64,
    },
}

impl Engine {
    /// Copies the parameters and optimizer state into `backup` (reusing its
    /// buffers: one copy per update, no allocation after the first).
    fn save(&self, backup: &mut EngineBackup) {
        match (self, &mut *backup) {
            (
                Engine::Host { weights, adam, .. },
                EngineBackup::Host {
                    weights: w,
                    exp_avg,
                    exp_avg_sq,
                    step,
                },
            ) => {
                w.copy_from_slice(weights);
                exp_avg.copy_from_slice(&adam.exp_avg);
                exp_avg_sq.copy_from_slice(&adam.exp_avg_sq);
                *step = adam.step;
            }
            (Engine::Host { weights, adam, .. }, _) => {
                *backup = EngineBackup::Host {
                    weights: weights.clone(),
                    exp_avg: adam.exp_avg.clone(),
                    exp_avg_sq: adam.exp_avg_sq.clone(),
                    step: adam.step,
                }
            }
            (
                Engine::Torch { net, adam },
                EngineBackup::Torch {
                    flat,
                    exp_avg,
                    exp_avg_sq,
                    step,
                },
            ) => tch::no_grad(|| {
                flat.copy_(net.flat());
                exp_avg.copy_(&adam.exp_avg);
                exp_avg_sq.copy_(&adam.exp_avg_sq);
                *step = adam.step;
            }),
            (Engine::Torch { net, adam }, _) => {
                *backup = tch::no_grad(|| EngineBackup::Torch {
                    flat: net.flat().detach().copy(),
                    exp_avg: adam.exp_avg.copy(),
                    exp_avg_sq: adam.exp_avg_sq.copy(),
                    step: adam.step,
                })
            }
        }
    }

    /// Puts back what [`Engine::save`] copied.
    fn restore(&mut self, backup: &EngineBackup) {
        match (self, backup) {
            (
                Engine::Host { weights, adam, .. },
                EngineBackup::Host {
                    weights: w,
                    exp_avg,
                    exp_avg_sq,
                    step,
                },
            ) => {
                weights.copy_from_slice(w);
                adam.exp_avg.copy_from_slice(exp_avg);
                adam.exp_avg_sq.copy_from_slice(exp_avg_sq);
                adam.step = *step;
            }
            (
                Engine::Torch { net, adam },
                EngineBackup::Torch {
                    flat,
                    exp_avg,
                    exp_avg_sq,
                    step,
                },
            ) => tch::no_grad(|| {
                let mut params = net.flat().shallow_clone();
                params.copy_(flat);
                adam.exp_avg.copy_(exp_avg);
                adam.exp_avg_sq.copy_(exp_avg_sq);
                adam.step = *step;
            }),
            _ => {}
        }
    }

    /// The first non-finite number among the parameters and Adam's moments,
    /// with what it is.
    fn non_finite_state(&self) -> Option<(&'static str, f64)> {
        let found = |name: &'static str, v: Option<f32>| v.map(|v| (name, v as f64));
        match self {
            Engine::Host { weights, adam, .. } => found("the weights", first_non_finite(weights))
                .or_else(|| found("Adam's first moments", first_non_finite(&adam.exp_avg)))
                .or_else(|| found("Adam's second moments", first_non_finite(&adam.exp_avg_sq))),
            Engine::Torch { net, adam } => tch::no_grad(|| {
                [
                    ("the weights", net.flat()),
                    ("Adam's first moments", &adam.exp_avg),
                    ("Adam's second moments", &adam.exp_avg_sq),
                ]
                .into_iter()
                .find_map(|(name, t)| {
                    let bad = t.isfinite().logical_not();
                    (bad.any().int64_value(&[]) != 0)
                        .then(|| (name, t.masked_select(&bad).double_value(&[0])))
                })
            }),
        }
    }
}

/// Why [`PpoLearner::update`] did not update. Either way the learner is
/// back exactly where it was before the update began.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateError {
    /// The caller asked to stop (checked before every minibatch).
    Abandoned,
    /// A number went non-finite (see [`crate::divergence`]).
    Diverged(Divergence),
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Abandoned => write!(f, "the update was abandoned"),
            UpdateError::Diverged(d) => d.fmt(f),
        }
    }
}

/// The learner's whole PPO state: parameters, optimizer, normalisers,
/// schedules and the generator for minibatch shuffles.
pub struct PpoLearner {
    pub config: PpoConfig,
    engine: Engine,
    pub obs_norm: Option<ObsNormalizer>,
    pub reward_scaler: Option<RewardScaler>,
    pub rng: Rng,
    pub updates_done: u64,
    pub num_updates: u64,
    pub num_envs: usize,
    /// The state the current update started from.
    backup: EngineBackup,
    /// Acts with the new weights on observations of the rollout, to check
    /// that the policy the workers will get computes finite numbers.
    check_policy: Option<Policy>,
}

/// Rows of a rollout the new policy is tried on after each update.
const CHECK_ROWS: usize = 256;

impl PpoLearner {
    /// A learner with CleanRL's initialisation, drawn from `seed` by our own
    /// generator (identical for every backend and device).
    pub fn new(
        spec: PolicySpec,
        config: PpoConfig,
        num_envs: usize,
        seed: u64,
        backend: Backend,
    ) -> Self {
        let obs_dim = spec.obs_dim;
        let check_policy = Policy::new(spec.clone()).ok();
        let engine = match backend {
            Backend::Host => {
                let weights = crate::init::initial_weights(&spec, seed, config.init_log_std);
                Engine::Host {
                    grad: vec![0.0; weights.len()],
                    adam: HostAdam::new(weights.len(), 0.9, 0.999, config.adam_eps),
                    gradient: HostGradient::new(spec),
                    weights,
                }
            }
            Backend::Torch(device) => {
                let net = ActorCritic::new(spec, seed, config.init_log_std, device);
                let adam = Adam::new(net.flat(), 0.9, 0.999, config.adam_eps);
                Engine::Torch { net, adam }
            }
        };
        let obs_norm = config
            .normalize_obs
            .then(|| ObsNormalizer::new(obs_dim, config.obs_clip));
        let reward_scaler = config
            .normalize_reward
            .then(|| RewardScaler::new(num_envs, config.gamma, config.reward_clip));
        PpoLearner {
            num_updates: config.num_updates(num_envs),
            config,
            engine,
            obs_norm,
            reward_scaler,
            rng: Rng::from_seed(rl_env::seeds::shuffle_seed(seed)),
            updates_done: 0,
            num_envs,
            backup: EngineBackup::None,
            check_policy,
        }
    }

    pub fn backend(&self) -> Backend {
        match &self.engine {
            Engine::Host { .. } => Backend::Host,
            Engine::Torch { net, .. } => Backend::Torch(net.device()),
        }
    }

    /// The fraction of training left before the next update (CleanRL:
    /// `1 - (iteration - 1) / num_iterations`).
    fn remaining(&self) -> f64 {
        1.0 - self.updates_done as f64 / self.num_updates as f64
    }

    pub fn current_learning_rate(&self) -> f64 {
        if self.config.anneal_lr {
            self.config.learning_rate * self.remaining()
        } else {
            self.config.learning_rate
        }
    }

    pub fn current_clip_coef(&self) -> f64 {
        if self.config.anneal_clip {
            self.config.clip_coef * self.remaining()
        } else {
            self.config.clip_coef
        }
    }

    /// The learner's whole state (see [`LearnerState`]).
    pub fn state(&self) -> LearnerState {
        let (adam_exp_avg, adam_exp_avg_sq, adam_step) = match &self.engine {
            Engine::Host { adam, .. } => (adam.exp_avg.clone(), adam.exp_avg_sq.clone(), adam.step),
            Engine::Torch { adam, .. } => (
                tensor_to_vec(&adam.exp_avg),
                tensor_to_vec(&adam.exp_avg_sq),
                adam.step,
            ),
        };
        LearnerState {
            weights: self.policy_weights().into_owned(),
            adam_exp_avg,
            adam_exp_avg_sq,
            adam_step,
            obs_norm: self.obs_norm.as_ref().map(|n| n.stats.clone()),
            reward_scaler: self
                .reward_scaler
                .as_ref()
                .map(|r| (r.stats.clone(), r.returns.clone())),
            rng: self.rng.state(),
            updates_done: self.updates_done,
        }
    }

    /// Continues from a [`LearnerState`] of a learner with the same
    /// architecture and settings; an error says what does not fit.
    pub fn restore(&mut self, state: &LearnerState) -> Result<(), String> {
        let len = self.policy_weights().len();
        for (what, got) in [
            ("weights", state.weights.len()),
            ("Adam first moments", state.adam_exp_avg.len()),
            ("Adam second moments", state.adam_exp_avg_sq.len()),
        ] {
            if got != len {
                return Err(format!("{what}: {got} values, the network has {len}"));
            }
        }
        if state.obs_norm.is_some() != self.obs_norm.is_some()
            || state.reward_scaler.is_some() != self.reward_scaler.is_some()
        {
            return Err("observation or reward normalisation differs from the config".into());
        }
        if let (Some(norm), Some(stats)) = (&mut self.obs_norm, &state.obs_norm) {
            if stats.dim() != norm.stats.dim() {
                return Err(format!(
                    "observation statistics of {} values, the env has {}",
                    stats.dim(),
                    norm.stats.dim()
                ));
            }
            norm.stats = stats.clone();
        }
        if let (Some(scaler), Some((stats, returns))) =
            (&mut self.reward_scaler, &state.reward_scaler)
        {
            if returns.len() != scaler.returns.len() || stats.dim() != 1 {
                return Err(format!(
                    "reward scaling for {} envs, the run has {}",
                    returns.len(),
                    scaler.returns.len()
                ));
            }
            scaler.stats = stats.clone();
            scaler.returns = returns.clone();
        }
        self.rng = Rng::from_state(state.rng).ok_or("a shuffle generator state of all zeros")?;
        if state.updates_done > self.num_updates {
            return Err(format!(
                "{} updates done, the run has {} in all",
                state.updates_done, self.num_updates
            ));
        }
        self.updates_done = state.updates_done;
        match &mut self.engine {
            Engine::Host { weights, adam, .. } => {
                weights.copy_from_slice(&state.weights);
                adam.exp_avg.copy_from_slice(&state.adam_exp_avg);
                adam.exp_avg_sq.copy_from_slice(&state.adam_exp_avg_sq);
                adam.step = state.adam_step;
            }
            Engine::Torch { net, adam } => {
                let mut flat = net.flat().shallow_clone();
                copy_into_tensor(&mut flat, &state.weights);
                copy_into_tensor(&mut adam.exp_avg, &state.adam_exp_avg);
                copy_into_tensor(&mut adam.exp_avg_sq, &state.adam_exp_avg_sq);
                adam.step = state.adam_step;
            }
        }
        Ok(())
    }

    /// The weights to act with, flat in layout order: borrowed from the
    /// CPU learner (no copy each round), copied out of libtorch otherwise.
    pub fn policy_weights(&self) -> std::borrow::Cow<'_, [f32]> {
        engine_weights(&self.engine)
    }

    /// One PPO update on a rollout collected with the current weights and
    /// observation statistics. All or nothing: `abandon` is asked before
    /// every minibatch; when it says so, or when a number goes non-finite
    /// (see [`crate::divergence`]), the learner goes back to exactly the
    /// state it had before the update and says why.
    pub fn update(
        &mut self,
        rollout: &Rollout,
        abandon: &dyn Fn() -> bool,
    ) -> Result<UpdateStats, UpdateError> {
        self.engine.save(&mut self.backup);
        let obs_norm = self.obs_norm.as_ref().map(|n| n.stats.clone());
        let reward_scaler = self
            .reward_scaler
            .as_ref()
            .map(|r| (r.stats.clone(), r.returns.clone()));
        let rng = self.rng.clone();
        let result = self.update_or_fail(rollout, abandon);
        if result.is_err() {
            self.engine.restore(&self.backup);
            if let (Some(norm), Some(stats)) = (&mut self.obs_norm, obs_norm) {
                norm.stats = stats;
            }
            if let (Some(scaler), Some((stats, returns))) = (&mut self.reward_scaler, reward_scaler)
            {
                scaler.stats = stats;
                scaler.returns = returns;
            }
            self.rng = rng;
        }
        result
    }

    /// A [`Divergence`] of the next update: what went non-finite, with the
    /// rollout's reward range and the suspect settings.
    fn diverged(&self, stage: Stage, quantity: &str, value: f64, rollout: &Rollout) -> UpdateError {
        let (low, high) = rollout
            .rewards
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), r| {
                (lo.min(*r), hi.max(*r))
            });
        let short = |v: f32| {
            if v != 0.0 && !(1e-4..1e6).contains(&v.abs()) {
                format!("{v:e}")
            } else {
                format!("{v}")
            }
        };
        let context = (!rollout.rewards.is_empty()).then(|| {
            format!(
                "the rollout's rewards range from {} to {}",
                short(low),
                short(high)
            )
        });
        let max_abs_reward = f64::from(low.abs().max(high.abs()));
        UpdateError::Diverged(Divergence {
            update: self.updates_done + 1,
            stage,
            quantity: quantity.to_string(),
            value,
            context,
            suspects: suspects(&self.config, quantity, max_abs_reward),
        })
    }

    /// The first non-finite number of the normalisers' statistics.
    fn non_finite_statistics(&self) -> Option<(&'static str, f64)> {
        let obs = self.obs_norm.as_ref().and_then(|n| {
            first_non_finite_f64(&n.stats.mean).or_else(|| first_non_finite_f64(&n.stats.var))
        });
        let rewards = self.reward_scaler.as_ref().and_then(|r| {
            first_non_finite_f64(&r.stats.var).or_else(|| first_non_finite_f64(&r.returns))
        });
        obs.map(|v| ("the observation statistics", v))
            .or(rewards.map(|v| ("the reward scaling statistics", v)))
    }

    /// Acts with the weights on up to [`CHECK_ROWS`] observations of the
    /// rollout (normalised as the workers will): the first non-finite
    /// output, if any.
    fn non_finite_policy(&mut self, rollout: &Rollout) -> Option<(&'static str, f64)> {
        let policy = self.check_policy.as_mut()?;
        let weights = engine_weights(&self.engine);
        policy.set_weights(&weights).ok()?;
        let spec = policy.spec().clone();
        if let (ActionHead::Gaussian { .. }, Some(entry)) =
            (spec.head, policy.layout().get("actor_logstd"))
        {
            let log_std = &weights[entry.offset..entry.offset + entry.len];
            if let Some(v) = log_std.iter().map(|l| l.exp()).find(|s| !s.is_finite()) {
                return Some((
                    "the policy's standard deviation exp(actor_logstd)",
                    v as f64,
                ));
            }
        }
        let od = rollout.obs_dim;
        let rows = rollout.num_steps * rollout.num_envs;
        let stride = (rows / CHECK_ROWS).max(1);
        let picked: Vec<usize> = (0..rows).step_by(stride).take(CHECK_ROWS).collect();
        let mut obs = vec![0.0_f32; picked.len() * od];
        for (out, row) in obs.chunks_exact_mut(od.max(1)).zip(&picked) {
            let raw = &rollout.obs[row * od..(row + 1) * od];
            match &self.obs_norm {
                Some(norm) => norm.normalize(raw, out),
                None => out.copy_from_slice(raw),
            }
        }
        let mut outputs = vec![0.0_f32; picked.len() * spec.head.actor_outputs()];
        policy.actor_outputs(&obs, &mut outputs);
        if let Some(v) = first_non_finite(&outputs) {
            return Some((
                "the policy's outputs on the rollout's observations",
                v as f64,
            ));
        }
        let mut values = vec![0.0_f32; picked.len()];
        policy.values(&obs, &mut values);
        first_non_finite(&values)
            .map(|v| ("the value function on the rollout's observations", v as f64))
    }

    fn update_or_fail(
        &mut self,
        rollout: &Rollout,
        abandon: &dyn Fn() -> bool,
    ) -> Result<UpdateStats, UpdateError> {
        let cfg = self.config.clone();
        let (t, e, od, ad) = (
            rollout.num_steps,
            rollout.num_envs,
            rollout.obs_dim,
            rollout.action_dim,
        );
        let batch = t * e;

        // Observations as the collector saw them, then fold this rollout into
        // the statistics for the next one.
        let mut obs = rollout.obs.clone();
        if let Some(norm) = &mut self.obs_norm {
            norm.normalize(&rollout.obs, &mut obs);
            norm.stats.update(&rollout.obs);
        }

        let dones: Vec<bool> = rollout
            .terminated
            .iter()
            .zip(&rollout.truncated)
            .map(|(a, b)| *a || *b)
            .collect();
        let mut rewards = rollout.rewards.clone();
        if let Some(scaler) = &mut self.reward_scaler {
            scaler.scale(&mut rewards, &dones);
        }
        // Truncation is not termination: bootstrap from the final observation.
        let gamma = cfg.gamma as f32;
        for (r, v) in rewards.iter_mut().zip(&rollout.final_values) {
            *r += gamma * v;
        }
        let (advantages, returns) = gae(
            &rewards,
            &rollout.values,
            &dones,
            &rollout.last_values,
            e,
            gamma,
            cfg.gae_lambda as f32,
        );
        if let Some(v) = first_non_finite(&returns).or_else(|| first_non_finite(&advantages)) {
            return Err(self.diverged(
                Stage::BeforeMinibatches,
                "the returns and advantages computed from the rollout",
                v as f64,
                rollout,
            ));
        }

        let lr = self.current_learning_rate();
        let clip_coef = self.current_clip_coef();
        let minibatch_size = batch / cfg.num_minibatches;
        let mut indices: Vec<usize> = (0..batch).collect();
        let mut sums = UpdateStats::default();
        let mut minibatches = 0usize;
        let mut epochs = 0;
        let data = BatchData {
            obs: &obs,
            actions: &rollout.actions,
            log_probs: &rollout.log_probs,
            advantages: &advantages,
            returns: &returns,
            values: &rollout.values,
            obs_dim: od,
            action_dim: ad,
        };
        let mut torch_batch = match &self.engine {
            Engine::Torch { net, .. } => Some(data.to_device(net.device())),
            Engine::Host { .. } => None,
        };
        let mut gathered = GatheredMinibatch::default();
        for _ in 0..cfg.update_epochs {
            epochs += 1;
            shuffle(&mut indices, &mut self.rng);
            let mut last_kl = 0.0;
            for (minibatch, chunk) in indices.chunks(minibatch_size).enumerate() {
                if abandon() {
                    return Err(UpdateError::Abandoned);
                }
                let (terms, failure) = match (&mut self.engine, &mut torch_batch) {
                    (
                        Engine::Host {
                            weights,
                            grad,
                            adam,
                            gradient,
                        },
                        _,
                    ) => {
                        gathered.gather(&data, chunk);
                        let terms = gradient.loss_and_grad(
                            weights,
                            &gathered.view(),
                            &cfg,
                            clip_coef,
                            grad,
                        );
                        let norm = clip_grad_norm_host(grad, cfg.max_grad_norm);
                        // Checked before the step: a non-finite gradient
                        // never reaches the weights or the moments.
                        let failure = non_finite_terms(&terms, norm);
                        if failure.is_none() {
                            adam.step(weights, grad, lr);
                        }
                        (terms, failure)
                    }
                    (Engine::Torch { net, adam }, Some(tb)) => {
                        let idx: Vec<i64> = chunk.iter().map(|i| *i as i64).collect();
                        let idx = Tensor::from_slice(&idx).to_device(net.device());
                        let mb_obs = tb.obs.index_select(0, &idx);
                        let mb_actions = tb.actions.index_select(0, &idx);
                        let mb_log_probs = tb.log_probs.index_select(0, &idx);
                        let mb_adv = tb.advantages.index_select(0, &idx);
                        let mb_returns = tb.returns.index_select(0, &idx);
                        let mb_values = tb.values.index_select(0, &idx);
                        let mb = Minibatch {
                            obs: &mb_obs,
                            actions: &mb_actions,
                            old_log_probs: &mb_log_probs,
                            advantages: &mb_adv,
                            returns: &mb_returns,
                            old_values: &mb_values,
                        };
                        let out = ppo_loss(net, &mb, &cfg, clip_coef);
                        net.zero_grad();
                        out.loss.backward();
                        let norm = clip_grad_norm(net.flat(), cfg.max_grad_norm);
                        let terms = LossTerms {
                            loss: 0.0,
                            policy_loss: out.policy_loss,
                            value_loss: out.value_loss,
                            entropy: out.entropy,
                            approx_kl: out.approx_kl,
                            old_approx_kl: out.old_approx_kl,
                            clip_frac: out.clip_frac,
                        };
                        let failure = non_finite_terms(&terms, norm);
                        if failure.is_none() {
                            let mut flat = net.flat().shallow_clone();
                            adam.step(&mut flat, lr);
                        }
                        (terms, failure)
                    }
                    (Engine::Torch { .. }, None) => {
                        unreachable!("the torch batch is built with the engine")
                    }
                };
                if let Some((quantity, value)) = failure {
                    let stage = Stage::Minibatch {
                        epoch: epochs,
                        minibatch: minibatch + 1,
                    };
                    // A step that made the weights or moments non-finite
                    // shows up as this minibatch's loss: name the cause.
                    if let Some((state, value)) = self.engine.non_finite_state() {
                        let quantity = format!("{state} (after the previous minibatch's step)");
                        return Err(self.diverged(stage, &quantity, value, rollout));
                    }
                    return Err(self.diverged(stage, quantity, value, rollout));
                }
                sums.policy_loss += terms.policy_loss;
                sums.value_loss += terms.value_loss;
                sums.entropy += terms.entropy;
                sums.approx_kl += terms.approx_kl;
                sums.old_approx_kl += terms.old_approx_kl;
                sums.clip_frac += terms.clip_frac;
                minibatches += 1;
                last_kl = terms.approx_kl;
            }
            if cfg.target_kl.is_some_and(|kl| last_kl > kl) {
                break;
            }
        }
        // The new state, before anyone can use it.
        let failure = self
            .engine
            .non_finite_state()
            .or_else(|| self.non_finite_statistics())
            .or_else(|| self.non_finite_policy(rollout));
        if let Some((quantity, value)) = failure {
            return Err(self.diverged(Stage::AfterMinibatches, quantity, value, rollout));
        }
        self.updates_done += 1;
        let n = minibatches.max(1) as f64;
        Ok(UpdateStats {
            policy_loss: sums.policy_loss / n,
            value_loss: sums.value_loss / n,
            entropy: sums.entropy / n,
            approx_kl: sums.approx_kl / n,
            old_approx_kl: sums.old_approx_kl / n,
            clip_frac: sums.clip_frac / n,
            explained_variance: explained_variance(&rollout.values, &returns),
            learning_rate: lr,
            clip_coef,
            epochs,
        })
    }
}

/// The weights of an engine, flat in layout order (borrowed from the host
/// engine, copied out of libtorch).
fn engine_weights(engine: &Engine) -> std::borrow::Cow<'_, [f32]> {
    match engine {
        Engine::Host { weights, .. } => std::borrow::Cow::Borrowed(weights),
        Engine::Torch { net, .. } => std::borrow::Cow::Owned(net.to_flat()),
    }
}

/// The first non-finite loss term or gradient norm of a minibatch.
fn non_finite_terms(terms: &LossTerms, grad_norm: f64) -> Option<(&'static str, f64)> {
    [
        ("the policy loss", terms.policy_loss),
        ("the value loss", terms.value_loss),
        ("the entropy", terms.entropy),
        ("the gradient (its norm)", grad_norm),
    ]
    .into_iter()
    .find(|(_, v)| !v.is_finite())
}

/// One update's training data in host memory, `[batch, ...]` row-major.
struct BatchData<'a> {
    obs: &'a [f32],
    actions: &'a [f32],
    log_probs: &'a [f32],
    advantages: &'a [f32],
    returns: &'a [f32],
    values: &'a [f32],
    obs_dim: usize,
    action_dim: usize,
}

/// The same data as tensors on the learner's device.
struct TorchBatch {
    obs: Tensor,
    actions: Tensor,
    log_probs: Tensor,
    advantages: Tensor,
    returns: Tensor,
    values: Tensor,
}

impl BatchData<'_> {
    fn to_device(&self, device: Device) -> TorchBatch {
        let n = self.log_probs.len() as i64;
        let t = |v: &[f32], cols: usize| {
            let shape: Vec<i64> = if cols == 0 {
                vec![n]
            } else {
                vec![n, cols as i64]
            };
            Tensor::from_slice(v)
                .reshape(shape.as_slice())
                .to_device(device)
        };
        TorchBatch {
            obs: t(self.obs, self.obs_dim),
            actions: t(self.actions, self.action_dim),
            log_probs: t(self.log_probs, 0),
            advantages: t(self.advantages, 0),
            returns: t(self.returns, 0),
            values: t(self.values, 0),
        }
    }
}

/// A minibatch gathered into contiguous host buffers.
#[derive(Default)]
struct GatheredMinibatch {
    obs: Vec<f32>,
    actions: Vec<f32>,
    log_probs: Vec<f32>,
    advantages: Vec<f32>,
    returns: Vec<f32>,
    values: Vec<f32>,
}

impl GatheredMinibatch {
    fn gather(&mut self, data: &BatchData<'_>, rows: &[usize]) {
        let (od, ad) = (data.obs_dim, data.action_dim);
        self.obs.clear();
        self.actions.clear();
        self.log_probs.clear();
        self.advantages.clear();
        self.returns.clear();
        self.values.clear();
        for &i in rows {
            self.obs.extend_from_slice(&data.obs[i * od..(i + 1) * od]);
            self.actions
                .extend_from_slice(&data.actions[i * ad..(i + 1) * ad]);
            self.log_probs.push(data.log_probs[i]);
            self.advantages.push(data.advantages[i]);
            self.returns.push(data.returns[i]);
            self.values.push(data.values[i]);
        }
    }

    fn view(&self) -> HostMinibatch<'_> {
        HostMinibatch {
            obs: &self.obs,
            actions: &self.actions,
            old_log_probs: &self.log_probs,
            advantages: &self.advantages,
            returns: &self.returns,
            old_values: &self.values,
        }
    }
}

/// Fisher-Yates with our generator, so shuffles are the same on any device.
fn shuffle(indices: &mut [usize], rng: &mut Rng) {
    for i in (1..indices.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        indices.swap(i, j);
    }
}

/// `1 - Var(returns - values) / Var(returns)`, NaN when the returns are constant.
pub fn explained_variance(values: &[f32], returns: &[f32]) -> f64 {
    let n = returns.len() as f64;
    let var = |xs: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = xs.collect();
        let mean = v.iter().sum::<f64>() / n;
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n
    };
    let var_y = var(&mut returns.iter().map(|x| *x as f64));
    if var_y == 0.0 {
        return f64::NAN;
    }
    let var_diff = var(&mut returns.iter().zip(values).map(|(r, v)| (*r - *v) as f64));
    1.0 - var_diff / var_y
}
