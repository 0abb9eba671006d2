//! Rollouts: what acting produces and learning consumes.

use rl_env::rng::Rng;
use rl_env::seeds::{env_seed, sampling_seed};
use rl_env::snapshot::{SnapshotReader, SnapshotWriter};
use rl_env::{Actions, EnvError, Space, VecEnv};

use crate::{Exploration, ObsNormalizer, Policy};

/// One episode that ended during a rollout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeRecord {
    pub episode_return: f64,
    pub length: u32,
    /// The rollout step at which it ended.
    pub step: u32,
    /// The global index of the env it ran in (see [`RolloutCollector`]).
    pub env: u32,
}

/// `num_steps` transitions of `num_envs` envs, time-major.
///
/// Observations are raw (not normalised); `values`, `log_probs` and
/// `final_values` were computed on observations normalised with the
/// statistics the collector was given. Episodes are listed in the order they
/// ended: by step, then by env.
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
    /// The final observation where the step ended an episode (terminated
    /// or truncated; zeros elsewhere), raw: the off-policy algorithms'
    /// next observation there. Empty unless the collector's head is
    /// off-policy ([`crate::ActionHead::is_off_policy`]).
    pub final_obs: Vec<f32>, // [T, E, obs_dim] or empty
}

impl Rollout {
    /// Sets the sizes and makes every array the length they imply (zeros
    /// where it grows), keeping the allocations; clears the episodes.
    pub fn reshape(
        &mut self,
        num_steps: usize,
        num_envs: usize,
        obs_dim: usize,
        action_dim: usize,
    ) {
        let te = num_steps * num_envs;
        (self.num_steps, self.num_envs, self.obs_dim, self.action_dim) =
            (num_steps, num_envs, obs_dim, action_dim);
        self.obs.resize(te * obs_dim, 0.0);
        self.actions.resize(te * action_dim, 0.0);
        for v in [
            &mut self.log_probs,
            &mut self.values,
            &mut self.rewards,
            &mut self.final_values,
        ] {
            v.resize(te, 0.0);
        }
        self.terminated.resize(te, false);
        self.truncated.resize(te, false);
        self.last_obs.resize(num_envs * obs_dim, 0.0);
        self.last_values.resize(num_envs, 0.0);
        self.episodes.clear();
        self.final_obs.clear();
    }

    /// Makes room for final observations (all zeros), after
    /// [`Rollout::reshape`].
    pub fn keep_final_obs(&mut self) {
        self.final_obs.clear();
        self.final_obs
            .resize(self.num_steps * self.num_envs * self.obs_dim, 0.0);
    }

    /// The observation that followed step `t` of env `e`: the ended
    /// episode's final observation where the step ended one, else the next
    /// step's (or the last) observation. Needs final observations.
    pub fn next_obs(&self, t: usize, e: usize) -> &[f32] {
        let (n, od) = (self.num_envs, self.obs_dim);
        let i = t * n + e;
        if self.terminated[i] || self.truncated[i] {
            &self.final_obs[i * od..(i + 1) * od]
        } else if t + 1 < self.num_steps {
            &self.obs[(i + n) * od..(i + n + 1) * od]
        } else {
            &self.last_obs[e * od..(e + 1) * od]
        }
    }
}

