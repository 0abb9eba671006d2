//! The supervisor: `train` itself when `[run] num_workers >= 1`. It holds no
//! tensors. It creates the weight block, starts the learner, the workers and
//! the evaluator, connects each worker to the learner, watches every process,
//! restarts workers and the evaluator when they fail (within
//! `[run] max_restarts`, with back-off), turns Ctrl-C and SIGTERM into an
//! orderly stop (a second one kills everything at once), and does not return
//! before every process it started has exited and been reaped.
//!
//! ```text
//! supervisor --Setup--> learner        (waits for Ready)
//! supervisor --Setup--> worker k       (its data channel attached)
//! supervisor --WorkerJoined{k}--> learner (the other end attached)
//! supervisor --Setup--> evaluator
//! ...
//! learner --ReplaceWorker{k, g}--> supervisor: kill g, start g + 1, WorkerJoined{k, g + 1}
//! learner --Finished--> supervisor --Finish{v}--> evaluator --Done--> supervisor
//! ```
//!
//! In a data-parallel run (`mpirun -np K`), every rank's `train` is such a
//! supervisor, with its own learner and workers; rank 0 alone has an
//! evaluator and writes the run directory. The supervisor is the MPI
//! process: it runs its learner's collectives on a relay thread
//! (`processes::relay`), and its learner stops only when an update's vote
//! says so (every rank then stops at the same minibatch).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rl_env::seeds::replacement_seed;
use rl_env::Registry;
use rl_ipc::messages::{
    recv_json, send_json, LearnerToSupervisor, RoleSetup, RunReport, Setup, SupervisorToEvaluator,
    SupervisorToLearner,
};
use rl_ipc::{Channel, ChannelError, WeightBlock};

use crate::clock::unix_now;
use crate::error::RuntimeError;
use crate::processes::child::{ChildHandle, ExeSpawner, Spawn};
use crate::processes::relay::Relay;
use crate::report::{Ending, EvalResult, Observer, Progress, Requests, TrainSummary};
use crate::settings::TrainSettings;
use crate::spec::spec_for;
use crate::storage::checkpoint::ResumeFrom;
use crate::storage::run_dir::{train_csv_header, RunDir};
use crate::training::in_process::Ranks;
use crate::training::published::PublishedPolicy;
use crate::training::trainer::DataParallel;

mod deadlines;
mod lifecycle;
mod messages;

/// How long the learner may take to start (loading libtorch, initialising
/// CUDA); its death is noticed at once regardless.
const LEARNER_START: Duration = Duration::from_secs(300);
/// How long the learner gets to save and exit once told to stop (it
/// abandons its update at the next minibatch): with the workers' and the
/// evaluator's exits, a stop ends well inside the 30 s a cluster scheduler
/// (Slurm's default `KillWait`) or a service manager gives after SIGTERM.
pub(super) const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// How long workers and the evaluator get to exit on their own once told to.
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(10);
/// The longest wait between restarts of one process.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the supervisor looks at its processes when nothing happens.
pub(super) const TICK: Duration = Duration::from_millis(50);
/// A pass of the supervisor's loop that took longer than this means the
/// supervisor itself was stopped (Ctrl-Z, SIGSTOP) or starved: its
/// deadlines move on by the time it missed, so nobody is blamed for it.
pub(super) const SUSPENDED: Duration = Duration::from_secs(2);

/// Where the run stands.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Training,
    /// The learner finished; the evaluator does the last evaluation.
    Finishing,
    /// A stop was requested (Ctrl-C, SIGTERM, SIGHUP); the learner saves
    /// and exits.
    Stopping,
    /// The run cannot go on (too many restarts, a stuck learner, a worker
    /// that fails the same way each time, a diverged policy): the learner
    /// saves and exits, then the run fails with `message`.
    GivingUp {
        message: String,
        diverged: bool,
    },
}

/// One restartable process (a worker or the evaluator).
struct Restartable {
    label: String,
    handle: Option<ChildHandle>,
    generation: u32,
    restarts: u32,
    restart_at: Option<Instant>,
    /// How its last process failed, as it said: the same failure from the
    /// next one means a replacement cannot help.
    last_failure: Option<String>,
    /// The learner asked for this process to be replaced.
    replace_requested: bool,
}

impl Restartable {
    fn new(label: String, handle: Option<ChildHandle>) -> Self {
        Restartable {
            label,
            handle,
            generation: 0,
            restarts: 0,
            restart_at: None,
            last_failure: None,
            replace_requested: false,
        }
    }
}

