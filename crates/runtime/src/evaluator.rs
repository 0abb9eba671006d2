//! The evaluator process: watches the weight block and, whenever training
//! has passed the next evaluation point, evaluates the newest weights on its
//! own envs, appends to `eval.csv` and keeps the best policy. It only reads
//! the block, so it never holds the learner up; when it falls behind it
//! skips to the newest version.

use std::time::Duration;

use rl_env::Registry;
use rl_ipc::messages::{
    recv_json, send_json, EvalReport, EvaluatorToSupervisor, SupervisorToEvaluator,
};
use rl_ipc::ChannelError;
use rl_policy::{ObsNormalizer, Policy};

use crate::child::{report_failure, ChildContext};
use crate::eval::{evaluate, next_eval_after, EvalRecorder};
use crate::run_dir::RunDir;
use crate::trainer::{spec_for, RuntimeError};

/// How often the block is checked for new weights.
const POLL: Duration = Duration::from_millis(20);

pub(crate) fn run_evaluator(
    registry: &Registry,
    context: ChildContext,
) -> Result<(), RuntimeError> {
    let result = run(registry, &context);
    report_failure(&context.control, result, |message| {
        EvaluatorToSupervisor::Failed { message }
    })
}

/// What earlier evaluator processes of this run wrote: the newest version
/// evaluated and the best mean return, from `eval.csv`.
fn earlier_evaluations(run_dir: &RunDir) -> (Option<u64>, Option<f64>) {
    let text = std::fs::read_to_string(run_dir.path().join("eval.csv")).unwrap_or_default();
    let mut last = None;
    let mut best: Option<f64> = None;
    // Only complete lines count: a process killed mid-write leaves at most a
    // partial last line.
    for line in text
        .split_inclusive('\n')
        .skip(1)
        .filter(|l| l.ends_with('\n'))
    {
        let fields: Vec<&str> = line.trim_end().split(',').collect();
        let (Some(version), Some(mean)) = (
            fields.get(2).and_then(|v| v.parse::<u64>().ok()),
            fields.get(3).and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        last = Some(last.map_or(version, |l: u64| l.max(version)));
        best = Some(best.map_or(mean, |b| b.max(mean)));
    }
    (last, best)
}

fn run(registry: &Registry, context: &ChildContext) -> Result<(), RuntimeError> {
    let settings = &context.settings;
    let control = &context.control;
    let run_dir = RunDir::existing(&context.run_dir)?;
    let (last_evaluated_version, best_return) = earlier_evaluations(&run_dir);
    let spec = spec_for(registry, settings)?;
    let obs_dim = spec.obs_dim;
    let mut policy = Policy::new(spec.clone())?;
    let mut obs_norm = settings
        .ppo
        .normalize_obs
        .then(|| ObsNormalizer::new(obs_dim, settings.ppo.obs_clip));
    let mut stats = vec![0.0_f64; context.block.stats_len()];
    let mut recorder = EvalRecorder::new(
        &run_dir,
        run_dir.append_eval_csv()?,
        spec,
        &settings.env.id,
        best_return,
    );
    let steps_per_update = settings.steps_per_update();
    let interval = settings.eval.interval_steps;
    let mut last_evaluated = last_evaluated_version;
    let mut next_eval = last_evaluated.map_or(interval, |v| {
        next_eval_after(v * steps_per_update, interval)
    });
    send_json(control, &EvaluatorToSupervisor::Ready, &[])?;

    let mut evaluate_latest =
        |last_evaluated: &mut Option<u64>| -> Result<Option<u64>, RuntimeError> {
            let Some(version) = context
                .block
                .read_with_stats_into(policy.weights_mut(), &mut stats)?
            else {
                return Ok(None);
            };
            if let Some(norm) = &mut obs_norm {
                norm.stats.mean.copy_from_slice(&stats[..obs_dim]);
                norm.stats.var.copy_from_slice(&stats[obs_dim..2 * obs_dim]);
            }
            let env_steps = version * steps_per_update;
            let result = evaluate(
                registry,
                settings,
                &mut policy,
                obs_norm.as_ref(),
                env_steps,
                version,
            )?;
            let elapsed_s = context.elapsed_s();
            recorder.record(elapsed_s, &result, policy.weights(), obs_norm.as_ref())?;
            *last_evaluated = Some(version);
            send_json(
                control,
                &EvaluatorToSupervisor::Evaluated(EvalReport {
                    elapsed_s,
                    env_steps,
                    policy_version: version,
                    returns: result.returns,
                }),
                &[],
            )?;
            Ok(Some(version))
        };

    let mut buf = Vec::new();
    loop {
        match recv_json::<SupervisorToEvaluator>(control, &mut buf, Some(POLL)) {
            Ok((SupervisorToEvaluator::Stop, _)) | Err(ChannelError::Closed) => return Ok(()),
            Ok((SupervisorToEvaluator::Finish { final_version }, _)) => {
                if last_evaluated != Some(final_version) {
                    let got = evaluate_latest(&mut last_evaluated)?;
                    if got != Some(final_version) {
                        return Err(RuntimeError::Failed(format!(
                            "the final evaluation found weights version {got:?}, expected {final_version}"
                        )));
                    }
                }
                send_json(control, &EvaluatorToSupervisor::Done, &[])?;
                return Ok(());
            }
            Err(ChannelError::Timeout(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(latest) = context.block.latest_version() else {
            continue;
        };
        let due = latest * steps_per_update >= next_eval;
        if due && last_evaluated.is_none_or(|v| latest > v) {
            if let Some(version) = evaluate_latest(&mut last_evaluated)? {
                next_eval = next_eval_after(version * steps_per_update, interval);
            }
        }
    }
}
