//! The learner process: the training loop ([`Trainer`]) with the worker
//! processes as its experience source, hosted by the supervisor. Its host
//! turns the supervisor's messages into commands, sends progress and
//! heartbeats without ever waiting on the supervisor, and publishes the
//! weights of each evaluation point for the evaluator process.

use std::cell::Cell;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rl_algo::algorithm::Stats;
use rl_env::Registry;
use rl_ipc::messages::{
    recv_json, send_json, ExchangeReport, LearnerToSupervisor, RunReport, SupervisorToLearner,
    UpdateReport,
};
use rl_ipc::{Channel, ChannelError, WeightBlock};

use crate::error::RuntimeError;
use crate::processes::child::{report_failure, ChildContext};
use crate::processes::relay::RelayExchange;
use crate::report::Progress;
use crate::spec::spec_and_action_space;
use crate::storage::checkpoint::read_checkpoint;
use crate::storage::run_dir::RunDir;
use crate::training::algorithm::new_algorithm;
use crate::training::host::{Command, Ended, EvalPoint, Host, Outcome};
use crate::training::pool::{ActionRange, RolloutShape, WorkerPool};
use crate::training::published::PublishedPolicy;
use crate::training::trainer::{DataParallel, Trainer};
use crate::training::worker_source::WorkerSource;

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

pub fn run_learner(
    registry: &Registry,
    mut context: ChildContext,
    place: DataParallel,
) -> Result<(), RuntimeError> {
    let result = learn(registry, &mut context, place);
    report_failure(&context.control, result, |message| {
        LearnerToSupervisor::Failed { message }
    })
}

/// The supervisor as the loop's host.
struct SupervisedHost<'a> {
    control: &'a Channel,
    eval_block: WeightBlock,
    published: PublishedPolicy,
    buf: Vec<u8>,
    /// When the last heartbeat went out.
    last_heartbeat: Cell<Instant>,
    /// Data-parallel ranks stop together, when an update votes (see
    /// `rl_algo::exchange`): a stop request only makes this rank's vote.
    data_parallel: bool,
    stop_requested: bool,
}

