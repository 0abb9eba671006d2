//! Evaluation episodes: deterministic actions on envs of their own, seeded
//! apart from every training env; and when they are due.

use rl_env::seeds::eval_seed;
use rl_env::Registry;
use rl_policy::{evaluate_episodes, ObsNormalizer, Policy};

use crate::error::RuntimeError;
use crate::report::EvalResult;
use crate::settings::TrainSettings;

/// Runs the evaluation episodes of a run with the given weights.
pub fn evaluate(
    registry: &Registry,
    settings: &TrainSettings,
    policy: &mut Policy,
    obs_norm: Option<&ObsNormalizer>,
    env_steps: u64,
    policy_version: u64,
) -> Result<EvalResult, RuntimeError> {
    let returns = evaluate_episodes(
        registry,
        &settings.env.id,
        &settings.env.kwargs,
        policy,
        obs_norm,
        settings.eval.episodes,
        eval_seed(settings.run.seed),
    )?;
    Ok(EvalResult {
        env_steps,
        policy_version,
        returns,
    })
}

/// The env steps of the first evaluation after `env_steps`: the next
/// multiple of `interval`.
pub fn next_eval_after(env_steps: u64, interval: u64) -> u64 {
    (env_steps / interval + 1) * interval
}