impl Rollout {
    /// Copies `part`, a rollout of `part.num_envs` envs, into envs
    /// `env_offset..env_offset + part.num_envs` of this one (already shaped
    /// for all envs), and appends its episodes. Call
    /// [`Rollout::sort_episodes`] once every part is in.
    pub fn place_envs(&mut self, part: &Rollout, env_offset: usize) -> Result<(), String> {
        let (t, e, od, ad) = (self.num_steps, self.num_envs, self.obs_dim, self.action_dim);
        let pe = part.num_envs;
        if part.num_steps != t
            || part.obs_dim != od
            || part.action_dim != ad
            || env_offset + pe > e
            || part.final_obs.is_empty() != self.final_obs.is_empty()
        {
            return Err(format!(
                "a part of {} steps x {pe} envs (obs {}, action {}, final observations {}) does not fit at env {env_offset} of {t} steps x {e} envs (obs {od}, action {ad}, final observations {})",
                part.num_steps, part.obs_dim, part.action_dim, !part.final_obs.is_empty(), !self.final_obs.is_empty()
            ));
        }
        fn columns<T: Copy>(
            dst: &mut [T],
            src: &[T],
            rows: usize,
            e: usize,
            pe: usize,
            off: usize,
            width: usize,
        ) {
            for row in 0..rows {
                dst[(row * e + off) * width..(row * e + off + pe) * width]
                    .copy_from_slice(&src[row * pe * width..(row + 1) * pe * width]);
            }
        }
        columns(&mut self.obs, &part.obs, t, e, pe, env_offset, od);
        columns(&mut self.actions, &part.actions, t, e, pe, env_offset, ad);
        columns(
            &mut self.log_probs,
            &part.log_probs,
            t,
            e,
            pe,
            env_offset,
            1,
        );
        columns(&mut self.values, &part.values, t, e, pe, env_offset, 1);
        columns(&mut self.rewards, &part.rewards, t, e, pe, env_offset, 1);
        columns(
            &mut self.final_values,
            &part.final_values,
            t,
            e,
            pe,
            env_offset,
            1,
        );
        columns(
            &mut self.terminated,
            &part.terminated,
            t,
            e,
            pe,
            env_offset,
            1,
        );
        columns(
            &mut self.truncated,
            &part.truncated,
            t,
            e,
            pe,
            env_offset,
            1,
        );
        columns(&mut self.last_obs, &part.last_obs, 1, e, pe, env_offset, od);
        if !self.final_obs.is_empty() {
            columns(
                &mut self.final_obs,
                &part.final_obs,
                t,
                e,
                pe,
                env_offset,
                od,
            );
        }
        columns(
            &mut self.last_values,
            &part.last_values,
            1,
            e,
            pe,
            env_offset,
            1,
        );
        self.episodes.extend_from_slice(&part.episodes);
        Ok(())
    }

    /// Orders the episodes as one collector over all envs lists them: by
    /// step, then by env.
    pub fn sort_episodes(&mut self) {
        self.episodes.sort_by_key(|e| (e.step, e.env));
    }
}

/// Why a rollout could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// An env failed (its error names it).
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The policy computed a non-finite number from finite observations:
    /// the weights it was given are at fault, not the envs.
    #[error("the policy's {output} is {value} for the observation of env {env} at step {step} (every observation value finite): its weights diverged")]
    PolicyNotFinite {
        /// "action logits", "action means", "value".
        output: &'static str,
        value: f32,
        /// The global env index.
        env: u64,
        step: usize,
    },
}

/// Steps a vectorised env with a policy and records rollouts.
///
/// Env `i` of this collector is env `first_env_index + i` of the whole run:
/// its env seed and its action-sampling stream depend only on that global
/// index, and the policy computes every observation on its own, so splitting
/// the envs over several collectors changes nothing.
pub struct RolloutCollector {
    envs: VecEnv,
    policy: Policy,
    obs_norm: Option<ObsNormalizer>,
    first_env_index: u64,
    rngs: Vec<Rng>,               // [E], one action-sampling stream per env
    normalized: Vec<f32>,         // [E, obs_dim]
    outputs: Vec<f32>,            // [E, actor outputs]
    discrete_actions: Vec<i64>,   // [E]
    continuous_actions: Vec<f32>, // [E, action_dim], clipped
    bounds: Option<(Vec<f32>, Vec<f32>)>,
    exploration: Exploration,
}

impl RolloutCollector {
    /// Resets the envs with seeds `env_seed(seed, first_env_index + i)`
    /// (see [`rl_env::seeds`]).
    pub fn new(
        mut envs: VecEnv,
        policy: Policy,
        seed: u64,
        first_env_index: u64,
    ) -> Result<Self, EnvError> {
        let n = envs.num_envs();
        let seeds: Vec<u64> = (0..n as u64)
            .map(|i| env_seed(seed, first_env_index + i))
            .collect();
        envs.reset_with_seeds(&seeds)?;
        let rngs = (0..n as u64)
            .map(|i| Rng::from_seed(sampling_seed(seed, first_env_index + i)))
            .collect();
        let action_dim = policy.spec().head.action_dim();
        let outputs = policy.spec().head.actor_outputs();
        let obs_dim = envs.obs_dim();
        let bounds = match envs.action_space() {
            Space::Box(b) => Some((b.low.clone(), b.high.clone())),
            Space::Discrete { .. } => None,
        };
        Ok(RolloutCollector {
            envs,
            policy,
            obs_norm: None,
            first_env_index,
            rngs,
            normalized: vec![0.0; n * obs_dim],
            outputs: vec![0.0; n * outputs],
            discrete_actions: vec![0; n],
            continuous_actions: vec![0.0; n * action_dim],
            bounds,
            exploration: Exploration::default(),
        })
    }

