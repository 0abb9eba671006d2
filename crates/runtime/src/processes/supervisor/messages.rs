//! What the supervisor reads from its processes and does about it.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rl_algo::algorithm::Stats;
use rl_ipc::channel::wait_any;
use rl_ipc::messages::{
    recv_json, EvaluatorToSupervisor, LearnerToSupervisor, SupervisorToEvaluator,
    SupervisorToLearner, UpdateReport, WorkerToSupervisor,
};
use rl_ipc::ChannelError;

use super::lifecycle::Target;
use super::{LearnerEnd, Phase, Supervisor, TICK};
use crate::error::RuntimeError;
use crate::processes::child::ChildHandle;
use crate::report::{EvalResult, Progress};

impl Supervisor<'_> {
    /// Waits up to a tick for any control message and handles what came.
    pub(super) fn wait_and_read(&mut self) -> Result<(), RuntimeError> {
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

    pub(super) fn read_learner(&mut self) -> Result<(), RuntimeError> {
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
                        match self.place.writes() {
                            true => self.ask_final_evaluation(),
                            // No evaluator on the other ranks: nothing
                            // more to ask of the learner.
                            false => self.send_to_learner(&SupervisorToLearner::Stop),
                        }
                    } else {
                        self.send_to_learner(&SupervisorToLearner::Stop);
                    }
                }
                LearnerToSupervisor::Stopped(report) => {
                    self.learner_report = Some(LearnerEnd::Stopped(report));
                    // A data-parallel learner stops when any rank's vote
                    // says so, a stop asked of another rank included.
                    if self.phase == Phase::Training {
                        self.send_to_evaluator(&SupervisorToEvaluator::Stop);
                        self.set_phase(Phase::Stopping);
                    }
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

    pub(super) fn ask_final_evaluation(&mut self) {
        if let Some(v) = self.final_version {
            self.send_to_evaluator(&SupervisorToEvaluator::Finish { final_version: v });
            self.finish_sent = Some(Instant::now());
        }
    }

    pub(super) fn on_update(&mut self, report: &UpdateReport) {
        self.progress = Progress {
            elapsed: Duration::from_secs_f64(report.elapsed_s),
            env_steps: report.env_steps,
            total_env_steps: report.total_env_steps,
            updates: report.updates,
            steps_per_s: report.steps_per_s,
            episode_return_mean: report.episode_return_mean,
            last_eval_return: self.progress.last_eval_return,
        };
        let stats = Stats(
            self.settings
                .stat_names()
                .iter()
                .zip(&report.stats)
                .map(|(name, v)| (*name, v.unwrap_or(f64::NAN)))
                .collect(),
        );
        self.observer.on_update(&self.progress, &stats);
    }

    pub(super) fn replace_worker(&mut self, worker: u32, generation: u32, reason: &str) {
        let Some(slot) = self.workers.get_mut(worker as usize) else {
            return;
        };
        if slot.generation != generation {
            return; // Already replaced.
        }
        let pid = slot.handle.as_ref().map(ChildHandle::pid);
        slot.replace_requested = true;
        let exited_already = slot.handle.is_none() && slot.restart_at.is_none();
        if let Some(handle) = &mut slot.handle {
            handle.kill();
        }
        if self.phase == Phase::Training {
            let pid = pid.map_or(String::new(), |p| format!(", pid {p}"));
            self.message(format!(
                "worker {worker} (generation {generation}{pid}) {reason}; replacing it"
            ));
            // Reaped before the learner's verdict came (it exited on its
            // own when the learner dropped it): replaced from here.
            if exited_already {
                self.workers[worker as usize].replace_requested = false;
                self.schedule_restart(
                    Target::Worker(worker as usize),
                    &format!("worker {worker} was dropped by the learner"),
                );
            }
        }
    }

    pub(super) fn read_evaluator(&mut self) -> Result<(), RuntimeError> {
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

    pub(super) fn read_worker(&mut self, k: usize) {
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
