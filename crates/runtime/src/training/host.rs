//! What the training loop runs in, seen from the loop: who may stop it,
//! who watches it, who evaluates its policy. Two processes host it: the
//! terminal's own process when `num_workers = 0`
//! ([`crate::training::in_process`]), and the learner process under a
//! supervisor ([`crate::processes::learner`]).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rl_algo::algorithm::Stats;
use rl_policy::ObsNormalizer;

use crate::error::RuntimeError;
use crate::report::Progress;

/// What the outside asks of the loop.
#[derive(Debug)]
pub enum Command {
    /// End the run in order: the update in progress is abandoned, the
    /// state after the last update saved.
    Stop,
    /// Write a checkpoint now (between updates).
    Checkpoint,
    /// The evaluation of weights `version` is the best so far: save the
    /// state at that version as the best checkpoint.
    SaveBest { version: u64 },
    /// A worker process (re)started; `channel` is the learner's end of its
    /// data channel.
    WorkerJoined {
        worker: u32,
        generation: u32,
        channel: OwnedFd,
    },
}

/// The policy of an evaluation point.
pub struct EvalPoint<'a> {
    /// Updates done: the weights' version.
    pub version: u64,
    pub env_steps: u64,
    pub weights: &'a [f32],
    pub obs_norm: Option<&'a ObsNormalizer>,
}

/// How a run ended, with the files its end wrote (written and synced).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ended: Ended,
    pub env_steps: u64,
    pub updates: u64,
    /// Collector messages rejected.
    pub rejected: u64,
    pub policy_file: PathBuf,
    pub checkpoint: Option<PathBuf>,
    /// Seconds in the learner's updates, over the run (this session).
    pub update_s: f64,
    /// What exchanging with the other ranks cost (data-parallel runs).
    pub traffic: Option<rl_algo::exchange::Traffic>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Every update of the budget is done.
    Completed,
    /// A stop request ended it.
    Stopped,
    /// A number went non-finite; the message says where and how to go on.
    Diverged(String),
}

/// The loop's surroundings.
pub trait Host {
    /// Commands that arrived, without waiting.
    fn poll(&mut self) -> Result<Vec<Command>, RuntimeError>;
    /// A descriptor that is readable when a command waits, for experience
    /// sources that wait on descriptors (`None`: none to wait on).
    fn command_fd(&self) -> Option<BorrowedFd<'_>>;
    /// Whether the update in progress is to be abandoned; asked between
    /// minibatches.
    fn stop_now(&self) -> bool;
    /// Says the loop is alive while it waits or works through a long update.
    fn alive(&self) -> Result<(), RuntimeError>;
    /// An update is done and recorded.
    fn updated(
        &mut self,
        progress: &Progress,
        stats: &Stats,
        rejected: u64,
    ) -> Result<(), RuntimeError>;
    /// An evaluation point: the host evaluates the policy (now, or in
    /// another process); commands it returns are handled at once.
    fn evaluation_point(&mut self, point: &EvalPoint<'_>) -> Result<Vec<Command>, RuntimeError>;
    /// The checkpoint a [`Command::Checkpoint`] asked for is written.
    fn checkpoint_written(&mut self, path: &Path) -> Result<(), RuntimeError>;
    /// Something the user should know.
    fn warn(&mut self, message: String) -> Result<(), RuntimeError>;
    /// A worker process must be replaced (the experience source's verdict).
    fn replace_worker(
        &mut self,
        worker: u32,
        generation: u32,
        reason: String,
    ) -> Result<(), RuntimeError>;
    /// The run ended; the files the outcome names are written.
    fn ended(&mut self, outcome: &Outcome) -> Result<(), RuntimeError>;
    /// After the end: the next command (best-checkpoint requests for the
    /// last evaluations), waiting for it; `None` once none can come.
    fn next_command(&mut self) -> Result<Option<Command>, RuntimeError>;
}