struct Supervisor<'a> {
    settings: &'a TrainSettings,
    /// This rank of a data-parallel run (0 of 1 without MPI).
    place: DataParallel,
    /// The learner's end of its exchange channel, until it is started.
    exchange_channel: Option<Channel>,
    run_dir: &'a RunDir,
    observer: &'a mut dyn Observer,
    spawner: &'a mut dyn Spawn,
    settings_json: String,
    start_unix_s: f64,
    resume: Option<String>,
    block: WeightBlock,
    eval_block: WeightBlock,
    learner: Option<ChildHandle>,
    learner_report: Option<LearnerEnd>,
    learner_failure: Option<String>,
    learner_diverged: Option<String>,
    /// Killed for not stopping within [`STOP_DEADLINE`].
    learner_killed: bool,
    /// When the learner last said anything (its progress deadline).
    learner_heard: Instant,
    workers: Vec<Restartable>,
    evaluator: Restartable,
    evaluator_done: bool,
    /// The evaluation in progress: its version and when it began.
    evaluating: Option<(u64, Instant)>,
    /// When the final evaluation was asked for.
    finish_sent: Option<Instant>,
    total_restarts: u32,
    phase: Phase,
    phase_since: Instant,
    progress: Progress,
    last_eval: Option<EvalResult>,
    final_version: Option<u64>,
    buf: Vec<u8>,
}

#[derive(Debug, Clone)]
enum LearnerEnd {
    Finished(RunReport),
    Stopped(RunReport),
}

impl LearnerEnd {
    fn report(&self) -> &RunReport {
        match self {
            LearnerEnd::Finished(r) | LearnerEnd::Stopped(r) => r,
        }
    }
}

/// Trains with separate learner, worker and evaluator processes (see the
/// module documentation) until the step budget is spent or a stop is
/// requested (the first stops in order, the second at once).
///
/// With `ranks`, this process is one rank of a data-parallel run: its
/// workers step global envs `rank * E ..`, its learner exchanges with the
/// other ranks at every minibatch through this process, and only rank 0
/// evaluates and writes the run directory. On resume every rank's workers
/// continue their envs from the checkpoint.
pub fn train_multi_process(
    registry: &Registry,
    settings: &TrainSettings,
    run_dir: &RunDir,
    resume: Option<&ResumeFrom>,
    requests: &Requests,
    observer: &mut dyn Observer,
    ranks: Option<Ranks>,
) -> Result<TrainSummary, RuntimeError> {
    let place = ranks.as_ref().map_or(DataParallel::ALONE, |r| r.place);
    let (relay, exchange_channel) = match ranks {
        Some(ranks) => {
            let (relay, channel) = Relay::start(ranks.exchange)?;
            (Some(relay), Some(channel))
        }
        None => (None, None),
    };
    let result = run_supervisor(
        registry,
        settings,
        run_dir,
        resume,
        requests,
        observer,
        &mut ExeSpawner,
        (place, exchange_channel),
    );
    // Every process is gone: the relay's channel is closed and it ends,
    // unless the learner was killed inside a collective.
    match relay.map(|r| r.finish(Duration::from_secs(5))) {
        Some(Err(e)) if result.is_ok() => Err(e),
        _ => result,
    }
}

/// [`train_multi_process`] with its children started by `spawner` (the
/// supervisor's tests play them over socket pairs).
pub fn train_with_spawner(
    registry: &Registry,
    settings: &TrainSettings,
    run_dir: &RunDir,
    resume: Option<&ResumeFrom>,
    requests: &Requests,
    observer: &mut dyn Observer,
    spawner: &mut dyn Spawn,
) -> Result<TrainSummary, RuntimeError> {
    run_supervisor(
        registry,
        settings,
        run_dir,
        resume,
        requests,
        observer,
        spawner,
        (DataParallel::ALONE, None),
    )
}