impl SupervisedHost<'_> {
    /// Sends a message the supervisor may do without (progress,
    /// heartbeats) without waiting: a supervisor that is not reading never
    /// stalls training.
    fn send_informational(&self, message: &LearnerToSupervisor) -> Result<(), RuntimeError> {
        let bytes = serde_json::to_vec(message).map_err(|e| RuntimeError::Failed(e.to_string()))?;
        match self.control.send_within(&bytes, &[], Duration::ZERO) {
            Ok(()) | Err(ChannelError::SendBlocked(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn send(&self, message: &LearnerToSupervisor) -> Result<(), RuntimeError> {
        Ok(send_json(self.control, message, &[])?)
    }

    /// One supervisor message as a command, waiting up to `wait`; `None`
    /// when none came (or the supervisor is gone: `closed`).
    fn receive(&mut self, wait: Duration) -> Result<Option<Command>, RuntimeError> {
        let (message, fds) =
            match recv_json::<SupervisorToLearner>(self.control, &mut self.buf, Some(wait)) {
                Ok(received) => received,
                Err(ChannelError::Timeout(_)) => return Ok(None),
                Err(ChannelError::Closed) => {
                    return Err(RuntimeError::Failed(
                        "the supervisor closed the control channel".into(),
                    ))
                }
                Err(e) => return Err(e.into()),
            };
        Ok(Some(match message {
            SupervisorToLearner::Stop => Command::Stop,
            SupervisorToLearner::Checkpoint => Command::Checkpoint,
            SupervisorToLearner::SaveBest { version } => Command::SaveBest { version },
            SupervisorToLearner::WorkerJoined { worker, generation } => {
                let channel = fds.into_iter().next().ok_or_else(|| {
                    RuntimeError::Failed(format!("worker {worker} joined without a data channel"))
                })?;
                Command::WorkerJoined {
                    worker,
                    generation,
                    channel,
                }
            }
        }))
    }
}

impl Host for SupervisedHost<'_> {
    fn poll(&mut self) -> Result<Vec<Command>, RuntimeError> {
        let mut commands = Vec::new();
        while let Some(command) = self.receive(Duration::ZERO)? {
            match command {
                Command::Stop if self.data_parallel => self.stop_requested = true,
                command => commands.push(command),
            }
        }
        Ok(commands)
    }

    fn command_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.control.as_fd())
    }

    fn stop_now(&self) -> bool {
        self.stop_requested || STOP_NOW.load(Ordering::SeqCst)
    }

    fn alive(&self) -> Result<(), RuntimeError> {
        if self.last_heartbeat.get().elapsed() < HEARTBEAT {
            return Ok(());
        }
        self.last_heartbeat.set(Instant::now());
        self.send_informational(&LearnerToSupervisor::Heartbeat)
    }

    fn updated(
        &mut self,
        progress: &Progress,
        stats: &Stats,
        rejected: u64,
    ) -> Result<(), RuntimeError> {
        let report = UpdateReport {
            elapsed_s: progress.elapsed.as_secs_f64(),
            env_steps: progress.env_steps,
            total_env_steps: progress.total_env_steps,
            updates: progress.updates,
            steps_per_s: progress.steps_per_s,
            episode_return_mean: progress.episode_return_mean,
            stats: stats
                .0
                .iter()
                .map(|(_, v)| v.is_finite().then_some(*v))
                .collect(),
            rejected_messages: rejected,
        };
        self.send_informational(&LearnerToSupervisor::Updated(report))
    }

    /// Published for the evaluator, which says through the supervisor
    /// when it is the best so far.
    fn evaluation_point(&mut self, point: &EvalPoint<'_>) -> Result<Vec<Command>, RuntimeError> {
        self.published.publish(
            &mut self.eval_block,
            point.weights,
            point.obs_norm,
            rl_policy::Exploration::default(),
            point.version,
        )?;
        Ok(Vec::new())
    }

    fn checkpoint_written(&mut self, path: &Path) -> Result<(), RuntimeError> {
        self.send(&LearnerToSupervisor::Saved {
            path: path.display().to_string(),
        })
    }

    fn warn(&mut self, message: String) -> Result<(), RuntimeError> {
        self.send(&LearnerToSupervisor::Warning { message })
    }

    fn replace_worker(
        &mut self,
        worker: u32,
        generation: u32,
        reason: String,
    ) -> Result<(), RuntimeError> {
        self.send(&LearnerToSupervisor::ReplaceWorker {
            worker,
            generation,
            reason,
        })
    }

    /// Sent only now: the files it names are written and synced.
    fn ended(&mut self, outcome: &Outcome) -> Result<(), RuntimeError> {
        let report = RunReport {
            env_steps: outcome.env_steps,
            updates: outcome.updates,
            rejected_messages: outcome.rejected,
            policy_file: outcome.policy_file.display().to_string(),
            checkpoint: outcome.checkpoint.as_ref().map(|p| p.display().to_string()),
            update_s: outcome.update_s,
            exchange: outcome.traffic.map(|t| ExchangeReport {
                calls: t.calls,
                seconds: t.seconds,
                bytes: t.bytes,
            }),
        };
        self.send(&match &outcome.ended {
            Ended::Completed => LearnerToSupervisor::Finished(report),
            Ended::Stopped => LearnerToSupervisor::Stopped(report),
            Ended::Diverged(message) => LearnerToSupervisor::Diverged {
                message: message.clone(),
            },
        })
    }

    fn next_command(&mut self) -> Result<Option<Command>, RuntimeError> {
        loop {
            match self.receive(Duration::from_secs(3600)) {
                Ok(Some(command)) => return Ok(Some(command)),
                Ok(None) => {}
                // The supervisor is gone: nothing more to serve.
                Err(RuntimeError::Failed(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

fn learn(
    registry: &Registry,
    context: &mut ChildContext,
    place: DataParallel,
) -> Result<(), RuntimeError> {
    let settings = context.settings.clone();
    // Rank 0's directory, which the other ranks' hosts may not even have:
    // only rank 0 writes there.
    let run_dir = match place.writes() {
        true => RunDir::existing(&context.run_dir)?,
        false => RunDir::elsewhere(context.run_dir.clone()),
    };
    let (spec, action_space) = spec_and_action_space(registry, &settings)?;
    let mut extra = std::mem::take(&mut context.extra_fds).into_iter();
    let eval_block = extra
        .next()
        .map(WeightBlock::open)
        .transpose()?
        .ok_or_else(|| RuntimeError::Setup("the setup carried no evaluation block".into()))?;
    // Under an MPI launcher (one rank included, which then exchanges with
    // itself, as the in-process rank does), the exchange channel.
    let exchange = extra
        .next()
        .map(|fd| {
            RelayExchange::new(
                place.rank,
                place.ranks,
                Channel::from_fd(fd),
                &context.control,
            )
        })
        .transpose()?;
    if place.ranks > 1 && exchange.is_none() {
        return Err(RuntimeError::Setup(
            "the setup carried no exchange channel".into(),
        ));
    }
    let data_parallel = exchange.is_some();
    // The weight block is this process's to write; the others only read it.
    let block = context
        .block
        .take()
        .ok_or_else(|| RuntimeError::Setup("the setup carried no weight block".into()))?;
    let actions = match (&action_space, spec.head) {
        (_, head) if head.is_discrete() => ActionRange::Index(head.size()),
        (rl_env::Space::Box(b), head) if head.is_off_policy() => {
            ActionRange::Within(b.low.clone(), b.high.clone())
        }
        _ => ActionRange::Any,
    };
    let shape = RolloutShape {
        actions,
        num_steps: settings.round_steps(),
        envs_per_worker: settings.envs_per_worker(),
        first_env: place.rank * settings.env.num_envs,
        obs_dim: spec.obs_dim,
        action_dim: spec.head.action_dim(),
        final_obs: spec.head.is_off_policy(),
    };
    let published = PublishedPolicy::new(&spec, settings.env.normalize_obs);
    let mut pool = WorkerPool::new(
        settings.run.num_workers,
        shape,
        Duration::from_secs_f64(settings.run.worker_timeout_s),
    );
    if settings.is_async() {
        pool = pool.collect_async(settings.run.max_policy_lag);
    }
    let mut source = WorkerSource::new(pool, block, published.clone());
    listen_for_stop_signal()?;
    let resume = match &context.resume {
        Some(path) => {
            let path = Path::new(path);
            Some((path, read_checkpoint(path).map_err(RuntimeError::Setup)?))
        }
        None => None,
    };
    let mut algorithm = new_algorithm(&settings, &spec, &action_space, place.local_rank)?;
    if let Some(exchange) = exchange {
        algorithm
            .set_exchange(Box::new(exchange))
            .map_err(RuntimeError::Setup)?;
    }
    let trainer = Trainer::new(
        &settings,
        &run_dir,
        spec.clone(),
        algorithm,
        resume.as_ref().map(|(p, c)| (*p, c)),
        context.start_unix_s,
        place,
    )?;
    let mut host = SupervisedHost {
        control: &context.control,
        eval_block,
        published,
        buf: Vec::new(),
        last_heartbeat: Cell::new(Instant::now()),
        data_parallel,
        stop_requested: false,
    };
    host.send(&LearnerToSupervisor::Ready)?;
    trainer.run(&mut source, &mut host)?;
    Ok(())
}
