//! The supervisor's deadlines: a stuck learner ends the run, a stuck
//! evaluation is abandoned, a learner that does not stop in time is killed;
//! time the supervisor itself was stopped counts against nobody.

use std::time::Duration;

use rl_ipc::messages::SupervisorToLearner;

use super::{Phase, Supervisor, STOP_DEADLINE};

impl Supervisor<'_> {
    /// Moves every deadline on by `by` (see [`SUSPENDED`]).
    pub(super) fn postpone_deadlines(&mut self, by: Duration) {
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
    pub(super) fn check_deadlines(&mut self) {
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