    pub fn num_envs(&self) -> usize {
        self.envs.num_envs()
    }

    pub fn obs_dim(&self) -> usize {
        self.envs.obs_dim()
    }

    pub fn action_dim(&self) -> usize {
        self.policy.spec().head.action_dim()
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

    /// How an off-policy head explores from now on (published by the
    /// learner with the weights).
    pub fn set_exploration(&mut self, exploration: Exploration) {
        self.exploration = exploration;
    }

    /// The collector's whole state as bytes: its envs (see
    /// [`VecEnv::snapshot`]) and each env's action-sampling stream. `None`
    /// when an env does not support snapshots.
    pub fn snapshot(&self) -> Option<Vec<u8>> {
        let envs = self.envs.snapshot()?;
        let mut w = SnapshotWriter::new();
        w.u64(self.first_env_index).u64(self.rngs.len() as u64);
        for rng in &self.rngs {
            w.rng(rng);
        }
        w.bytes(&envs);
        Some(w.finish())
    }

    /// Puts the collector back as a [`RolloutCollector::snapshot`] of a
    /// collector of the same envs found it: the next rollout is the one it
    /// would have collected.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), EnvError> {
        let id = self.envs.id().to_string();
        let mut r = SnapshotReader::new(&id, snapshot);
        let (first, n) = (r.u64()?, r.u64()?);
        if (first, n) != (self.first_env_index, self.rngs.len() as u64) {
            return Err(EnvError::State {
                env: id,
                problem: format!(
                    "cannot restore a snapshot of envs {first}..{} into envs {}..{}",
                    first + n,
                    self.first_env_index,
                    self.first_env_index + self.rngs.len() as u64
                ),
            });
        }
        let rngs = (0..n).map(|_| r.rng()).collect::<Result<Vec<_>, _>>()?;
        let envs = r.bytes()?;
        r.finish()?;
        self.envs.restore(envs)?;
        self.rngs = rngs;
        Ok(())
    }

    /// The policy acting, to load weights in place.
    pub fn policy_mut(&mut self) -> &mut Policy {
        &mut self.policy
    }

    /// The observation normaliser acting, to update in place.
    /// The policy and the observation normaliser, both to change at once
    /// (a worker reads new weights and statistics into them).
    pub fn policy_and_obs_norm_mut(&mut self) -> (&mut Policy, &mut Option<ObsNormalizer>) {
        (&mut self.policy, &mut self.obs_norm)
    }

    pub fn obs_norm_mut(&mut self) -> &mut Option<ObsNormalizer> {
        &mut self.obs_norm
    }

