//! The learner process: publishes weights, gathers one round of rollouts
//! (one per worker, all collected with those weights), runs the same PPO
//! update as the single-process loop, writes `train.csv`, and at the end
//! (or when told to stop) the policy file.

use std::time::{Duration, Instant};

use rl_algo::ppo::{PpoLearner, UpdateStats};
use rl_env::Registry;
use rl_ipc::messages::{
    recv_json, send_json, LearnerToSupervisor, RunReport, SupervisorToLearner, UpdateReport,
};
use rl_ipc::{ChannelError, WeightBlock};

use rl_policy::Rollout;

use crate::child::{report_failure, ChildContext};
use crate::pool::{PoolEvent, RolloutShape, WorkerPool};
use crate::run_dir::RunDir;
use crate::trainer::{new_learner, spec_for, train_row, Progress, RecentReturns, RuntimeError};

/// The weights and observation statistics of `learner`, published as
/// version `updates_done`.
pub(crate) fn publish(
    block: &mut WeightBlock,
    learner: &PpoLearner,
    stats: &mut Vec<f64>,
) -> Result<(), RuntimeError> {
    stats.clear();
    if let Some(norm) = &learner.obs_norm {
        stats.extend_from_slice(&norm.stats.mean);
        stats.extend_from_slice(&norm.stats.var);
    }
    block.publish_with_stats(&learner.policy_weights(), stats, learner.updates_done)?;
    Ok(())
}

/// How a round ended.
enum RoundEnd {
    Complete,
    StopRequested,
}

pub(crate) fn run_learner(
    registry: &Registry,
    mut context: ChildContext,
) -> Result<(), RuntimeError> {
    let result = learn(registry, &mut context);
    report_failure(&context.control, result, |message| {
        LearnerToSupervisor::Failed { message }
    })
}

