//! The worker processes as an experience source: the weights of each round
//! are published in the weight block, the [`WorkerPool`] gathers one
//! rollout per worker, and the parts are merged in global env order.

use std::ops::Range;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rl_ipc::WeightBlock;
use rl_policy::{ObsNormalizer, Rollout};

use crate::error::RuntimeError;
use crate::training::host::Host;
use crate::training::pool::{PoolEvent, WorkerPool};
use crate::training::published::PublishedPolicy;
use crate::training::source::{ExperienceSource, Gathered};

/// How long one wait for workers lasts before the host is heard again.
const WAIT: Duration = Duration::from_millis(200);

/// See the module documentation.
pub struct WorkerSource {
    pool: WorkerPool,
    block: WeightBlock,
    published: PublishedPolicy,
    restarted: Vec<Range<usize>>,
    /// The policy lag of the last chunk taken (async collection).
    lag: u64,
}

impl WorkerSource {
    /// `block` is the weight block the workers read (this process is its
    /// only writer).
    pub fn new(pool: WorkerPool, block: WeightBlock, published: PublishedPolicy) -> Self {
        WorkerSource {
            pool,
            block,
            published,
            restarted: Vec::new(),
            lag: 0,
        }
    }

    /// Passes pool events on: replacements to the host; a rejoined
    /// worker's envs start new episodes.
    fn report(&mut self, events: Vec<PoolEvent>, host: &mut dyn Host) -> Result<(), RuntimeError> {
        for event in events {
            match event {
                PoolEvent::Replace {
                    worker,
                    generation,
                    reason,
                } => host.replace_worker(worker, generation, reason)?,
                PoolEvent::Rejoined { worker, .. } => {
                    self.restarted.push(self.pool.env_range(worker));
                }
            }
        }
        Ok(())
    }
}

impl ExperienceSource for WorkerSource {
    fn start_round(
        &mut self,
        version: u64,
        weights: &[f32],
        obs_norm: Option<&ObsNormalizer>,
        exploration: rl_policy::Exploration,
        host: &mut dyn Host,
    ) -> Result<(), RuntimeError> {
        self.published
            .publish(&mut self.block, weights, obs_norm, exploration, version)?;
        let events = self.pool.start_round(version);
        self.report(events, host)
    }

    fn gather(
        &mut self,
        host: &mut dyn Host,
        rollout: &mut Rollout,
    ) -> Result<Gathered, RuntimeError> {
        loop {
            if self.pool.is_async() {
                let mut events = Vec::new();
                let taken = self.pool.take_chunk(rollout, &mut events);
                self.report(events, host)?;
                if let Some(lag) = taken {
                    self.lag = lag;
                    return Ok(Gathered::Complete);
                }
            } else if self.pool.round_complete() {
                self.pool
                    .merge_into(rollout)
                    .map_err(RuntimeError::Failed)?;
                return Ok(Gathered::Complete);
            }
            let (host_ready, events) = self.pool.poll(host.command_fd(), WAIT)?;
            self.report(events, host)?;
            host.alive()?;
            if host_ready {
                let commands = host.poll()?;
                if !commands.is_empty() {
                    return Ok(Gathered::Commands(commands));
                }
            }
        }
    }

    fn commit_round(&mut self) {
        self.pool.commit_round();
    }

    fn snapshots(&self) -> Vec<Vec<u8>> {
        self.pool.snapshots()
    }

    fn take_restarted_envs(&mut self) -> Vec<Range<usize>> {
        std::mem::take(&mut self.restarted)
    }

    fn join(&mut self, worker: u32, generation: u32, channel: OwnedFd) -> Result<(), RuntimeError> {
        self.pool
            .join(worker, generation, channel)
            .map_err(RuntimeError::Failed)
    }

    fn rejected(&self) -> u64 {
        self.pool.rejected
    }

    fn async_stats(&self) -> Option<(u64, u64)> {
        self.pool.is_async().then_some((self.lag, self.pool.stale))
    }

    fn stop(&mut self) {
        self.pool.stop_all();
    }
}
