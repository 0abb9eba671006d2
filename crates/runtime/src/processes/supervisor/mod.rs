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

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rl_algo::ppo::UpdateStats;
use rl_env::seeds::replacement_seed;
use rl_env::Registry;
use rl_ipc::channel::wait_any;
use rl_ipc::messages::{
    recv_json, send_json, EvaluatorToSupervisor, LearnerToSupervisor, RoleSetup, RunReport, Setup,
    SupervisorToEvaluator, SupervisorToLearner, UpdateReport, WorkerToSupervisor,
};
use rl_ipc::{Channel, ChannelError, WeightBlock};

use crate::clock::unix_now;
use crate::error::RuntimeError;
use crate::processes::child::{spawn_child, ChildHandle};
use crate::report::{Ending, EvalResult, Observer, Progress, Requests, TrainSummary};
use crate::settings::TrainSettings;
use crate::spec::spec_for;
use crate::storage::checkpoint::ResumeFrom;
use crate::storage::checkpoint_dir::newest_checkpoint_note;
use crate::storage::run_dir::{remove_stale_temporaries, RunDir};
use crate::training::published::PublishedPolicy;

/// How long the learner may take to start (loading libtorch, initialising
/// CUDA); its death is noticed at once regardless.
const LEARNER_START: Duration = Duration::from_secs(300);
/// How long the learner gets to save and exit once told to stop (it
/// abandons its update at the next minibatch): with the workers' and the
/// evaluator's exits, a stop ends well inside the 30 s a cluster scheduler
/// (Slurm's default `KillWait`) or a service manager gives after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// How long workers and the evaluator get to exit on their own once told to.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// The longest wait between restarts of one process.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the supervisor looks at its processes when nothing happens.
const TICK: Duration = Duration::from_millis(50);
/// A pass of the supervisor's loop that took longer than this means the
/// supervisor itself was stopped (Ctrl-Z, SIGSTOP) or starved: its
/// deadlines move on by the time it missed, so nobody is blamed for it.
const SUSPENDED: Duration = Duration::from_secs(2);

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
        }
    }
}

