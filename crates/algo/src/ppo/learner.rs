//! The PPO learner: its state (engine, normalisers, schedules, shuffle
//! generator) and the update, which follows the update loop of CleanRL's
//! `ppo.py` line by line. Each place it differs says `// CleanRL:` and why.

use std::borrow::Cow;

use rl_env::rng::Rng;
use rl_policy::{ObsNormalizer, Policy, PolicySpec, Rollout};

use crate::algorithm::{Algorithm, LearnerState, RunSpec, Stats, UpdateError};
use crate::divergence::{first_non_finite, Stage};
use crate::engine::gradient::{Backend, Batch, GradientEngine, LossTerms, OptimizerState};
use crate::engine::host::HostEngine;
use crate::engine::libtorch::TorchEngine;
use crate::exchange::{check_identical, merge_moments, vote_and_average, Exchange, Traffic, Votes};
use crate::gae::gae;
use crate::ppo::batch::{explained_variance, shuffle};
use crate::ppo::config::PpoConfig;
use crate::ppo::data_parallel::{exchange_minibatch, scale_over_ranks, LOGGED_TERMS};
use crate::ppo::reward_scaler::RewardScaler;

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

/// The learner's whole PPO state: parameters, optimizer, normalisers,
/// schedules and the generator for minibatch shuffles.
pub struct PpoLearner {
    pub config: PpoConfig,
    pub(crate) engine: Box<dyn GradientEngine>,
    pub obs_norm: Option<ObsNormalizer>,
    pub reward_scaler: Option<RewardScaler>,
    pub rng: Rng,
    pub updates_done: u64,
    pub num_updates: u64,
    pub num_envs: usize,
    /// Acts with the new weights on observations of the rollout, to check
    /// that the policy the workers will get computes finite numbers.
    pub(crate) check_policy: Option<Policy>,
    /// Env steps of the whole run (every rank's).
    total_timesteps: u64,
    /// The other ranks of a data-parallel run (`crate::exchange`).
    exchange: Option<Box<dyn Exchange>>,
}

impl PpoLearner {
    /// A learner with CleanRL's initialisation, drawn from `seed` by our own
    /// generator (identical for every backend and device). The libtorch
    /// backend fails when its engine cannot be loaded.
    pub fn new(
        spec: PolicySpec,
        config: PpoConfig,
        run: &RunSpec,
        backend: Backend,
    ) -> Result<Self, String> {
        if spec.head.is_off_policy() {
            return Err(format!(
                "PPO acts with a Categorical or Gaussian head, not {}",
                spec.head.kind()
            ));
        }
        let (num_envs, seed) = (run.num_envs, run.seed);
        let obs_dim = spec.obs_dim;
        let check_policy = Policy::new(spec.clone()).ok();
        let engine: Box<dyn GradientEngine> = match backend {
            Backend::Host => {
                let weights = crate::init::initial_weights(&spec, seed, config.init_log_std);
                Box::new(HostEngine::new(spec, weights, config.adam_eps))
            }
            Backend::Torch(device) => Box::new(TorchEngine::new(
                &spec,
                seed,
                config.init_log_std,
                config.adam_eps,
                device,
            )?),
        };
        let obs_norm = run
            .obs_norm_clip
            .map(|clip| ObsNormalizer::new(obs_dim, clip));
        let reward_scaler = run
            .reward_scale_clip
            .map(|clip| RewardScaler::new(num_envs, config.gamma, clip));
        Ok(PpoLearner {
            num_updates: config.num_updates(num_envs, run.total_timesteps),
            config,
            engine,
            obs_norm,
            reward_scaler,
            rng: Rng::from_seed(rl_env::seeds::shuffle_seed(seed)),
            updates_done: 0,
            num_envs,
            check_policy,
            total_timesteps: run.total_timesteps,
            exchange: None,
        })
    }