    fn normalize_rows(obs_norm: &Option<ObsNormalizer>, raw: &[f32], out: &mut [f32], dim: usize) {
        match obs_norm {
            Some(norm) => {
                for (r, o) in raw.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
                    norm.normalize(r, o);
                }
            }
            None => out.copy_from_slice(raw),
        }
    }

    /// The first non-finite number of this step's actor outputs and values,
    /// as an error, unless the observation it came from is not finite (the
    /// env's fault, which the learner's checks report).
    fn check_outputs(&self, values: &[f32], step: usize) -> Result<(), CollectError> {
        let n = self.envs.num_envs();
        let outputs = self.outputs.len() / n.max(1);
        let obs_dim = self.envs.obs_dim();
        let name = match self.policy.spec().head {
            crate::ActionHead::Categorical { .. } => "action logits",
            crate::ActionHead::Gaussian { .. } => "action means",
            crate::ActionHead::QValues { .. } => "Q-values",
            crate::ActionHead::SquashedGaussian { .. }
            | crate::ActionHead::Deterministic { .. } => "actor outputs",
        };
        for (i, value) in values.iter().enumerate().take(n) {
            let found = self.outputs[i * outputs..(i + 1) * outputs]
                .iter()
                .map(|v| (name, *v))
                .chain(std::iter::once(("value", *value)))
                .find(|(_, v)| !v.is_finite());
            let obs = &self.envs.obs()[i * obs_dim..(i + 1) * obs_dim];
            if let (Some((output, value)), true) = (found, obs.iter().all(|v| v.is_finite())) {
                return Err(CollectError::PolicyNotFinite {
                    output,
                    value,
                    env: self.first_env_index + i as u64,
                    step,
                });
            }
        }
        Ok(())
    }

    /// Collects `num_steps` steps of every env into a new rollout.
    pub fn collect(&mut self, num_steps: usize) -> Result<Rollout, CollectError> {
        let mut rollout = Rollout::default();
        self.collect_into(num_steps, &mut rollout)?;
        Ok(rollout)
    }

    /// Collects `num_steps` steps of every env into `r`, reusing its
    /// allocations.
    pub fn collect_into(&mut self, num_steps: usize, r: &mut Rollout) -> Result<(), CollectError> {
        let n = self.envs.num_envs();
        let obs_dim = self.envs.obs_dim();
        let action_dim = self.action_dim();
        let outputs = self.policy.spec().head.actor_outputs();
        r.reshape(num_steps, n, obs_dim, action_dim);
        let head = self.policy.spec().head;
        let off_policy = head.is_off_policy();
        if off_policy {
            r.keep_final_obs();
        }
        for t in 0..num_steps {
            let row = t * n;
            r.obs[row * obs_dim..(row + n) * obs_dim].copy_from_slice(self.envs.obs());
            Self::normalize_rows(
                &self.obs_norm,
                self.envs.obs(),
                &mut self.normalized,
                obs_dim,
            );
            self.policy
                .actor_outputs(&self.normalized, &mut self.outputs);
            self.policy
                .values(&self.normalized, &mut r.values[row..row + n]);
            self.check_outputs(&r.values[row..row + n], t)?;
            let actions = &mut r.actions[row * action_dim..(row + n) * action_dim];
            for i in 0..n {
                let action = &mut actions[i * action_dim..(i + 1) * action_dim];
                let out = &self.outputs[i * outputs..(i + 1) * outputs];
                if off_policy {
                    // In the env's units and bounds already: stored as applied.
                    self.policy.explore_from_outputs(
                        out,
                        &self.exploration,
                        &mut self.rngs[i],
                        action,
                    );
                } else {
                    r.log_probs[row + i] =
                        self.policy
                            .sample_from_outputs(out, &mut self.rngs[i], action);
                }
                match &self.bounds {
                    None => self.discrete_actions[i] = action[0] as i64,
                    Some((low, high)) => {
                        for d in 0..action_dim {
                            self.continuous_actions[i * action_dim + d] =
                                action[d].clamp(low[d], high[d]);
                        }
                    }
                }
            }
            if self.bounds.is_none() {
                self.envs.step(Actions::Discrete(&self.discrete_actions))?;
            } else {
                self.envs
                    .step(Actions::Continuous(&self.continuous_actions))?;
            }
            r.rewards[row..row + n].copy_from_slice(self.envs.rewards());
            r.terminated[row..row + n].copy_from_slice(self.envs.terminated());
            r.truncated[row..row + n].copy_from_slice(self.envs.truncated());
            if off_policy {
                for i in 0..n {
                    if self.envs.terminated()[i] || self.envs.truncated()[i] {
                        let at = (row + i) * obs_dim;
                        r.final_obs[at..at + obs_dim].copy_from_slice(
                            &self.envs.final_obs()[i * obs_dim..(i + 1) * obs_dim],
                        );
                    }
                }
            }
            for i in 0..n {
                let bootstrap = self.envs.truncated()[i] && !self.envs.terminated()[i];
                r.final_values[row + i] = if bootstrap {
                    let raw = &self.envs.final_obs()[i * obs_dim..(i + 1) * obs_dim];
                    let one = &mut self.normalized[..obs_dim];
                    Self::normalize_rows(&self.obs_norm, raw, one, obs_dim);
                    self.policy.value(one)
                } else {
                    0.0
                };
            }
            let first = self.first_env_index;
            r.episodes
                .extend(self.envs.finished_episodes().iter().map(|e| EpisodeRecord {
                    episode_return: e.episode_return,
                    length: e.length,
                    step: t as u32,
                    env: (first + e.env_index as u64) as u32,
                }));
        }
        r.last_obs.copy_from_slice(self.envs.obs());
        Self::normalize_rows(
            &self.obs_norm,
            self.envs.obs(),
            &mut self.normalized,
            obs_dim,
        );
        self.policy.values(&self.normalized, &mut r.last_values);
        let obs_finite = |i: usize| {
            r.last_obs[i * obs_dim..(i + 1) * obs_dim]
                .iter()
                .all(|v| v.is_finite())
        };
        if let Some(i) = (0..n).find(|i| !r.last_values[*i].is_finite() && obs_finite(*i)) {
            return Err(CollectError::PolicyNotFinite {
                output: "value",
                value: r.last_values[i],
                env: self.first_env_index + i as u64,
                step: num_steps,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{ActionHead, Activation, PolicySpec};
    use rl_env::Registry;

    fn collector(env_id: &str, num_envs: usize, first: u64, normalize: bool) -> RolloutCollector {
        let registry = Registry::with_builtins();
        let envs = registry.make_vec(env_id, num_envs).unwrap();
        let head = match envs.action_space() {
            Space::Discrete { n } => ActionHead::Categorical { n: *n },
            Space::Box(b) => ActionHead::Gaussian { dim: b.flat_dim() },
        };
        let spec = PolicySpec {
            obs_dim: envs.obs_dim(),
            head,
            actor_hidden: vec![64, 64],
            critic_hidden: vec![64, 64],
            activation: Activation::Tanh,
        };
        let mut policy = Policy::new(spec).unwrap();
        let mut rng = Rng::from_seed(11);
        for w in policy.weights_mut() {
            *w = (rng.next_f64() as f32 - 0.5) * 0.6;
        }
        let weights = policy.weights().to_vec();
        let mut c = RolloutCollector::new(envs, policy, 5, first).unwrap();
        let norm = normalize.then(|| {
            let mut n = ObsNormalizer::new(c.obs_dim(), 5.0);
            n.stats.mean.iter_mut().for_each(|m| *m = 0.1);
            n.stats.var.iter_mut().for_each(|v| *v = 2.0);
            n
        });
        c.set_policy(&weights, norm).unwrap();
        c
    }

    /// The bit-identity of multi-process training rests on this: envs split
    /// over several collectors, placed back by global env index, give exactly
    /// the rollout one collector over all envs gives.
    #[test]
    fn weights_that_compute_non_finite_numbers_are_named_as_the_fault() {
        for env in ["CartPole-v1", "Pendulum-v1"] {
            let mut c = collector(env, 3, 4, false);
            // Finite weights whose outputs overflow float32.
            let huge = vec![3e38_f32; c.policy_mut().weights().len()];
            c.set_policy(&huge, None).unwrap();
            match c.collect(4) {
                Err(CollectError::PolicyNotFinite { env: e, step, .. }) => {
                    assert_eq!((e, step), (4, 0), "{env}: the first env at the first step");
                }
                other => panic!("{env}: {other:?}"),
            }
        }
    }

    #[test]
    fn rollouts_split_over_collectors_merge_into_the_single_collector_rollout() {
        for (env_id, normalize) in [("CartPole-v1", false), ("Pendulum-v1", true)] {
            let mut whole = collector(env_id, 20, 0, normalize);
            let mut parts = [
                collector(env_id, 7, 0, normalize),
                collector(env_id, 13, 7, normalize),
            ];
            for _ in 0..3 {
                let expected = whole.collect(230).unwrap();
                let mut merged = Rollout::default();
                merged.reshape(230, 20, expected.obs_dim, expected.action_dim);
                let mut offset = 0;
                for part in &mut parts {
                    let r = part.collect(230).unwrap();
                    merged.place_envs(&r, offset).unwrap();
                    offset += r.num_envs;
                }
                merged.sort_episodes();
                assert!(!expected.episodes.is_empty(), "{env_id}: no episode ended");
                assert_eq!(merged, expected, "{env_id}");
            }
        }
    }

    #[test]
    fn a_restored_collector_collects_the_rollouts_it_would_have_collected() {
        for (env_id, normalize) in [("CartPole-v1", false), ("Pendulum-v1", true)] {
            let mut original = collector(env_id, 6, 4, normalize);
            original.collect(300).unwrap();
            let snapshot = original.snapshot().unwrap();
            let expected = original.collect(300).unwrap();
            let mut restored = collector(env_id, 6, 4, normalize);
            restored.collect(17).unwrap();
            restored.restore(&snapshot).unwrap();
            assert_eq!(restored.collect(300).unwrap(), expected, "{env_id}");
            let mut elsewhere = collector(env_id, 6, 0, normalize);
            assert!(elsewhere.restore(&snapshot).is_err(), "other global envs");
        }
    }

    #[test]
    fn a_part_that_does_not_fit_is_refused() {
        let mut merged = Rollout::default();
        merged.reshape(4, 3, 2, 1);
        let mut part = Rollout::default();
        part.reshape(4, 2, 2, 1);
        assert!(merged.place_envs(&part, 2).is_err());
        part.reshape(5, 1, 2, 1);
        assert!(merged.place_envs(&part, 0).is_err());
    }
}