#[allow(clippy::too_many_arguments)]
fn run_supervisor(
    registry: &Registry,
    settings: &TrainSettings,
    run_dir: &RunDir,
    resume: Option<&ResumeFrom>,
    requests: &Requests,
    observer: &mut dyn Observer,
    spawner: &mut dyn Spawn,
    (place, exchange_channel): (DataParallel, Option<Channel>),
) -> Result<TrainSummary, RuntimeError> {
    let spec = spec_for(registry, settings)?;
    let published = PublishedPolicy::new(&spec, settings.env.normalize_obs);
    // Every version for the workers; evaluation points for the evaluator.
    let block = published.create_block(spec.layout().total_len)?;
    let eval_block = published.create_block(spec.layout().total_len)?;
    let elapsed = match resume {
        None => {
            if place.writes() {
                run_dir.create_csv_files(&train_csv_header(settings.stat_names()))?;
            }
            0.0
        }
        Some(from) => from.checkpoint.elapsed_s,
    };
    let steps_per_update = settings.steps_per_update() * place.ranks as u64;
    let num_updates = settings.num_updates_on(place.ranks);
    let mut supervisor = Supervisor {
        settings,
        place,
        exchange_channel,
        run_dir,
        observer,
        spawner,
        settings_json: settings.to_json(),
        start_unix_s: unix_now() - elapsed,
        resume: resume.map(|r| r.path.display().to_string()),
        block,
        eval_block,
        learner: None,
        learner_report: None,
        learner_failure: None,
        learner_diverged: None,
        learner_killed: false,
        learner_heard: Instant::now(),
        workers: Vec::new(),
        evaluator: Restartable::new("evaluator".into(), None),
        // Only rank 0 evaluates.
        evaluator_done: !place.writes(),
        evaluating: None,
        finish_sent: None,
        total_restarts: 0,
        phase: Phase::Training,
        phase_since: Instant::now(),
        progress: Progress {
            elapsed: Duration::ZERO,
            env_steps: 0,
            total_env_steps: num_updates * steps_per_update,
            updates: 0,
            steps_per_s: 0.0,
            episode_return_mean: None,
            last_eval_return: None,
        },
        last_eval: None,
        final_version: None,
        buf: Vec::new(),
    };
    let result = supervisor.run(requests);
    // Whatever happened, nothing we started outlives this call.
    supervisor.kill_and_reap_all();
    if place.writes() {
        supervisor.remove_temporary_files();
    }
    result
}