fn learn(registry: &Registry, context: &mut ChildContext) -> Result<(), RuntimeError> {
    let elapsed = {
        let start = context.start_unix_s;
        move || (crate::child::unix_now() - start).max(0.0)
    };
    let settings = &context.settings;
    let control = &context.control;
    let run_dir = RunDir::existing(&context.run_dir)?;
    let spec = spec_for(registry, settings)?;
    let mut learner = new_learner(settings, &spec)?;
    // The block is this process's to write; the others only read it.
    let block = &mut context.block;
    let mut train_csv = run_dir.append_train_csv()?;
    let shape = RolloutShape {
        num_steps: settings.ppo.num_steps,
        envs_per_worker: settings.envs_per_worker(),
        obs_dim: spec.obs_dim,
        action_dim: spec.head.action_dim(),
    };
    let mut pool = WorkerPool::new(
        settings.run.num_workers,
        shape,
        Duration::from_secs_f64(settings.run.worker_timeout_s),
    );
    send_json(control, &LearnerToSupervisor::Ready, &[])?;

    let steps_per_update = settings.steps_per_update();
    let total_env_steps = learner.num_updates * steps_per_update;
    let mut merged = Rollout::default();
    let mut stats_buf = Vec::new();
    let mut recent = RecentReturns::default();
    let mut buf = Vec::new();
    let mut started: Option<Instant> = None;
    let mut stopped = false;
    while learner.updates_done < learner.num_updates {
        publish(block, &learner, &mut stats_buf)?;
        let events = pool.start_round(learner.updates_done);
        report_events(control, &mut learner, &pool, events)?;
        started.get_or_insert_with(Instant::now);
        match gather_round(control, &mut pool, &mut learner, &mut buf)? {
            RoundEnd::StopRequested => {
                stopped = true;
                break;
            }
            RoundEnd::Complete => {}
        }
        pool.merge_into(&mut merged).map_err(RuntimeError::Failed)?;
        let stats = learner.update(&merged);
        recent.extend(&merged.episodes);
        let env_steps = learner.updates_done * steps_per_update;
        let train_s = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let progress = Progress {
            elapsed: Duration::from_secs_f64(elapsed()),
            env_steps,
            total_env_steps,
            updates: learner.updates_done,
            steps_per_s: env_steps as f64 / train_s.max(1e-9),
            episode_return_mean: recent.mean(),
            last_eval_return: None,
        };
        train_csv.row(&train_row(&progress, &stats))?;
        let report = update_report(&progress, &stats, pool.rejected);
        // Progress is informational: a supervisor that is not reading (a
        // stopped terminal) must not stall training.
        match control.send_within(
            &serde_json::to_vec(&LearnerToSupervisor::Updated(report))
                .map_err(|e| RuntimeError::Failed(e.to_string()))?,
            &[],
            Duration::ZERO,
        ) {
            Ok(()) | Err(ChannelError::SendBlocked(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // A stop that arrived during the update: the update is done, stop now.
        if control.wait_readable(Duration::ZERO)? && handle_control(control, &mut pool, &mut buf)? {
            stopped = true;
            break;
        }
    }
    // The final weights, for the evaluator's last evaluation.
    if !stopped {
        publish(block, &learner, &mut stats_buf)?;
    }
    pool.stop_all();
    run_dir.write_policy(
        &spec,
        &settings.env.id,
        &learner.policy_weights(),
        learner.obs_norm.as_ref(),
    )?;
    let report = RunReport {
        env_steps: learner.updates_done * steps_per_update,
        updates: learner.updates_done,
        rejected_messages: pool.rejected,
    };
    let message = if stopped {
        LearnerToSupervisor::Stopped(report)
    } else {
        LearnerToSupervisor::Finished(report)
    };
    send_json(control, &message, &[])?;
    Ok(())
}

fn update_report(progress: &Progress, stats: &UpdateStats, rejected: u64) -> UpdateReport {
    UpdateReport {
        elapsed_s: progress.elapsed.as_secs_f64(),
        env_steps: progress.env_steps,
        total_env_steps: progress.total_env_steps,
        updates: progress.updates,
        steps_per_s: progress.steps_per_s,
        episode_return_mean: progress.episode_return_mean,
        policy_loss: stats.policy_loss,
        value_loss: stats.value_loss,
        entropy: stats.entropy,
        approx_kl: stats.approx_kl,
        clip_frac: stats.clip_frac,
        explained_variance: stats.explained_variance,
        learning_rate: stats.learning_rate,
        rejected_messages: rejected,
    }
}

/// Passes pool events on: replacements to the supervisor; a rejoined
/// worker's envs start new episodes, so their running discounted returns
/// (reward scaling) restart from zero.
fn report_events(
    control: &rl_ipc::Channel,
    learner: &mut PpoLearner,
    pool: &WorkerPool,
    events: Vec<PoolEvent>,
) -> Result<(), RuntimeError> {
    for event in events {
        match event {
            PoolEvent::Replace {
                worker,
                generation,
                reason,
            } => send_json(
                control,
                &LearnerToSupervisor::ReplaceWorker {
                    worker,
                    generation,
                    reason,
                },
                &[],
            )?,
            PoolEvent::Rejoined { worker, .. } => {
                if let Some(scaler) = &mut learner.reward_scaler {
                    for env in pool.env_range(worker) {
                        scaler.returns[env] = 0.0;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Reads one supervisor message; true when it asks to stop.
fn handle_control(
    control: &rl_ipc::Channel,
    pool: &mut WorkerPool,
    buf: &mut Vec<u8>,
) -> Result<bool, RuntimeError> {
    let (message, fds) = match recv_json::<SupervisorToLearner>(control, buf, Some(Duration::ZERO))
    {
        Ok(received) => received,
        Err(ChannelError::Timeout(_)) => return Ok(false),
        Err(ChannelError::Closed) => {
            return Err(RuntimeError::Failed(
                "the supervisor closed the control channel".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    match message {
        SupervisorToLearner::Stop => Ok(true),
        SupervisorToLearner::WorkerJoined { worker, generation } => {
            let fd = fds.into_iter().next().ok_or_else(|| {
                RuntimeError::Failed(format!("worker {worker} joined without a data channel"))
            })?;
            pool.join(worker, generation, fd)
                .map_err(RuntimeError::Failed)?;
            Ok(false)
        }
    }
}

/// Waits until every worker delivered this round's rollout, or a stop.
fn gather_round(
    control: &rl_ipc::Channel,
    pool: &mut WorkerPool,
    learner: &mut PpoLearner,
    buf: &mut Vec<u8>,
) -> Result<RoundEnd, RuntimeError> {
    use std::os::fd::AsFd;
    loop {
        if pool.round_complete() {
            return Ok(RoundEnd::Complete);
        }
        let (control_ready, events) =
            pool.poll(Some(control.as_fd()), Duration::from_millis(200))?;
        report_events(control, learner, pool, events)?;
        if control_ready && handle_control(control, pool, buf)? {
            return Ok(RoundEnd::StopRequested);
        }
    }
}
