//! Rollout throughput of the real worker processes: workers started exactly
//! as a run starts them, delivering rounds of rollouts to a receiver that
//! does everything the learner does with them (header checks, copy out of
//! the slot, value checks, merge into one batch) except the update. What
//! `bench rollout` measures.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rl_env::Registry;
use rl_ipc::messages::{RoleSetup, Setup};
use rl_ipc::Channel;
use rl_policy::Rollout;

use crate::clock::unix_now;
use crate::error::RuntimeError;
use crate::processes::child::{spawn_child, ChildHandle};
use crate::settings::TrainSettings;
use crate::spec::spec_for;
use crate::storage::run_dir::RunDir;
use crate::training::pool::{PoolEvent, RolloutShape, WorkerPool};

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RolloutThroughput {
    pub num_workers: usize,
    pub envs_per_worker: usize,
    pub num_steps: usize,
    /// Env steps received (whole rounds only).
    pub env_steps: u64,
    pub seconds: f64,
}

impl RolloutThroughput {
    pub fn steps_per_s(&self) -> f64 {
        self.env_steps as f64 / self.seconds.max(1e-12)
    }
}

/// Starts `settings.run.num_workers` worker processes (of the current
/// executable, which must call [`crate::processes::entry::run_child_if_requested`] first)
/// and receives rounds from them for about `seconds` after a warm-up round.
/// `scratch` is an empty directory the workers are told is the run
/// directory (they write nothing there).
pub fn measure_rollout_throughput(
    registry: &Registry,
    settings: &TrainSettings,
    scratch: &RunDir,
    seconds: f64,
) -> Result<RolloutThroughput, RuntimeError> {
    let spec = spec_for(registry, settings)?;
    let weights = rl_algo::init::initial_weights(&spec, settings.run.seed, 0.0);
    // The layout workers read: weights, exploration, no statistics.
    let mut published = crate::training::published::PublishedPolicy::new(&spec, false);
    let mut block = published.create_block(weights.len())?;
    let settings_json =
        serde_json::to_string(settings).map_err(|e| RuntimeError::Setup(e.to_string()))?;
    let num_workers = settings.run.num_workers.max(1);
    let per_worker = settings.envs_per_worker();
    let shape = RolloutShape {
        actions: crate::training::pool::ActionRange::Any,
        num_steps: settings.round_steps(),
        envs_per_worker: per_worker,
        first_env: 0,
        obs_dim: spec.obs_dim,
        action_dim: spec.head.action_dim(),
        final_obs: spec.head.is_off_policy(),
    };
    let mut pool = WorkerPool::new(
        num_workers,
        shape,
        Duration::from_secs_f64(settings.run.worker_timeout_s),
    );
    let mut children: Vec<ChildHandle> = Vec::new();
    let result = (|| {
        for worker in 0..num_workers as u32 {
            let (learner_end, worker_end) = Channel::pair()?;
            let setup = Setup {
                run_dir: scratch.path().display().to_string(),
                settings_json: settings_json.clone(),
                start_unix_s: unix_now(),
                resume: None,
                role: RoleSetup::Worker {
                    worker,
                    generation: 0,
                    first_env_index: u64::from(worker) * per_worker as u64,
                    num_envs: per_worker as u32,
                    seed: rl_env::seeds::replacement_seed(settings.run.seed, 0),
                },
            };
            children.push(spawn_child(
                &format!("worker-{worker}"),
                scratch.path(),
                &setup,
                &[block.fd(), worker_end.as_fd()],
            )?);
            pool.join(worker, 0, learner_end.into_fd())
                .map_err(RuntimeError::Failed)?;
        }
        let mut merged = Rollout::default();
        let mut version = 0u64;
        let mut round = |pool: &mut WorkerPool, version: u64| -> Result<(), RuntimeError> {
            published.publish(
                &mut block,
                &weights,
                None,
                rl_policy::Exploration::default(),
                version,
            )?;
            let mut events = pool.start_round(version);
            while !pool.round_complete() {
                if let Some(PoolEvent::Replace { worker, reason, .. }) = events
                    .iter()
                    .find(|e| matches!(e, PoolEvent::Replace { .. }))
                {
                    return Err(RuntimeError::Failed(format!("worker {worker} {reason}")));
                }
                events = pool.poll(None, Duration::from_millis(200))?.1;
            }
            pool.merge_into(&mut merged).map_err(RuntimeError::Failed)
        };
        // Warm-up: the processes start, page in, and fill their caches.
        round(&mut pool, version)?;
        let start = Instant::now();
        let mut env_steps = 0u64;
        while start.elapsed().as_secs_f64() < seconds {
            version += 1;
            round(&mut pool, version)?;
            env_steps += (num_workers * per_worker * settings.round_steps()) as u64;
        }
        Ok(RolloutThroughput {
            num_workers,
            envs_per_worker: per_worker,
            num_steps: settings.round_steps(),
            env_steps,
            seconds: start.elapsed().as_secs_f64(),
        })
    })();
    pool.stop_all();
    // Workers exit on `Stop`; a handle kills and reaps what does not.
    let deadline = Instant::now() + Duration::from_secs(5);
    for child in &mut children {
        while child.process.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    drop(children);
    result
}
