//! Where the training loop gets experience from: one trait, two
//! implementations. [`crate::training::collector::CollectorSource`] steps
//! every env in this process; [`crate::training::pool::WorkerPool`] asks
//! worker processes for their share and merges it. The same loop runs on
//! either, so `num_workers = 0` and `num_workers >= 1` train the same way,
//! bit for bit.

use std::ops::Range;
use std::os::fd::OwnedFd;

use rl_policy::{Exploration, ObsNormalizer, Rollout};

use crate::error::RuntimeError;
use crate::training::host::{Command, Host};

/// How a wait for experience ended.
#[derive(Debug)]
pub enum Gathered {
    /// The round's experience is in.
    Complete,
    /// Commands arrived that the loop must handle before the round goes on.
    Commands(Vec<Command>),
}

/// An on-policy source: rounds of `[T, E]` steps, every env acting with the
/// policy of the round.
pub trait ExperienceSource {
    /// Starts a round in which every env acts with `weights` (version
    /// `version`), exploring as `exploration` says (off-policy heads) and,
    /// when observations are normalised, with `obs_norm`.
    fn start_round(
        &mut self,
        version: u64,
        weights: &[f32],
        obs_norm: Option<&ObsNormalizer>,
        exploration: Exploration,
        host: &mut dyn Host,
    ) -> Result<(), RuntimeError>;
    /// Waits for the round's experience and puts it in `rollout`
    /// (time-major, envs in their global order); returns early with
    /// commands for the loop, after which it is called again.
    fn gather(
        &mut self,
        host: &mut dyn Host,
        rollout: &mut Rollout,
    ) -> Result<Gathered, RuntimeError>;
    /// The round was trained on: the envs' state at its end is what
    /// checkpoints hold from now on.
    fn commit_round(&mut self);
    /// The envs' state after the last committed round, one entry per
    /// collector (an empty entry: its envs cannot be snapshotted).
    fn snapshots(&self) -> Vec<Vec<u8>>;
    /// Envs that started fresh episodes since the last call (a replaced
    /// worker's), by global index.
    fn take_restarted_envs(&mut self) -> Vec<Range<usize>>;
    /// A worker process joined.
    fn join(&mut self, worker: u32, generation: u32, channel: OwnedFd) -> Result<(), RuntimeError>;
    /// Collector messages rejected so far.
    fn rejected(&self) -> u64;
    /// Tells every collector to stop.
    fn stop(&mut self);
    /// Async collection: the policy lag of the chunk just gathered and the
    /// chunks dropped as too stale so far; `None` for rounds.
    fn async_stats(&self) -> Option<(u64, u64)> {
        None
    }
}