struct Supervisor<'a> {
    settings: &'a TrainSettings,
    run_dir: &'a RunDir,
    observer: &'a mut dyn Observer,
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
pub fn train_multi_process(
    registry: &Registry,
    settings: &TrainSettings,
    run_dir: &RunDir,
    resume: Option<&ResumeFrom>,
    requests: &Requests,
    observer: &mut dyn Observer,
) -> Result<TrainSummary, RuntimeError> {
    let spec = spec_for(registry, settings)?;
    let published = PublishedPolicy::new(&spec, settings.ppo.normalize_obs);
    // Every version for the workers; evaluation points for the evaluator.
    let block = published.create_block(spec.layout().total_len)?;
    let eval_block = published.create_block(spec.layout().total_len)?;
    let elapsed = match resume {
        None => {
            run_dir.create_csv_files()?;
            0.0
        }
        Some(from) => from.checkpoint.elapsed_s,
    };
    let num_updates = settings.ppo.num_updates(settings.env.num_envs);
    let mut supervisor = Supervisor {
        settings,
        run_dir,
        observer,
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
        evaluator_done: false,
        evaluating: None,
        finish_sent: None,
        total_restarts: 0,
        phase: Phase::Training,
        phase_since: Instant::now(),
        progress: Progress {
            elapsed: Duration::ZERO,
            env_steps: 0,
            total_env_steps: num_updates * settings.steps_per_update(),
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
    supervisor.remove_temporary_files();
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
        let learner = spawn_child(
            "learner",
            &run_dir,
            &self.setup(RoleSetup::Learner),
            &[self.block.fd(), self.eval_block.fd()],
        )?;
        self.learner = Some(learner);
        // Every process starts at once (each loads the executable and its
        // libraries): the workers' channels wait in the learner's control
        // channel until it reads them.
        for k in 0..self.settings.run.num_workers {
            let handle = self.spawn_worker(k as u32, 0)?;
            self.workers
                .push(Restartable::new(format!("worker {k}"), Some(handle)));
        }
        self.evaluator.handle = Some(self.spawn_evaluator(0)?);
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
        let role = RoleSetup::Worker {
            worker,
            generation,
            first_env_index: (worker as usize * per_worker) as u64,
            num_envs: per_worker as u32,
            seed: replacement_seed(self.settings.run.seed, generation),
        };
        let handle = spawn_child(
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
        let role = RoleSetup::Evaluator { generation };
        spawn_child(
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
        if let Some(learner) = &self.learner {
            let pid = nix::unistd::Pid::from_raw(learner.pid() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2);
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

    /// Moves every deadline on by `by` (see [`SUSPENDED`]).
    fn postpone_deadlines(&mut self, by: Duration) {
        self.learner_heard += by;
        self.phase_since += by;
        if let Some((_, since)) = &mut self.evaluating {
            *since += by;
        }
        if let Some(sent) = &mut self.finish_sent {
            *sent += by;
        }
    }

    /// A stuck learner ends the run; a stuck evaluation is abandoned.
    fn check_deadlines(&mut self) {
        let learner_timeout = Duration::from_secs_f64(self.settings.run.learner_timeout_s);
        if self.phase == Phase::Training
            && self.learner.is_some()
            && self.learner_report.is_none()
            && self.learner_heard.elapsed() > learner_timeout
        {
            let state = self
                .learner
                .as_ref()
                .and_then(|l| process_state(l.pid()))
                .map_or(String::new(), |s| format!(" (its process is {s})"));
            self.give_up(
                format!(
                    "the learner made no progress for {:.0} s ([run] learner_timeout_s){state}; stopping the run",
                    learner_timeout.as_secs_f64()
                ),
                false,
            );
        }
        let eval_timeout = Duration::from_secs_f64(self.settings.eval.timeout_s);
        if let Some((version, since)) = self.evaluating {
            if self.phase == Phase::Training && since.elapsed() > eval_timeout {
                self.evaluating = None;
                self.message(format!(
                    "the evaluation of version {version} took more than {:.0} s ([eval] timeout_s); replacing the evaluator",
                    eval_timeout.as_secs_f64()
                ));
                if let Some(h) = &mut self.evaluator.handle {
                    h.kill();
                }
            }
        }
        // From the request (or from the end of training, while a
        // replacement evaluator is not yet there to ask).
        if self.phase == Phase::Finishing
            && !self.evaluator_done
            && self.finish_sent.unwrap_or(self.phase_since).elapsed() > eval_timeout
        {
            self.message(format!(
                "warning: the final evaluation did not finish within {:.0} s ([eval] timeout_s); the run ends without it",
                eval_timeout.as_secs_f64()
            ));
            self.evaluator_done = true;
            self.evaluator.restart_at = None;
            if let Some(h) = &mut self.evaluator.handle {
                h.kill();
            }
            self.send_to_learner(&SupervisorToLearner::Stop);
        }
        // A learner told to stop that does not exit in time is killed: what
        // it had not saved is lost, and the summary says so.
        if matches!(self.phase, Phase::Stopping | Phase::GivingUp { .. })
            && self.phase_since.elapsed() > STOP_DEADLINE
        {
            if let Some(learner) = self.learner.as_mut().filter(|_| !self.learner_killed) {
                learner.kill();
                self.learner_killed = true;
                if self.learner_report.is_none() {
                    self.message(format!(
                        "the learner did not save and exit within {} s of being told to stop; it was killed",
                        STOP_DEADLINE.as_secs()
                    ));
                }
            }
        }
    }

    /// Waits up to a tick for any control message and handles what came.
    fn wait_and_read(&mut self) -> Result<(), RuntimeError> {
        let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
        let mut who: Vec<Option<usize>> = Vec::new(); // None: learner; Some(n): worker n; Some(MAX): evaluator
        if let Some(l) = &self.learner {
            fds.push(l.control.as_fd());
            who.push(None);
        }
        if let Some(e) = &self.evaluator.handle {
            fds.push(e.control.as_fd());
            who.push(Some(usize::MAX));
        }
        for (k, w) in self.workers.iter().enumerate() {
            if let Some(h) = &w.handle {
                fds.push(h.control.as_fd());
                who.push(Some(k));
            }
        }
        let ready = wait_any(&fds, TICK)?;
        drop(fds);
        for (who, ready) in who.into_iter().zip(ready) {
            if !ready {
                continue;
            }
            match who {
                None => self.read_learner()?,
                Some(usize::MAX) => self.read_evaluator()?,
                Some(k) => self.read_worker(k),
            }
        }
        Ok(())
    }

    fn read_learner(&mut self) -> Result<(), RuntimeError> {
        while let Some(message) = next_message(self.learner.as_ref(), &mut self.buf)? {
            self.learner_heard = Instant::now();
            match message {
                LearnerToSupervisor::Ready | LearnerToSupervisor::Heartbeat => {}
                LearnerToSupervisor::Updated(report) => self.on_update(&report),
                LearnerToSupervisor::ReplaceWorker {
                    worker,
                    generation,
                    reason,
                } => self.replace_worker(worker, generation, &reason),
                LearnerToSupervisor::Saved { path } => {
                    self.message(format!("checkpoint written: {path}"));
                }
                LearnerToSupervisor::Finished(report) => {
                    self.final_version = Some(report.updates);
                    self.learner_report = Some(LearnerEnd::Finished(report));
                    if self.phase == Phase::Training {
                        self.set_phase(Phase::Finishing);
                        self.ask_final_evaluation();
                    } else {
                        self.send_to_learner(&SupervisorToLearner::Stop);
                    }
                }
                LearnerToSupervisor::Stopped(report) => {
                    self.learner_report = Some(LearnerEnd::Stopped(report));
                    // Nothing more to ask of it: let it exit.
                    self.send_to_learner(&SupervisorToLearner::Stop);
                }
                LearnerToSupervisor::Warning { message } => {
                    self.message(format!("learner: {message}"));
                }
                LearnerToSupervisor::Failed { message } => {
                    self.learner_failure = Some(message);
                }
                LearnerToSupervisor::Diverged { message } => {
                    self.send_to_evaluator(&SupervisorToEvaluator::Stop);
                    self.learner_diverged = Some(message);
                }
            }
        }
        Ok(())
    }

    fn ask_final_evaluation(&mut self) {
        if let Some(v) = self.final_version {
            self.send_to_evaluator(&SupervisorToEvaluator::Finish { final_version: v });
            self.finish_sent = Some(Instant::now());
        }
    }

    fn on_update(&mut self, report: &UpdateReport) {
        self.progress = Progress {
            elapsed: Duration::from_secs_f64(report.elapsed_s),
            env_steps: report.env_steps,
            total_env_steps: report.total_env_steps,
            updates: report.updates,
            steps_per_s: report.steps_per_s,
            episode_return_mean: report.episode_return_mean,
            last_eval_return: self.progress.last_eval_return,
        };
        let stats = UpdateStats {
            policy_loss: report.policy_loss,
            value_loss: report.value_loss,
            entropy: report.entropy,
            approx_kl: report.approx_kl,
            old_approx_kl: f64::NAN,
            clip_frac: report.clip_frac,
            explained_variance: report.explained_variance,
            learning_rate: report.learning_rate,
            clip_coef: f64::NAN,
            epochs: 0,
        };
        self.observer.on_update(&self.progress, &stats);
    }

    fn replace_worker(&mut self, worker: u32, generation: u32, reason: &str) {
        let Some(slot) = self.workers.get_mut(worker as usize) else {
            return;
        };
        if slot.generation != generation {
            return; // Already replaced.
        }
        let pid = slot.handle.as_ref().map(ChildHandle::pid);
        if let Some(handle) = &mut slot.handle {
            handle.kill();
        }
        if self.phase == Phase::Training {
            let pid = pid.map_or(String::new(), |p| format!(", pid {p}"));
            self.message(format!(
                "worker {worker} (generation {generation}{pid}) {reason}; replacing it"
            ));
        }
    }

    fn read_evaluator(&mut self) -> Result<(), RuntimeError> {
        while let Some(message) = next_message(self.evaluator.handle.as_ref(), &mut self.buf)? {
            match message {
                EvaluatorToSupervisor::Ready => {
                    // A replacement evaluator that starts after training ended.
                    if self.phase == Phase::Finishing && !self.evaluator_done {
                        self.ask_final_evaluation();
                    }
                }
                EvaluatorToSupervisor::Started { version } => {
                    self.evaluating = Some((version, Instant::now()));
                }
                EvaluatorToSupervisor::Evaluated(report) => {
                    self.evaluating = None;
                    if report.new_best {
                        self.send_to_learner(&SupervisorToLearner::SaveBest {
                            version: report.policy_version,
                        });
                    }
                    let result = EvalResult {
                        env_steps: report.env_steps,
                        policy_version: report.policy_version,
                        returns: report.returns,
                    };
                    let mean = result.mean();
                    self.progress.last_eval_return = Some(mean);
                    self.progress.elapsed = Duration::from_secs_f64(report.elapsed_s);
                    self.observer.on_eval(&self.progress, &result);
                    self.last_eval = Some(result);
                }
                EvaluatorToSupervisor::Done => {
                    self.evaluator_done = true;
                    // Every best-checkpoint request is in: the learner may exit.
                    self.send_to_learner(&SupervisorToLearner::Stop);
                }
                EvaluatorToSupervisor::Failed { message } => {
                    self.message(format!("the evaluator failed: {message}"));
                }
            }
        }
        Ok(())
    }

    fn read_worker(&mut self, k: usize) {
        let handle = self.workers[k].handle.as_ref();
        let message = match next_message(handle, &mut self.buf) {
            Ok(Some(message)) => message,
            _ => return,
        };
        let generation = self.workers[k].generation;
        match message {
            WorkerToSupervisor::Failed { message } => {
                self.message(format!(
                    "worker {k} (generation {generation}) failed: {message}"
                ));
                let slot = &mut self.workers[k];
                let again = slot.last_failure.as_deref() == Some(message.as_str());
                slot.last_failure = Some(message.clone());
                if again && self.phase == Phase::Training {
                    self.give_up(
                        format!(
                            "worker {k} failed the same way twice in a row, so a replacement would too: {message}"
                        ),
                        false,
                    );
                }
            }
            WorkerToSupervisor::Diverged { message } => {
                self.give_up(format!("worker {k}: {message}"), true);
            }
        }
    }

    /// Collects exited processes; schedules restarts; a learner that exits
    /// before it reported an end fails the run.
    fn reap(&mut self) -> Result<(), RuntimeError> {
        if let Some(learner) = &mut self.learner {
            if let Some(status) = learner.process.try_wait().map_err(io_error)? {
                // Read whatever it said last (Finished, Stopped, Failed).
                self.read_learner()?;
                self.learner = None;
                if let Some(message) = self.learner_diverged.take() {
                    return Err(RuntimeError::Diverged(message));
                }
                if self.learner_report.is_none() {
                    let why = match (&self.phase, self.learner_failure.take()) {
                        // The run's own end says what was and was not saved.
                        (Phase::GivingUp { .. }, _) => None,
                        (Phase::Stopping, None) if self.learner_killed => None,
                        (_, Some(message)) => Some(format!("the learner failed: {message}")),
                        (_, None) => {
                            Some(format!("the learner process died unexpectedly ({status})"))
                        }
                    };
                    if let Some(why) = why {
                        return Err(RuntimeError::Failed(format!(
                            "{why}; every process was stopped"
                        )));
                    }
                }
            }
        }
        let training = self.phase == Phase::Training;
        for k in 0..self.workers.len() {
            let slot = &mut self.workers[k];
            let Some(handle) = &mut slot.handle else {
                continue;
            };
            let Some(status) = handle.process.try_wait().map_err(io_error)? else {
                continue;
            };
            self.read_worker(k);
            let slot = &mut self.workers[k];
            slot.handle = None;
            if training && self.phase == Phase::Training {
                let label = slot.label.clone();
                self.schedule_restart(Target::Worker(k), &format!("{label} exited ({status})"));
            }
        }
        if let Some(handle) = &mut self.evaluator.handle {
            if let Some(status) = handle.process.try_wait().map_err(io_error)? {
                self.read_evaluator()?;
                self.evaluator.handle = None;
                self.evaluating = None;
                let expected = self.evaluator_done
                    || matches!(self.phase, Phase::Stopping | Phase::GivingUp { .. });
                if !expected {
                    self.schedule_restart(
                        Target::Evaluator,
                        &format!("the evaluator exited ({status})"),
                    );
                }
            }
        }
        Ok(())
    }

    fn schedule_restart(&mut self, target: Target, what: &str) {
        self.total_restarts += 1;
        let limit = self.settings.run.max_restarts;
        if self.total_restarts > limit {
            self.give_up(
                format!(
                    "{what}; that is {} restarts, more than [run] max_restarts = {limit}; stopping the run",
                    self.total_restarts
                ),
                false,
            );
            return;
        }
        let slot = match target {
            Target::Worker(k) => &mut self.workers[k],
            Target::Evaluator => &mut self.evaluator,
        };
        let base = self.settings.run.restart_backoff_s;
        let delay = Duration::from_secs_f64(base * 2f64.powi(slot.restarts.min(16) as i32))
            .min(MAX_BACKOFF);
        slot.restarts += 1;
        slot.restart_at = Some(Instant::now() + delay);
        if matches!(target, Target::Evaluator) {
            self.message(format!(
                "{what}; restarting it in {:.1} s",
                delay.as_secs_f64()
            ));
        }
    }

    fn restart_due(&mut self) -> Result<(), RuntimeError> {
        let now = Instant::now();
        let restarting = matches!(self.phase, Phase::Training | Phase::Finishing);
        for k in 0..self.workers.len() {
            let due = self.workers[k].restart_at.is_some_and(|t| t <= now);
            if !due {
                continue;
            }
            self.workers[k].restart_at = None;
            if self.phase != Phase::Training {
                continue;
            }
            let generation = self.workers[k].generation + 1;
            let handle = self.spawn_worker(k as u32, generation)?;
            self.workers[k].generation = generation;
            self.workers[k].handle = Some(handle);
        }
        if self.evaluator.restart_at.is_some_and(|t| t <= now) {
            self.evaluator.restart_at = None;
            if restarting && !self.evaluator_done {
                let generation = self.evaluator.generation + 1;
                self.evaluator.handle = Some(self.spawn_evaluator(generation)?);
                self.evaluator.generation = generation;
            }
        }
        Ok(())
    }

    /// The summary once the run is over, `None` while it goes on.
    fn finished(&mut self) -> Result<Option<TrainSummary>, RuntimeError> {
        let workers_running = self.workers.iter().any(|w| w.handle.is_some());
        let learner_gone = self.learner.is_none();
        let evaluator_gone = self.evaluator.handle.is_none();
        // Workers exit when the learner tells them or closes their channel;
        // past the grace period they are killed.
        if learner_gone && workers_running && self.phase_since.elapsed() > EXIT_GRACE {
            for w in &mut self.workers {
                if let Some(h) = &mut w.handle {
                    h.kill();
                }
            }
        }
        // A stopping evaluator gets the same grace for the evaluation it is in.
        let stopping = matches!(self.phase, Phase::Stopping | Phase::GivingUp { .. });
        if stopping && self.phase_since.elapsed() > EXIT_GRACE {
            if let Some(h) = &mut self.evaluator.handle {
                h.kill();
            }
        }
        let all_gone = learner_gone && !workers_running && evaluator_gone;
        match &self.phase {
            Phase::Training => Ok(None),
            Phase::Finishing => {
                let evaluation_over =
                    (self.evaluator_done || self.evaluator.restart_at.is_none()) && evaluator_gone;
                if learner_gone && !workers_running && evaluation_over {
                    Ok(Some(self.summary(Ending::Completed)))
                } else {
                    Ok(None)
                }
            }
            Phase::Stopping if all_gone => Ok(Some(self.summary(Ending::Interrupted))),
            Phase::GivingUp { message, diverged } if all_gone => {
                let saved = match &self.learner_report {
                    Some(end) => {
                        let r = end.report();
                        format!(
                            "; the weights after {} updates ({} env steps) are saved in {}{}",
                            r.updates,
                            r.env_steps,
                            r.policy_file,
                            r.checkpoint
                                .as_ref()
                                .map_or(String::new(), |c| format!(" and {c}"))
                        )
                    }
                    None => format!(
                        "; nothing was saved at the stop ({})",
                        newest_checkpoint_note(self.run_dir.path())
                    ),
                };
                let message = format!("{message}{saved}");
                Err(if *diverged {
                    RuntimeError::Diverged(message)
                } else {
                    RuntimeError::Failed(message)
                })
            }
            Phase::Stopping | Phase::GivingUp { .. } => Ok(None),
        }
    }

    fn summary(&self, ending: Ending) -> TrainSummary {
        let report = self.learner_report.as_ref().map(LearnerEnd::report);
        TrainSummary {
            ending,
            env_steps: report.map_or(self.progress.env_steps, |r| r.env_steps),
            updates: report.map_or(self.progress.updates, |r| r.updates),
            last_eval: self.last_eval.clone(),
            restarts: self.total_restarts,
            rejected_messages: report.map_or(0, |r| r.rejected_messages),
            policy_file: report.map(|r| r.policy_file.clone().into()),
            checkpoint: report.and_then(|r| r.checkpoint.clone().map(Into::into)),
        }
    }

    /// SIGKILLs every process still running and reaps them all (dropping a
    /// handle does both).
    fn kill_and_reap_all(&mut self) {
        self.learner = None;
        self.evaluator.handle = None;
        for w in &mut self.workers {
            w.handle = None;
            w.restart_at = None;
        }
        self.evaluator.restart_at = None;
    }

    /// Temporary files of atomic writes a killed process left behind.
    fn remove_temporary_files(&self) {
        remove_stale_temporaries(self.run_dir.path());
        remove_stale_temporaries(&self.run_dir.path().join("checkpoints"));
    }
}

/// A process's state in words, from `/proc` ("stopped (SIGSTOP or
/// Ctrl-Z)", "running"), for messages about a stuck process.
fn process_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    Some(
        match state {
            'T' | 't' => "stopped (SIGSTOP, or traced)",
            'D' => "waiting for the disk or the kernel (uninterruptible sleep)",
            'R' => "running",
            'S' => "sleeping",
            'Z' => "a zombie",
            _ => "in an unknown state",
        }
        .to_string(),
    )
}

/// The next message waiting on a child's control channel, if any (none
/// once the child has exited and everything it sent was read).
fn next_message<M: serde::de::DeserializeOwned>(
    child: Option<&ChildHandle>,
    buf: &mut Vec<u8>,
) -> Result<Option<M>, RuntimeError> {
    let Some(child) = child else {
        return Ok(None);
    };
    match recv_json::<M>(&child.control, buf, Some(Duration::ZERO)) {
        Ok((message, _)) => Ok(Some(message)),
        Err(ChannelError::Timeout(_) | ChannelError::Closed) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Worker(usize),
    Evaluator,
}

fn io_error(e: std::io::Error) -> RuntimeError {
    RuntimeError::Failed(format!("cannot watch a child process: {e}"))
}
