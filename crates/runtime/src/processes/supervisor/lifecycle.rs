//! Processes exiting, being restarted within `[run] max_restarts` with
//! back-off, and the end of the run: its summary or its error, and nothing
//! left running.

use std::time::{Duration, Instant};

use super::{io_error, LearnerEnd, Phase, Supervisor, EXIT_GRACE, MAX_BACKOFF};
use crate::error::RuntimeError;
use crate::report::{Ending, TrainSummary};
use crate::storage::checkpoint_dir::newest_checkpoint_note;
use crate::storage::run_dir::remove_stale_temporaries;

impl Supervisor<'_> {
    /// Collects exited processes; schedules restarts; a learner that exits
    /// before it reported an end fails the run.
    pub(super) fn reap(&mut self) -> Result<(), RuntimeError> {
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
            // A worker exits 0 only when the learner told it to stop (the
            // end of the run) or dropped it; the learner asks for the
            // replacement of one it dropped. Any other exit is a failure.
            let wanted = std::mem::take(&mut slot.replace_requested) || !status.success();
            if training && self.phase == Phase::Training && wanted {
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

    pub(super) fn schedule_restart(&mut self, target: Target, what: &str) {
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

    pub(super) fn restart_due(&mut self) -> Result<(), RuntimeError> {
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
            self.workers[k].replace_requested = false;
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
    pub(super) fn finished(&mut self) -> Result<Option<TrainSummary>, RuntimeError> {
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

    pub(super) fn summary(&self, ending: Ending) -> TrainSummary {
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
            update_s: report.map(|r| r.update_s),
            traffic: report
                .and_then(|r| r.exchange)
                .map(|e| rl_algo::exchange::Traffic {
                    calls: e.calls,
                    seconds: e.seconds,
                    bytes: e.bytes,
                }),
        }
    }

    /// SIGKILLs every process still running and reaps them all (dropping a
    /// handle does both).
    pub(super) fn kill_and_reap_all(&mut self) {
        self.learner = None;
        self.evaluator.handle = None;
        for w in &mut self.workers {
            w.handle = None;
            w.restart_at = None;
        }
        self.evaluator.restart_at = None;
    }

    /// Temporary files of atomic writes a killed process left behind.
    pub(super) fn remove_temporary_files(&self) {
        remove_stale_temporaries(self.run_dir.path());
        remove_stale_temporaries(&self.run_dir.path().join("checkpoints"));
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Worker(usize),
    Evaluator,
}
