//! The learner process: publishes weights, gathers one round of rollouts
//! (one per worker, all collected with those weights), runs the same PPO
//! update as the single-process loop, writes `train.csv` (and its
//! TensorBoard scalars), publishes the weights of each evaluation point for
//! the evaluator, and saves checkpoints: periodic, best (when the evaluator
//! says so), final, and on a stop.

use std::cell::Cell;
use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rl_algo::ppo::{PpoLearner, UpdateError, UpdateStats};
use rl_env::Registry;
use rl_ipc::messages::{
    recv_json, send_json, LearnerToSupervisor, RunReport, SupervisorToLearner, UpdateReport,
};
use rl_ipc::{Channel, ChannelError, WeightBlock};
use rl_policy::Rollout;

use crate::checkpoint::{Checkpoint, CheckpointKind};
use crate::child::{report_failure, ChildContext};
use crate::eval::next_eval_after;
use crate::memory::RETAINED_EVAL_POINTS;
use crate::pool::{PoolEvent, RolloutShape, WorkerPool};
use crate::record::{Checkpointer, TrainRecorder};
use crate::run_dir::RunDir;
use crate::trainer::{
    divergence_message, new_learner, spec_for, Progress, RecentReturns, RuntimeError,
};
use crate::worker::load_checkpoint;

/// How often the learner tells the supervisor it is alive while it waits
/// for workers or works through a long update.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Set by the supervisor's SIGUSR2, which follows its `Stop` message: the
/// update in progress is abandoned at the next minibatch.
static STOP_NOW: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: nix::libc::c_int) {
    STOP_NOW.store(true, Ordering::SeqCst);
}

/// Lets the supervisor interrupt an update (SIGUSR2, ignored until now:
/// see `child::spawn_child`).
fn listen_for_stop_signal() -> Result<(), RuntimeError> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe { sigaction(Signal::SIGUSR2, &action) }
        .map(|_| ())
        .map_err(|e| RuntimeError::Setup(format!("cannot handle SIGUSR2: {e}")))
}

/// A heartbeat, if the last one (sent at `last`) is [`HEARTBEAT`] old.
fn heartbeat(control: &Channel, last: &Cell<Instant>) -> Result<(), RuntimeError> {
    if last.get().elapsed() < HEARTBEAT {
        return Ok(());
    }
    last.set(Instant::now());
    send_informational(control, &LearnerToSupervisor::Heartbeat)
}

