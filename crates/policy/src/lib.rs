//! The policy as plain numbers, shared by every process that acts.
//!
//! * [`PolicySpec`]: the actor-critic architecture (MLP sizes, activation,
//!   Categorical or diagonal-Gaussian head) and [`ParamLayout`], the order of
//!   all parameters in one flat `f32` buffer: sorted by name, named like a
//!   PyTorch `nn.Sequential` (`actor.0.weight`, `actor.2.bias`, ...).
//! * [`Policy`]: a CPU forward over such a buffer, action sampling with the
//!   env-side [`rl_env::rng::Rng`], log-probabilities and values. Rollout
//!   collection, the evaluator and (later) worker processes all act through
//!   this one implementation, so where a forward runs never changes what it
//!   computes: each observation row is computed alone, in a fixed order.
//! * [`RunningMeanStd`] and [`ObsNormalizer`]: observation normalisation
//!   statistics (float64, like Stable-Baselines3's `VecNormalize`).
//! * [`RolloutCollector`] and [`Rollout`]: acting in a vectorised env and
//!   recording what the learner needs, including the value of the final
//!   observation of truncated episodes; [`evaluate_episodes`] for
//!   deterministic evaluation.
//!
//! **Invariant:** no libtorch, no I/O: this crate is what a process that only
//! acts needs to link.

mod evaluate;
pub mod fast_math;
pub mod forward;
mod layout;
mod normalize;
mod policy;
mod rollout;

pub use evaluate::evaluate_episodes;
pub use layout::{
    layer_sizes, ActionHead, Activation, ParamEntry, ParamLayout, PolicySpec, LOG_STD_MAX,
    LOG_STD_MIN,
};
pub use normalize::{ObsNormalizer, RunningMeanStd};
pub use policy::{Exploration, Policy, PolicyError};
pub use rollout::{CollectError, EpisodeRecord, Rollout, RolloutCollector};
