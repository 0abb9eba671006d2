//! PPO's part of a data-parallel run (`crate::exchange`): a minibatch's
//! one collective (the mean gradient with the ranks' votes), reward
//! scaling over every rank's envs, and the loss terms as the values the
//! ranks average.

use crate::engine::gradient::{GradientEngine, LossTerms};
use crate::exchange::{average_gradient_and_vote, gather_rows, Exchange, ExchangeError, Votes};
use crate::ppo::reward_scaler::RewardScaler;

/// One minibatch's exchange, one collective: the ranks' votes with their
/// gradients, then (unless a rank stops or went non-finite) the mean
/// gradient, clipped. The loss terms are this rank's (averaged over ranks
/// later, for the statistics and `target_kl`). `None` when a rank asked to
/// stop.
pub(crate) fn exchange_minibatch(
    x: &mut dyn Exchange,
    engine: &mut dyn GradientEngine,
    terms: LossTerms,
    stop: bool,
    max_grad_norm: f64,
    scratch: &mut Vec<f32>,
) -> Result<Option<(LossTerms, f64)>, ExchangeError> {
    let bad = !terms.loss.is_finite() || terms.logged().iter().any(|v| !v.is_finite());
    let mut votes = Votes::default();
    engine.exchange_gradient(&mut |grad| {
        votes = average_gradient_and_vote(x, grad, Votes { stop, bad }, scratch)?;
        Ok(false)
    })?;
    if votes.stop {
        return Ok(None);
    }
    if votes.bad {
        // Some rank's loss is non-finite: every rank stops at this
        // minibatch, before any step (a finite loss here is marked, so
        // that the divergence is reported at this minibatch).
        let terms = if terms.loss.is_finite() {
            LossTerms {
                loss: f64::NAN,
                ..terms
            }
        } else {
            terms
        };
        return Ok(Some((terms, f64::NAN)));
    }
    Ok(Some((terms, engine.clip_gradient(max_grad_norm))))
}

/// Reward scaling over every rank's envs: the rewards and episode ends of
/// all ranks as one `[T, ranks * E]` array (global env indices), scaled
/// with one running return per global env, this rank's columns kept.
pub(crate) fn scale_over_ranks(
    x: &mut dyn Exchange,
    scaler: &mut RewardScaler,
    rewards: &mut [f32],
    dones: &[bool],
    num_envs: usize,
) -> Result<(), ExchangeError> {
    let (rank, ranks) = (x.rank(), x.ranks());
    let as_f64: Vec<f64> = rewards.iter().map(|r| f64::from(*r)).collect();
    let ends: Vec<f64> = dones.iter().map(|d| f64::from(u8::from(*d))).collect();
    let all_rewards = gather_rows(x, &as_f64, num_envs)?;
    let all_ends = gather_rows(x, &ends, num_envs)?;
    let mut global: Vec<f32> = all_rewards.iter().map(|r| *r as f32).collect();
    let global_ends: Vec<bool> = all_ends.iter().map(|d| *d != 0.0).collect();
    scaler.scale(&mut global, &global_ends);
    let width = ranks * num_envs;
    for (mine, row) in rewards
        .chunks_exact_mut(num_envs)
        .zip(global.chunks_exact(width))
    {
        mine.copy_from_slice(&row[rank * num_envs..(rank + 1) * num_envs]);
    }
    Ok(())
}

/// The loss terms `train.csv` logs, in this order.
pub(crate) const LOGGED_TERMS: usize = 6;

impl LossTerms {
    /// Adds a minibatch's logged terms to these sums.
    pub(crate) fn add(&mut self, terms: &LossTerms) {
        self.policy_loss += terms.policy_loss;
        self.value_loss += terms.value_loss;
        self.entropy += terms.entropy;
        self.approx_kl += terms.approx_kl;
        self.old_approx_kl += terms.old_approx_kl;
        self.clip_frac += terms.clip_frac;
    }

    pub(crate) fn logged(&self) -> [f64; LOGGED_TERMS] {
        [
            self.policy_loss,
            self.value_loss,
            self.entropy,
            self.approx_kl,
            self.old_approx_kl,
            self.clip_frac,
        ]
    }

    pub(crate) fn from_logged(values: &[f64]) -> LossTerms {
        let at = |i: usize| values.get(i).copied().unwrap_or(f64::NAN);
        LossTerms {
            loss: 0.0,
            policy_loss: at(0),
            value_loss: at(1),
            entropy: at(2),
            approx_kl: at(3),
            old_approx_kl: at(4),
            clip_frac: at(5),
        }
    }
}