/// Sends a message the supervisor may do without (progress, heartbeats)
/// without waiting: a supervisor that is not reading never stalls training.
fn send_informational(
    control: &Channel,
    message: &LearnerToSupervisor,
) -> Result<(), RuntimeError> {
    let bytes = serde_json::to_vec(message).map_err(|e| RuntimeError::Failed(e.to_string()))?;
    match control.send_within(&bytes, &[], Duration::ZERO) {
        Ok(()) | Err(ChannelError::SendBlocked(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

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

/// The learner process's state between messages.
struct Learner<'a> {
    control: &'a Channel,
    learner: PpoLearner,
    pool: WorkerPool,
    checkpointer: Checkpointer,
    recent: RecentReturns,
    /// The state at recent evaluation points, oldest first.
    retained: VecDeque<Checkpoint>,
    start_unix_s: f64,
    /// Seconds of training before this process (a resumed run).
    train_before_s: f64,
    started: Option<Instant>,
    buf: Vec<u8>,
    /// When the last heartbeat went out.
    last_heartbeat: Cell<Instant>,
}

impl Learner<'_> {
    fn elapsed_s(&self) -> f64 {
        (crate::child::unix_now() - self.start_unix_s).max(0.0)
    }

    fn train_s(&self) -> f64 {
        self.train_before_s + self.started.map_or(0.0, |s| s.elapsed().as_secs_f64())
    }

    fn checkpoint(&self, kind: CheckpointKind) -> Checkpoint {
        self.checkpointer.build(
            kind,
            &self.learner,
            self.pool.snapshots(),
            (self.elapsed_s(), self.train_s()),
            self.recent.to_vec(),
        )
    }

    fn heartbeat(&self) -> Result<(), RuntimeError> {
        heartbeat(self.control, &self.last_heartbeat)
    }

    fn warn(&self, message: String) -> Result<(), RuntimeError> {
        Ok(send_json(
            self.control,
            &LearnerToSupervisor::Warning { message },
            &[],
        )?)
    }

    /// Passes pool events on: replacements to the supervisor; a rejoined
    /// worker's envs start new episodes, so their running discounted
    /// returns (reward scaling) restart from zero.
    fn report_events(&mut self, events: Vec<PoolEvent>) -> Result<(), RuntimeError> {
        for event in events {
            match event {
                PoolEvent::Replace {
                    worker,
                    generation,
                    reason,
                } => send_json(
                    self.control,
                    &LearnerToSupervisor::ReplaceWorker {
                        worker,
                        generation,
                        reason,
                    },
                    &[],
                )?,
                PoolEvent::Rejoined { worker, .. } => {
                    if let Some(scaler) = &mut self.learner.reward_scaler {
                        for env in self.pool.env_range(worker) {
                            scaler.returns[env] = 0.0;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads one supervisor message; true when it asks to stop.
    fn handle_control(&mut self) -> Result<bool, RuntimeError> {
        let (message, fds) = match recv_json::<SupervisorToLearner>(
            self.control,
            &mut self.buf,
            Some(Duration::ZERO),
        ) {
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
                self.pool
                    .join(worker, generation, fd)
                    .map_err(RuntimeError::Failed)?;
                Ok(false)
            }
            SupervisorToLearner::Checkpoint => {
                // Between updates: the state and the committed snapshots
                // belong together.
                let path = self
                    .checkpointer
                    .write(&self.checkpoint(CheckpointKind::Periodic))?;
                send_json(
                    self.control,
                    &LearnerToSupervisor::Saved {
                        path: path.display().to_string(),
                    },
                    &[],
                )?;
                Ok(false)
            }
            SupervisorToLearner::SaveBest { version } => {
                match self.retained.iter().find(|c| c.learner.updates_done == version) {
                    Some(state) => {
                        let best = Checkpoint {
                            kind: CheckpointKind::Best,
                            ..state.clone()
                        };
                        self.checkpointer.write(&best)?;
                    }
                    None => self.warn(format!(
                        "the best evaluation so far is of version {version}, which the learner no longer holds (the evaluator is more than {RETAINED_EVAL_POINTS} evaluations behind): checkpoints/best.safetensors is not updated; best_policy.safetensors is"
                    ))?,
                }
                Ok(false)
            }
        }
    }

    /// Waits until every worker delivered this round's rollout, or a stop.
    fn gather_round(&mut self) -> Result<RoundEnd, RuntimeError> {
        loop {
            if self.pool.round_complete() {
                return Ok(RoundEnd::Complete);
            }
            let (control_ready, events) = self
                .pool
                .poll(Some(self.control.as_fd()), Duration::from_millis(200))?;
            self.report_events(events)?;
            self.heartbeat()?;
            if control_ready && self.handle_control()? {
                return Ok(RoundEnd::StopRequested);
            }
        }
    }
}

fn learn(registry: &Registry, context: &mut ChildContext) -> Result<(), RuntimeError> {
    let settings = context.settings.clone();
    let run_dir = RunDir::existing(&context.run_dir)?;
    let spec = spec_for(registry, &settings)?;
    let mut eval_block = context
        .extra_fds
        .pop()
        .map(WeightBlock::open)
        .transpose()?
        .ok_or_else(|| RuntimeError::Setup("the setup carried no evaluation block".into()))?;
    let shape = RolloutShape {
        num_steps: settings.ppo.num_steps,
        envs_per_worker: settings.envs_per_worker(),
        obs_dim: spec.obs_dim,
        action_dim: spec.head.action_dim(),
    };
    let mut l = Learner {
        control: &context.control,
        learner: new_learner(&settings, &spec)?,
        pool: WorkerPool::new(
            settings.run.num_workers,
            shape,
            Duration::from_secs_f64(settings.run.worker_timeout_s),
        ),
        checkpointer: Checkpointer::new(&run_dir, &settings, &spec),
        recent: RecentReturns::default(),
        retained: VecDeque::new(),
        start_unix_s: context.start_unix_s,
        train_before_s: 0.0,
        started: None,
        buf: Vec::new(),
        last_heartbeat: Cell::new(Instant::now()),
    };
    listen_for_stop_signal()?;
    if let Some(path) = &context.resume {
        let checkpoint = load_checkpoint(path)?;
        l.learner
            .restore(&checkpoint.learner)
            .map_err(|e| RuntimeError::Setup(format!("{path}: {e}")))?;
        l.recent = RecentReturns::from_returns(&checkpoint.recent_returns);
        l.train_before_s = checkpoint.train_s;
    }
    let mut train =
        TrainRecorder::new(&run_dir, run_dir.append_train_csv()?, context.start_unix_s)?;
    // The weight block is this process's to write; the others only read it.
    let block = &mut context.block;
    send_json(l.control, &LearnerToSupervisor::Ready, &[])?;

    let steps_per_update = settings.steps_per_update();
    let num_updates = l.learner.num_updates;
    let total_env_steps = num_updates * steps_per_update;
    let interval = settings.eval.interval_steps;
    let mut next_eval = next_eval_after(l.learner.updates_done * steps_per_update, interval);
    let mut merged = Rollout::default();
    let mut stats_buf = Vec::new();
    let mut stopped = false;
    let mut diverged = None;
    let mut final_checkpoint: Option<PathBuf> = None;
    while l.learner.updates_done < num_updates {
        publish(block, &l.learner, &mut stats_buf)?;
        let events = l.pool.start_round(l.learner.updates_done);
        l.report_events(events)?;
        l.started.get_or_insert_with(Instant::now);
        if let RoundEnd::StopRequested = l.gather_round()? {
            stopped = true;
            break;
        }
        l.pool
            .merge_into(&mut merged)
            .map_err(RuntimeError::Failed)?;
        let abandon = || {
            // Between minibatches: a stop ends the update, and a long one
            // still says it is alive.
            let _ = heartbeat(l.control, &l.last_heartbeat);
            STOP_NOW.load(Ordering::SeqCst)
        };
        let result = l.learner.update(&merged, &abandon);
        let stats = match result {
            Ok(stats) => stats,
            Err(UpdateError::Abandoned) => {
                stopped = true;
                break;
            }
            Err(UpdateError::Diverged(divergence)) => {
                // Back at the state before this update, which the snapshots
                // not yet committed belong with: saved below.
                diverged = Some(divergence);
                break;
            }
        };
        l.pool.commit_round();
        l.recent.extend(&merged.episodes);
        let env_steps = l.learner.updates_done * steps_per_update;
        let progress = Progress {
            elapsed: Duration::from_secs_f64(l.elapsed_s()),
            env_steps,
            total_env_steps,
            updates: l.learner.updates_done,
            steps_per_s: env_steps as f64 / l.train_s().max(1e-9),
            episode_return_mean: l.recent.mean(),
            last_eval_return: None,
        };
        train.record(&progress, &stats)?;
        let last = l.learner.updates_done == num_updates;
        // An evaluation point: the evaluator's weights, and the state kept
        // in case they turn out the best.
        if env_steps >= next_eval || last {
            publish(&mut eval_block, &l.learner, &mut stats_buf)?;
            if l.retained.len() == RETAINED_EVAL_POINTS {
                l.retained.pop_front();
            }
            let state = l.checkpoint(CheckpointKind::Best);
            l.retained.push_back(state);
            next_eval = next_eval_after(env_steps, interval);
        }
        if last {
            final_checkpoint = Some(l.checkpointer.write(&l.checkpoint(CheckpointKind::Final))?);
        } else if l.checkpointer.due(l.learner.updates_done) {
            l.checkpointer
                .write(&l.checkpoint(CheckpointKind::Periodic))?;
        }
        send_progress(l.control, &progress, &stats, l.pool.rejected)?;
        // A stop that arrived during the update: the update is done, stop now.
        if l.control.wait_readable(Duration::ZERO)? && l.handle_control()? {
            stopped = true;
            break;
        }
    }
    if stopped || diverged.is_some() {
        final_checkpoint = Some(l.checkpointer.write(&l.checkpoint(CheckpointKind::Stop))?);
    }
    l.pool.stop_all();
    let policy = run_dir.write_policy(
        &spec,
        &settings.env.id,
        &l.learner.policy_weights(),
        l.learner.obs_norm.as_ref(),
    )?;
    if let Some(divergence) = diverged {
        let message = divergence_message(
            &divergence,
            run_dir.path(),
            &policy,
            final_checkpoint.as_deref(),
            l.learner.updates_done,
        );
        send_json(l.control, &LearnerToSupervisor::Diverged { message }, &[])?;
        return Ok(());
    }
    // Sent only now: the files it names are written and synced.
    let report = RunReport {
        env_steps: l.learner.updates_done * steps_per_update,
        updates: l.learner.updates_done,
        rejected_messages: l.pool.rejected,
        policy_file: policy.display().to_string(),
        checkpoint: final_checkpoint.map(|p| p.display().to_string()),
    };
    let message = if stopped {
        LearnerToSupervisor::Stopped(report)
    } else {
        LearnerToSupervisor::Finished(report)
    };
    send_json(l.control, &message, &[])?;
    // Best-checkpoint requests for the last evaluations may still come:
    // answer them until the supervisor says `Stop` (or is gone).
    loop {
        if !l.control.wait_readable(Duration::from_secs(3600))? {
            continue;
        }
        match l.handle_control() {
            Ok(true) | Err(RuntimeError::Failed(_)) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Sends the update's progress; informational, so a supervisor that is not
/// reading (a stopped terminal) never stalls training.
fn send_progress(
    control: &Channel,
    progress: &Progress,
    stats: &UpdateStats,
    rejected: u64,
) -> Result<(), RuntimeError> {
    let report = UpdateReport {
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
    };
    send_informational(control, &LearnerToSupervisor::Updated(report))
}
