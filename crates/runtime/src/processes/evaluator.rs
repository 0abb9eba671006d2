//! The evaluator process: watches the evaluation block, into which the
//! learner publishes the weights of each evaluation point (the versions a
//! single-process run evaluates), evaluates the newest on its own envs,
//! appends to `eval.csv`, draws `curve.png`, keeps the best policy, and says
//! when an evaluation is the best so far (the learner then saves its state
//! at that version as the best checkpoint). It only reads the block, so it
//! never holds the learner up; when it falls behind it skips to the newest
//! evaluation point.

use std::time::Duration;

use rl_env::Registry;
use rl_ipc::messages::{
    recv_json, send_json, EvalReport, EvaluatorToSupervisor, SupervisorToEvaluator,
};
use rl_ipc::ChannelError;
use rl_policy::{ObsNormalizer, Policy};

use crate::error::RuntimeError;
use crate::processes::child::{report_failure, ChildContext};
use crate::recording::eval::EvalRecorder;
use crate::spec::spec_for;
use crate::storage::run_dir::RunDir;
use crate::training::evaluate::evaluate;
use crate::training::published::PublishedPolicy;

/// How often the block is checked for new weights.
const POLL: Duration = Duration::from_millis(20);

/// `ranks`: the data-parallel ranks whose rounds make one update.
pub fn run_evaluator(
    registry: &Registry,
    context: ChildContext,
    ranks: u32,
) -> Result<(), RuntimeError> {
    let result = run(registry, &context, u64::from(ranks.max(1)));
    report_failure(&context.control, result, |message| {
        EvaluatorToSupervisor::Failed { message }
    })
}

/// The newest version already in `eval.csv` (written by an earlier
/// evaluator process of this run, or before a resume).
fn last_evaluated(run_dir: &RunDir) -> Option<u64> {
    rl_metrics::csv::read_table(&run_dir.path().join("eval.csv"))
        .ok()?
        .values("policy_version")
        .into_iter()
        .filter(|v| v.is_finite())
        .map(|v| v as u64)
        .max()
}

fn run(registry: &Registry, context: &ChildContext, ranks: u64) -> Result<(), RuntimeError> {
    let settings = &context.settings;
    let control = &context.control;
    let run_dir = RunDir::existing(&context.run_dir)?;
    let spec = spec_for(registry, settings)?;
    let obs_dim = spec.obs_dim;
    let mut policy = Policy::new(spec.clone())?;
    let mut obs_norm = settings
        .env
        .normalize_obs
        .then(|| ObsNormalizer::new(obs_dim, settings.env.obs_clip));
    let block = context.block()?;
    let mut published = PublishedPolicy::new(&spec, settings.env.normalize_obs);
    let mut recorder = EvalRecorder::new(
        &run_dir,
        run_dir.append_eval_csv()?,
        spec,
        &settings.env,
        context.start_unix_s,
    )?;
    let steps_per_update = settings.steps_per_update() * ranks;
    let mut last_evaluated = last_evaluated(&run_dir);
    send_json(control, &EvaluatorToSupervisor::Ready, &[])?;

    let mut evaluate_latest =
        |last_evaluated: &mut Option<u64>| -> Result<Option<u64>, RuntimeError> {
            let Some(version) = published.read(
                block,
                policy.weights_mut(),
                &mut rl_policy::Exploration::default(),
                obs_norm.as_mut(),
            )?
            else {
                return Ok(None);
            };
            send_json(control, &EvaluatorToSupervisor::Started { version }, &[])?;
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
            let new_best =
                recorder.record(elapsed_s, &result, policy.weights(), obs_norm.as_ref())?;
            *last_evaluated = Some(version);
            send_json(
                control,
                &EvaluatorToSupervisor::Evaluated(EvalReport {
                    elapsed_s,
                    env_steps,
                    policy_version: version,
                    returns: result.returns,
                    new_best,
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
        let Some(latest) = block.latest_version() else {
            continue;
        };
        if last_evaluated.is_none_or(|v| latest > v) {
            evaluate_latest(&mut last_evaluated)?;
        }
    }
}