    pub fn backend(&self) -> Backend {
        self.engine.backend()
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

    /// CleanRL: the clip coefficient is constant; SB3 zoo's `lin_0.2`
    /// schedules anneal it like the learning rate (`anneal_clip`).
    pub fn current_clip_coef(&self) -> f64 {
        if self.config.anneal_clip {
            self.config.clip_coef * self.remaining()
        } else {
            self.config.clip_coef
        }
    }

    /// The learner's whole state (see [`LearnerState`]).
    pub fn state(&self) -> LearnerState {
        let optimizer = self.engine.optimizer_state();
        LearnerState {
            weights: self.policy_weights().into_owned(),
            adam_exp_avg: optimizer.exp_avg,
            adam_exp_avg_sq: optimizer.exp_avg_sq,
            adam_step: optimizer.step,
            obs_norm: self.obs_norm.as_ref().map(|n| n.stats.clone()),
            reward_scaler: self
                .reward_scaler
                .as_ref()
                .map(|r| (r.stats.clone(), r.returns.clone())),
            rng: self.rng.state(),
            updates_done: self.updates_done,
            tensors: Vec::new(),
            counters: Vec::new(),
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
        self.engine.load(
            &state.weights,
            &OptimizerState {
                exp_avg: state.adam_exp_avg.clone(),
                exp_avg_sq: state.adam_exp_avg_sq.clone(),
                step: state.adam_step,
            },
        );
        Ok(())
    }

    /// The weights to act with, flat in layout order: borrowed from the
    /// host engine (no copy each round), copied out of libtorch otherwise.
    pub fn policy_weights(&self) -> Cow<'_, [f32]> {
        self.engine.weights()
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
        self.engine.save();
        let obs_norm = self.obs_norm.as_ref().map(|n| n.stats.clone());
        let reward_scaler = self
            .reward_scaler
            .as_ref()
            .map(|r| (r.stats.clone(), r.returns.clone()));
        let rng = self.rng.clone();
        let result = self.update_or_fail(rollout, abandon);
        if result.is_err() {
            self.engine.restore();
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

    fn update_or_fail(
        &mut self,
        rollout: &Rollout,
        abandon: &dyn Fn() -> bool,
    ) -> Result<UpdateStats, UpdateError> {
        let cfg = self.config.clone();
        let (e, od) = (rollout.num_envs, rollout.obs_dim);
        let batch_size = rollout.num_steps * e;

        // CleanRL normalises observations in a gym wrapper as they are
        // collected; here the collectors normalise with the statistics of
        // the weights they act with, and the learner folds each rollout
        // into the statistics once, after the collectors used them (SB3's
        // VecNormalize order), so every process acts with the same numbers.
        let mut b_obs = rollout.obs.clone();
        // Data-parallel: every rank's observations go into the statistics
        // (rank by rank), so all ranks normalise alike.
        if let Some(norm) = &mut self.obs_norm {
            norm.normalize(&rollout.obs, &mut b_obs);
            match &mut self.exchange {
                Some(x) => merge_moments(x.as_mut(), &mut norm.stats, &rollout.obs)
                    .map_err(UpdateError::Exchange)?,
                None => norm.stats.update(&rollout.obs),
            }
        }
        let dones: Vec<bool> = rollout
            .terminated
            .iter()
            .zip(&rollout.truncated)
            .map(|(a, b)| *a || *b)
            .collect();
        let mut rewards = rollout.rewards.clone();
        if let Some(scaler) = &mut self.reward_scaler {
            match &mut self.exchange {
                Some(x) => scale_over_ranks(x.as_mut(), scaler, &mut rewards, &dones, e)
                    .map_err(UpdateError::Exchange)?,
                None => scaler.scale(&mut rewards, &dones),
            }
        }
        // CleanRL: a truncated episode is treated as terminated. Here it
        // bootstraps from the value of its final observation (SB3).
        let gamma = cfg.gamma as f32;
        for (r, v) in rewards.iter_mut().zip(&rollout.final_values) {
            *r += gamma * v;
        }
        let (b_advantages, b_returns) = gae(
            &rewards,
            &rollout.values,
            &dones,
            &rollout.last_values,
            e,
            gamma,
            cfg.gae_lambda as f32,
        );
        if let Some(v) = first_non_finite(&b_returns).or_else(|| first_non_finite(&b_advantages)) {
            return Err(self.diverged(
                Stage::BeforeMinibatches,
                "the returns and advantages computed from the rollout",
                v as f64,
                rollout,
            ));
        }
        let batch = Batch {
            obs: &b_obs,
            actions: &rollout.actions,
            log_probs: &rollout.log_probs,
            advantages: &b_advantages,
            returns: &b_returns,
            values: &rollout.values,
            obs_dim: od,
            action_dim: rollout.action_dim,
        };
        self.engine.begin_update(&batch);

        let lr = self.current_learning_rate();
        let clip_coef = self.current_clip_coef();
        let minibatch_size = batch_size / cfg.num_minibatches;
        let mut b_inds: Vec<usize> = (0..batch_size).collect();
        // CleanRL logs the last minibatch's statistics; these are the means
        // over every minibatch of the update (SB3).
        let mut sums = LossTerms::default();
        // Data-parallel: this rank's terms not yet averaged over ranks, and
        // the gradient exchange's buffer.
        let mut pending: Vec<f64> = Vec::new();
        let mut scratch: Vec<f32> = Vec::new();
        let mut minibatches = 0usize;
        let mut epochs = 0;
        for epoch in 1..=cfg.update_epochs {
            epochs = epoch;
            shuffle(&mut b_inds, &mut self.rng);
            let mut approx_kl = 0.0;
            for (minibatch, mb_inds) in b_inds.chunks(minibatch_size).enumerate() {
                let (terms, grad_norm) = match &mut self.exchange {
                    None => {
                        if abandon() {
                            return Err(UpdateError::Abandoned);
                        }
                        self.engine.backward(&batch, mb_inds, &cfg, clip_coef)
                    }
                    // DD-PPO: the ranks' mean gradient, then clipped; the
                    // ranks decide together whether to go on.
                    Some(x) => {
                        let terms = self
                            .engine
                            .backward_unclipped(&batch, mb_inds, &cfg, clip_coef);
                        exchange_minibatch(
                            x.as_mut(),
                            self.engine.as_mut(),
                            terms,
                            abandon(),
                            cfg.max_grad_norm,
                            &mut scratch,
                        )
                        .map_err(UpdateError::Exchange)?
                        .ok_or(UpdateError::Abandoned)?
                    }
                };
                // Checked before the step: a non-finite gradient never
                // reaches the weights or the moments.
                if let Some((quantity, value)) = Self::non_finite_terms(&terms, grad_norm) {
                    let stage = Stage::Minibatch {
                        epoch,
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
                self.engine.step(lr);
                match &self.exchange {
                    None => sums.add(&terms),
                    // Averaged over ranks later, in one collective.
                    Some(_) => pending.extend_from_slice(&terms.logged()),
                }
                minibatches += 1;
                approx_kl = terms.approx_kl;
            }
            // Data-parallel: the ranks' mean terms of the minibatches so far
            // (each epoch's when `target_kl` needs its last approx_kl, else
            // once after the last epoch).
            let last_epoch = epoch == cfg.update_epochs;
            if let Some(x) = self
                .exchange
                .as_mut()
                .filter(|_| cfg.target_kl.is_some() || last_epoch)
            {
                vote_and_average(x.as_mut(), Votes::default(), &mut pending)
                    .map_err(UpdateError::Exchange)?;
                for mean in pending.chunks_exact(LOGGED_TERMS) {
                    let terms = LossTerms::from_logged(mean);
                    sums.add(&terms);
                    approx_kl = terms.approx_kl;
                }
                pending.clear();
            }
            if cfg.target_kl.is_some_and(|kl| approx_kl > kl) {
                break;
            }
        }
        // The new state, before anyone can use it.
        let failure = self
            .engine
            .non_finite_state()
            .or_else(|| self.non_finite_statistics())
            .or_else(|| self.non_finite_policy(rollout));
        if let Some(x) = &mut self.exchange {
            // One collective: every rank diverges with any one of them,
            // and otherwise their weights must be identical.
            let weights = self.engine.weights();
            let any_bad = check_identical(
                x.as_mut(),
                &weights,
                self.updates_done + 1,
                failure.is_some(),
            )
            .map_err(UpdateError::Exchange)?;
            if any_bad && failure.is_none() {
                let quantity = "another rank's weights, moments or statistics";
                return Err(self.diverged(Stage::AfterMinibatches, quantity, f64::NAN, rollout));
            }
        }
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
            explained_variance: explained_variance(&rollout.values, &b_returns),
            learning_rate: lr,
            clip_coef,
            epochs,
        })
    }
}

/// `train.csv` columns of a PPO update.
pub const STAT_NAMES: [&str; 7] = [
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_frac",
    "explained_variance",
    "learning_rate",
];

impl UpdateStats {
    /// As named values, in [`STAT_NAMES`] order.
    pub fn named(&self) -> Stats {
        Stats(
            STAT_NAMES
                .iter()
                .zip([
                    self.policy_loss,
                    self.value_loss,
                    self.entropy,
                    self.approx_kl,
                    self.clip_frac,
                    self.explained_variance,
                    self.learning_rate,
                ])
                .map(|(name, value)| (*name, value))
                .collect(),
        )
    }
}

impl Algorithm for PpoLearner {
    fn name(&self) -> &'static str {
        "ppo"
    }

    fn stat_names(&self) -> &'static [&'static str] {
        &STAT_NAMES
    }

    fn updates_done(&self) -> u64 {
        self.updates_done
    }

    fn num_updates(&self) -> u64 {
        self.num_updates
    }

    fn acting_weights(&self) -> Cow<'_, [f32]> {
        self.policy_weights()
    }

