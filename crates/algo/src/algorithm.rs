//! The algorithm interface: what the training loop asks of a learning
//! algorithm ([`Algorithm`]), what it reports ([`Stats`]), how an update
//! can fail ([`UpdateError`]), and what every algorithm is given besides
//! its own config table ([`RunSpec`]). PPO implements it; ARCHITECTURE.md
//! says how SAC, TD3 and DQN plug in.

use std::borrow::Cow;
use std::ops::Range;

use rl_policy::{Exploration, ObsNormalizer, Rollout, RunningMeanStd};

use crate::divergence::Divergence;
use crate::exchange::{Exchange, ExchangeError, Traffic};

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

/// What one update reports: named numbers, in the order of the
/// algorithm's [`Algorithm::stat_names`] (its `train.csv` columns).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats(pub Vec<(&'static str, f64)>);

impl Stats {
    /// The value called `name`, if the algorithm reports it.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// Everything a learner needs to continue exactly where it was: what a
/// checkpoint holds of it. PPO's state is the named fields (one network,
/// one Adam, the normalisers); the off-policy algorithms keep their acting
/// weights in `weights` and everything else (networks, target networks,
/// Adam moments, alpha, the replay buffer) in `tensors` and `counters`.
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
    /// The algorithm's own flat tensors, by name (empty for PPO).
    pub tensors: Vec<(String, Vec<f32>)>,
    /// The algorithm's own counters, by name (empty for PPO).
    pub counters: Vec<(String, u64)>,
}

impl LearnerState {
    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&[f32]> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The counter called `name`.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
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
    /// Data-parallel learners could not exchange, or disagree (see
    /// [`crate::exchange`]): the run cannot go on.
    Exchange(ExchangeError),
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::Abandoned => write!(f, "the update was abandoned"),
            UpdateError::Diverged(d) => d.fmt(f),
            UpdateError::Exchange(e) => e.fmt(f),
        }
    }
}

/// A learning algorithm, as the training loop drives it. PPO
/// ([`crate::ppo::learner::PpoLearner`]) is one.
pub trait Algorithm {
    /// Its `[run] algo` name, which is also its config table's.
    fn name(&self) -> &'static str;
    /// What its updates report, in order: the `train.csv` columns between
    /// `steps_per_s` and `episode_return_mean`.
    fn stat_names(&self) -> &'static [&'static str];
    /// Updates done: the version of the weights collectors act with.
    fn updates_done(&self) -> u64;
    /// Updates in the whole run.
    fn num_updates(&self) -> u64;
    /// The weights collectors act with, flat in the layout of the run's
    /// `PolicySpec`.
    fn acting_weights(&self) -> Cow<'_, [f32]>;
    /// The observation statistics collectors normalise with, when
    /// observations are normalised.
    fn obs_normalizer(&self) -> Option<&ObsNormalizer>;
    /// How collectors explore in the next round (off-policy heads only).
    fn exploration(&self) -> Exploration {
        Exploration::default()
    }
    /// Makes this learner one of the ranks of a data-parallel run: from
    /// now on its updates exchange with the others through `exchange`
    /// (see [`crate::exchange`]). Algorithms that cannot say so.
    fn set_exchange(&mut self, exchange: Box<dyn Exchange>) -> Result<(), String> {
        let _ = exchange;
        Err(format!(
            "{} does not train on more than one rank yet (PPO does)",
            self.name()
        ))
    }
    /// What its exchange with the other ranks has cost so far (`None`
    /// without one).
    fn exchange_traffic(&self) -> Option<Traffic> {
        None
    }
    /// Its exchange with the other ranks, for what the training loop
    /// shares between updates (the envs' state in a checkpoint); `None`
    /// without one.
    fn exchange_mut(&mut self) -> Option<&mut dyn Exchange> {
        None
    }
    /// Updates per `train.csv` row (the row has their mean statistics).
    fn updates_per_row(&self) -> u64 {
        1
    }
    /// One update on experience collected with the current acting policy.
    /// All or nothing: `abandon` is asked between gradient steps; when it
    /// says so, or a number goes non-finite, the algorithm goes back to its
    /// state before the update.
    fn update(
        &mut self,
        experience: &Rollout,
        abandon: &dyn Fn() -> bool,
    ) -> Result<Stats, UpdateError>;
    /// These envs (global indices) started fresh episodes (a replaced
    /// worker's): per-env running quantities restart.
    fn envs_restarted(&mut self, envs: Range<usize>);
    /// Its whole state, for a checkpoint; without what is only needed to
    /// continue exactly and may be large (the replay buffer) when `lean`
    /// (the states kept at evaluation points).
    fn state(&self, lean: bool) -> LearnerState;
    /// Continues from a state of the same architecture and settings; an
    /// error says what does not fit.
    fn restore(&mut self, state: &LearnerState) -> Result<(), String>;
}
