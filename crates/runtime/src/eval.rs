//! Evaluation: deterministic episodes on their own envs, one `eval.csv` row
//! each time, and the best weights so far kept in `best_policy.safetensors`.
//! Used by the single-process loop and by the evaluator process alike.

use rl_env::rng::derive_seed;
use rl_env::Registry;
use rl_policy::{evaluate_episodes, ObsNormalizer, Policy, PolicySpec};

use crate::run_dir::{CsvWriter, RunDir, Value, BEST_POLICY_FILE};
use crate::trainer::{EvalResult, RuntimeError};
use crate::TrainSettings;

/// Keeps evaluation episodes apart from training envs.
const EVAL_SALT: u64 = 0xE7A1_0000_0000_0001;

/// Runs the evaluation episodes of a run with the given weights.
pub(crate) fn evaluate(
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
        policy,
        obs_norm,
        settings.eval.episodes,
        derive_seed(settings.run.seed, EVAL_SALT),
    )?;
    Ok(EvalResult {
        env_steps,
        policy_version,
        returns,
    })
}

/// The env steps of the first evaluation after `env_steps`: the next
/// multiple of `interval`.
pub(crate) fn next_eval_after(env_steps: u64, interval: u64) -> u64 {
    (env_steps / interval + 1) * interval
}

/// Writes evaluations: `eval.csv` rows and the best policy file.
pub(crate) struct EvalRecorder<'a> {
    run_dir: &'a RunDir,
    csv: CsvWriter,
    spec: PolicySpec,
    env_id: String,
    pub best_return: Option<f64>,
}

impl<'a> EvalRecorder<'a> {
    pub fn new(
        run_dir: &'a RunDir,
        csv: CsvWriter,
        spec: PolicySpec,
        env_id: &str,
        best_return: Option<f64>,
    ) -> Self {
        EvalRecorder {
            run_dir,
            csv,
            spec,
            env_id: env_id.to_string(),
            best_return,
        }
    }

    /// Appends the row and, when the mean beats every earlier one, saves
    /// the weights as the best policy.
    pub fn record(
        &mut self,
        time_s: f64,
        result: &EvalResult,
        weights: &[f32],
        obs_norm: Option<&ObsNormalizer>,
    ) -> Result<(), RuntimeError> {
        let (min, max) = result
            .returns
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                (lo.min(*r), hi.max(*r))
            });
        self.csv.row(&[
            Value::Float(time_s),
            Value::Int(result.env_steps),
            Value::Int(result.policy_version),
            Value::Float(result.mean()),
            Value::Float(result.std()),
            Value::Float(min),
            Value::Float(max),
            Value::Int(result.returns.len() as u64),
        ])?;
        let mean = result.mean();
        if self.best_return.is_none_or(|best| mean > best) {
            self.best_return = Some(mean);
            self.run_dir.write_policy_as(
                BEST_POLICY_FILE,
                &self.spec,
                &self.env_id,
                weights,
                obs_norm,
            )?;
        }
        Ok(())
    }
}
