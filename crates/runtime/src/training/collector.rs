//! Collectors of env steps: how one is built for a share of a run's envs,
//! fresh or from a checkpoint (for the single-process run and for each
//! worker process alike), and the experience source that steps every env
//! in this process.

use std::ops::Range;
use std::os::fd::OwnedFd;

use rl_env::seeds::resume_seed;
use rl_env::VecEnv;
use rl_policy::{Exploration, ObsNormalizer, Policy, PolicySpec, Rollout, RolloutCollector};

use crate::error::RuntimeError;
use crate::storage::checkpoint::Checkpoint;
use crate::training::host::Host;
use crate::training::source::{ExperienceSource, Gathered};

/// How a collector's envs began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Began {
    /// Fresh episodes from the run's seeds.
    Fresh,
    /// Exactly where a checkpoint left them.
    Restored,
    /// Fresh episodes of a resumed run whose envs cannot be snapshotted.
    NewEpisodes,
}

/// The collector of `envs` (global indices from `first_env_index`) with
/// base seed `seed`; when `resume` is given, restored from the checkpoint's
/// snapshot number `index`, or started on new episodes when it has none.
pub fn build_collector(
    envs: VecEnv,
    spec: PolicySpec,
    seed: u64,
    first_env_index: u64,
    resume: Option<(&Checkpoint, usize)>,
) -> Result<(RolloutCollector, Began), RuntimeError> {
    let policy = Policy::new(spec)?;
    let Some((checkpoint, index)) = resume else {
        let c = RolloutCollector::new(envs, policy, seed, first_env_index)?;
        return Ok((c, Began::Fresh));
    };
    match checkpoint.collectors.get(index).filter(|s| !s.is_empty()) {
        Some(snapshot) => {
            let mut c = RolloutCollector::new(envs, policy, seed, first_env_index)?;
            c.restore(snapshot)?;
            Ok((c, Began::Restored))
        }
        None => {
            let fresh = resume_seed(seed, checkpoint.learner.updates_done);
            let c = RolloutCollector::new(envs, policy, fresh, first_env_index)?;
            Ok((c, Began::NewEpisodes))
        }
    }
}

/// Every env in this process (`num_workers = 0`).
pub struct CollectorSource {
    collector: RolloutCollector,
    num_steps: usize,
    /// The collector's state at the start of the round after the last
    /// update: what a checkpoint of the learner's state goes with.
    committed: Vec<u8>,
}

impl CollectorSource {
    pub fn new(collector: RolloutCollector, num_steps: usize) -> Self {
        CollectorSource {
            committed: collector.snapshot().unwrap_or_default(),
            collector,
            num_steps,
        }
    }
}

impl ExperienceSource for CollectorSource {
    fn start_round(
        &mut self,
        _version: u64,
        weights: &[f32],
        obs_norm: Option<&ObsNormalizer>,
        exploration: Exploration,
        _host: &mut dyn Host,
    ) -> Result<(), RuntimeError> {
        self.collector.set_exploration(exploration);
        Ok(self.collector.set_policy(weights, obs_norm.cloned())?)
    }

    fn gather(
        &mut self,
        _host: &mut dyn Host,
        rollout: &mut Rollout,
    ) -> Result<Gathered, RuntimeError> {
        self.collector.collect_into(self.num_steps, rollout)?;
        Ok(Gathered::Complete)
    }

    fn commit_round(&mut self) {
        self.committed = self.collector.snapshot().unwrap_or_default();
    }

    fn snapshots(&self) -> Vec<Vec<u8>> {
        vec![self.committed.clone()]
    }

    fn take_restarted_envs(&mut self) -> Vec<Range<usize>> {
        Vec::new()
    }

    fn join(&mut self, worker: u32, _: u32, _: OwnedFd) -> Result<(), RuntimeError> {
        Err(RuntimeError::Failed(format!(
            "worker {worker} joined a run without worker processes"
        )))
    }

    fn rejected(&self) -> u64 {
        0
    }

    fn stop(&mut self) {}
}
