//! The learner's checks that an update stays finite (see
//! [`crate::divergence`]): what each failure is called, and the
//! [`Divergence`] that reports it.

use rl_policy::{ActionHead, Rollout};

use crate::algorithm::UpdateError;
use crate::divergence::{
    first_non_finite, first_non_finite_f64, suspects, Divergence, Normalised, Stage,
};
use crate::engine::gradient::LossTerms;
use crate::ppo::learner::PpoLearner;

/// Rows of a rollout the new policy is tried on after each update.
const CHECK_ROWS: usize = 256;

impl PpoLearner {
    /// A [`Divergence`] of the next update: what went non-finite, with the
    /// rollout's reward range and the suspect settings.
    pub fn diverged(
        &self,
        stage: Stage,
        quantity: &str,
        value: f64,
        rollout: &Rollout,
    ) -> UpdateError {
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
            suspects: suspects(
                &self.config,
                Normalised {
                    obs_clip: self.obs_norm.as_ref().map(|n| n.clip),
                    rewards: self.reward_scaler.is_some(),
                },
                quantity,
                max_abs_reward,
            ),
        })
    }

    /// The first non-finite number of the normalisers' statistics.
    pub fn non_finite_statistics(&self) -> Option<(&'static str, f64)> {
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
    pub fn non_finite_policy(&mut self, rollout: &Rollout) -> Option<(&'static str, f64)> {
        let policy = self.check_policy.as_mut()?;
        let weights = self.engine.weights();
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

    /// The first non-finite loss term or gradient norm of a minibatch.
    pub fn non_finite_terms(terms: &LossTerms, grad_norm: f64) -> Option<(&'static str, f64)> {
        [
            ("the policy loss", terms.policy_loss),
            ("the value loss", terms.value_loss),
            ("the entropy", terms.entropy),
            ("the gradient (its norm)", grad_norm),
        ]
        .into_iter()
        .find(|(_, v)| !v.is_finite())
    }
}