    fn obs_normalizer(&self) -> Option<&ObsNormalizer> {
        self.obs_norm.as_ref()
    }

    fn update(
        &mut self,
        experience: &Rollout,
        abandon: &dyn Fn() -> bool,
    ) -> Result<Stats, UpdateError> {
        PpoLearner::update(self, experience, abandon).map(|s| s.named())
    }

    /// Data-parallel: this rank's envs are `num_envs` of `ranks * num_envs`;
    /// the run's updates are counted over all of them, and the reward
    /// scaler keeps a running return for each.
    fn set_exchange(&mut self, exchange: Box<dyn Exchange>) -> Result<(), String> {
        let ranks = exchange.ranks();
        self.num_updates = self
            .config
            .num_updates(self.num_envs * ranks, self.total_timesteps);
        if let Some(scaler) = &mut self.reward_scaler {
            scaler.returns = vec![0.0; self.num_envs * ranks];
        }
        self.exchange = Some(exchange);
        Ok(())
    }

    fn exchange_traffic(&self) -> Option<Traffic> {
        self.exchange.as_ref().map(|x| x.traffic())
    }

    fn exchange_mut(&mut self) -> Option<&mut dyn Exchange> {
        match &mut self.exchange {
            Some(x) => Some(x.as_mut()),
            None => None,
        }
    }

    /// Their running discounted returns (reward scaling) restart from zero.
    fn envs_restarted(&mut self, envs: std::ops::Range<usize>) {
        // The scaler counts envs globally when ranks share it.
        let offset = self
            .exchange
            .as_ref()
            .map_or(0, |x| x.rank() * self.num_envs);
        if let Some(scaler) = &mut self.reward_scaler {
            for env in (envs.start + offset)..(envs.end + offset) {
                if let Some(r) = scaler.returns.get_mut(env) {
                    *r = 0.0;
                }
            }
        }
    }

    fn state(&self, _lean: bool) -> LearnerState {
        PpoLearner::state(self)
    }

    fn restore(&mut self, state: &LearnerState) -> Result<(), String> {
        PpoLearner::restore(self, state)
    }
}