impl Supervisor<'_> {
    fn setup(&self, role: RoleSetup) -> Setup {
        Setup {
            run_dir: self.run_dir.path().display().to_string(),
            settings_json: self.settings_json.clone(),
            start_unix_s: self.start_unix_s,
            resume: self.resume.clone(),
            role,
        }
    }

    fn run(&mut self, requests: &Requests) -> Result<TrainSummary, RuntimeError> {
        let run_dir = self.run_dir.path().to_path_buf();
        let role = RoleSetup::Learner {
            rank: self.place.rank as u32,
            ranks: self.place.ranks as u32,
            local_rank: self.place.local_rank as u32,
        };
        let mut fds = vec![self.block.fd(), self.eval_block.fd()];
        if let Some(channel) = &self.exchange_channel {
            fds.push(channel.as_fd());
        }
        let learner = self
            .spawner
            .spawn("learner", &run_dir, &self.setup(role), &fds)?;
        drop(fds);
        // The learner holds its end now: once it exits, the relay sees the
        // channel close.
        self.exchange_channel = None;
        self.learner = Some(learner);
        // Every process starts at once (each loads the executable and its
        // libraries): the workers' channels wait in the learner's control
        // channel until it reads them.
        for k in 0..self.settings.run.num_workers {
            let handle = self.spawn_worker(k as u32, 0)?;
            self.workers
                .push(Restartable::new(format!("worker {k}"), Some(handle)));
        }
        if self.place.writes() {
            self.evaluator.handle = Some(self.spawn_evaluator(0)?);
        }
        if let Some(summary) = self.wait_for_learner(requests)? {
            return Ok(summary);
        }
        self.supervise(requests)
    }

    /// Waits for the learner's `Ready`; `Some` when a stop ended the run
    /// first.
    fn wait_for_learner(
        &mut self,
        requests: &Requests,
    ) -> Result<Option<TrainSummary>, RuntimeError> {
        let deadline = Instant::now() + LEARNER_START;
        loop {
            if requests.stops() > 0 {
                return Ok(Some(self.summary(Ending::Interrupted)));
            }
            let learner = self
                .learner
                .as_mut()
                .ok_or_else(|| RuntimeError::Failed("no learner".into()))?;
            if let Some(status) = learner.process.try_wait().map_err(io_error)? {
                return Err(RuntimeError::Failed(format!(
                    "the learner process exited while starting ({status})"
                )));
            }
            match recv_json::<LearnerToSupervisor>(&learner.control, &mut self.buf, Some(TICK)) {
                Ok((LearnerToSupervisor::Ready, _)) => {
                    self.learner_heard = Instant::now();
                    return Ok(None);
                }
                Ok((LearnerToSupervisor::Failed { message }, _)) => {
                    return Err(RuntimeError::Failed(format!(
                        "the learner failed to start: {message}"
                    )))
                }
                Ok((other, _)) => {
                    return Err(RuntimeError::Failed(format!(
                        "the learner sent {other:?} before it was ready"
                    )))
                }
                Err(ChannelError::Timeout(_)) => {}
                // The exit itself is reported on the next pass.
                Err(ChannelError::Closed) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(e.into()),
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Failed(format!(
                    "the learner did not start within {} s",
                    LEARNER_START.as_secs()
                )));
            }
        }
    }

    fn spawn_worker(&mut self, worker: u32, generation: u32) -> Result<ChildHandle, RuntimeError> {
        let per_worker = self.settings.envs_per_worker();
        let (learner_end, worker_end) = Channel::pair()?;
        let rank_envs = self.place.rank * self.settings.env.num_envs;
        let role = RoleSetup::Worker {
            worker,
            generation,
            first_env_index: (rank_envs + worker as usize * per_worker) as u64,
            num_envs: per_worker as u32,
            seed: replacement_seed(self.settings.run.seed, generation),
        };
        let handle = self.spawner.spawn(
            &format!("worker-{worker}"),
            self.run_dir.path(),
            &self.setup(role),
            &[self.block.fd(), worker_end.as_fd()],
        )?;
        drop(worker_end);
        let learner = self
            .learner
            .as_ref()
            .ok_or_else(|| RuntimeError::Failed("no learner to connect a worker to".into()))?;
        send_json(
            &learner.control,
            &SupervisorToLearner::WorkerJoined { worker, generation },
            &[learner_end.as_fd()],
        )?;
        Ok(handle)
    }

    fn spawn_evaluator(&mut self, generation: u32) -> Result<ChildHandle, RuntimeError> {
        let role = RoleSetup::Evaluator {
            generation,
            ranks: self.place.ranks as u32,
        };
        self.spawner.spawn(
            "evaluator",
            self.run_dir.path(),
            &self.setup(role),
            &[self.eval_block.fd()],
        )
    }

    fn message(&mut self, text: String) {
        self.observer.on_message(&format!("train: {text}"));
    }

    fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.phase_since = Instant::now();
    }

    fn send_to_learner(&mut self, message: &SupervisorToLearner) {
        if let Some(learner) = &self.learner {
            // A learner that cannot be told is noticed when it exits.
            let _ = send_json(&learner.control, message, &[]);
        }
    }

    fn send_to_evaluator(&mut self, message: &SupervisorToEvaluator) {
        if let Some(evaluator) = &self.evaluator.handle {
            let _ = send_json(&evaluator.control, message, &[]);
        }
    }

    /// Tells the learner to stop: the message, for when it waits, and
    /// SIGUSR2, which abandons an update in progress at its next minibatch.
    fn stop_learner(&mut self) {
        self.send_to_learner(&SupervisorToLearner::Stop);
        if let Some(learner) = &mut self.learner {
            learner.process.interrupt();
        }
    }

    /// Ends the run in order with an error: the learner saves and exits.
    fn give_up(&mut self, message: String, diverged: bool) {
        if matches!(self.phase, Phase::GivingUp { .. }) {
            return;
        }
        self.message(message.clone());
        self.stop_learner();
        self.send_to_evaluator(&SupervisorToEvaluator::Stop);
        self.set_phase(Phase::GivingUp { message, diverged });
    }

    fn supervise(&mut self, requests: &Requests) -> Result<TrainSummary, RuntimeError> {
        let mut handled_stops = 0;
        let mut handled_checkpoints = requests.checkpoints();
        let mut last_pass = Instant::now();
        loop {
            let stops = requests.stops();
            if stops >= 2 {
                self.message("second interrupt: stopping every process now".into());
                self.kill_and_reap_all();
                return Ok(self.summary(Ending::Interrupted));
            }
            if stops > handled_stops {
                handled_stops = stops;
                if matches!(self.phase, Phase::Training | Phase::Finishing) {
                    self.message(
                        "stopping: the learner saves the state after its last update (interrupt again to stop at once)".into(),
                    );
                    self.stop_learner();
                    self.send_to_evaluator(&SupervisorToEvaluator::Stop);
                    self.set_phase(Phase::Stopping);
                }
            }
            let checkpoints = requests.checkpoints();
            if checkpoints > handled_checkpoints {
                handled_checkpoints = checkpoints;
                if self.phase == Phase::Training {
                    self.send_to_learner(&SupervisorToLearner::Checkpoint);
                } else {
                    self.message("checkpoint request ignored: training is over".into());
                }
            }
            self.wait_and_read()?;
            self.reap()?;
            // A pass that took far longer than a tick: this process was
            // stopped or starved; its deadlines move on by what it missed
            // (measured right before they are checked).
            let gap = last_pass.elapsed();
            last_pass = Instant::now();
            if gap > SUSPENDED {
                self.postpone_deadlines(gap);
            }
            self.check_deadlines();
            self.restart_due()?;
            if let Some(summary) = self.finished()? {
                return Ok(summary);
            }
        }
    }
}

fn io_error(e: std::io::Error) -> RuntimeError {
    RuntimeError::Failed(format!("cannot watch a child process: {e}"))
}
