//! Faults a test can make a worker commit, to exercise the learner's and
//! the supervisor's handling of them on real processes. Compiled in only
//! with the `fault-injection` cargo feature, which the crate's own tests
//! turn on: a release `train` has no such code path and ignores
//! `FERRORL_FAULT`.

use std::time::Duration;

/// Faults a test can make a worker commit, through the environment variable
/// `FERRORL_FAULT` (`worker=W generation=G|* round=R kind=K`): the fault
/// tests run real worker processes that break the protocol in a chosen way
/// at a chosen moment. Unset, nothing happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A NaN reward in the payload.
    NotFinite,
    /// An action outside the action space in the payload.
    BadAction,
    /// A header announcing one step more than the run uses.
    WrongSize,
    /// A header naming a worker that does not exist.
    UnknownWorker,
    /// A header naming the previous weights version.
    StaleVersion,
    /// SIGKILL itself after collecting, before sending (mid-round).
    Die,
    /// SIGSTOP itself after collecting, before sending (a hung env).
    Hang,
    /// Exit before saying hello to the learner.
    ExitAtStart,
    /// Fail with an error message after collecting (an env that raises).
    Fail,
}

#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub kind: Option<FaultKind>,
    round: u64,
}

impl Fault {
    pub fn from_env(worker: u32, generation: u32) -> Self {
        let none = Fault {
            kind: None,
            round: 0,
        };
        if !cfg!(feature = "fault-injection") {
            return none;
        }
        let Ok(spec) = std::env::var("FERRORL_FAULT") else {
            return none;
        };
        let mut fault = none;
        let mut matches = true;
        for part in spec.split([' ', ',']).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                continue;
            };
            match key {
                "worker" => matches &= value.parse() == Ok(worker),
                "generation" => matches &= value == "*" || value.parse() == Ok(generation),
                "round" => fault.round = value.parse().unwrap_or(0),
                "kind" => {
                    fault.kind = match value {
                        "nan" => Some(FaultKind::NotFinite),
                        "bad_action" => Some(FaultKind::BadAction),
                        "wrong_size" => Some(FaultKind::WrongSize),
                        "unknown_worker" => Some(FaultKind::UnknownWorker),
                        "stale_version" => Some(FaultKind::StaleVersion),
                        "die" => Some(FaultKind::Die),
                        "hang" => Some(FaultKind::Hang),
                        "exit_at_start" => Some(FaultKind::ExitAtStart),
                        "fail" => Some(FaultKind::Fail),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        if matches {
            fault
        } else {
            none
        }
    }

    pub fn fires(&self, round: u64, kind: FaultKind) -> bool {
        self.kind == Some(kind) && self.round == round
    }

    pub fn tamper(&self, round: u64, header: &mut rl_ipc::RolloutHeader) {
        if self.round != round {
            return;
        }
        match self.kind {
            Some(FaultKind::WrongSize) => {
                header.num_steps += 1;
                header.payload_len = rl_ipc::frame::payload_len(
                    header.num_steps as usize,
                    header.num_envs as usize,
                    header.obs_dim as usize,
                    header.action_dim as usize,
                    header.num_episodes as usize,
                    header.final_obs,
                )
                .unwrap_or(0);
            }
            Some(FaultKind::UnknownWorker) => header.worker = 1000,
            Some(FaultKind::StaleVersion) => {
                header.weights_version = header.weights_version.wrapping_sub(1)
            }
            Some(FaultKind::Die) => {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            }
            Some(FaultKind::Hang) => {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
                // Continued (SIGCONT) after being replaced: still a late worker.
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(
                FaultKind::NotFinite
                | FaultKind::BadAction
                | FaultKind::ExitAtStart
                | FaultKind::Fail,
            )
            | None => {}
        }
    }
}
