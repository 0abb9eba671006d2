//! The worker process: steps its share of the envs with the latest weights
//! and hands each rollout to the learner.
//!
//! ```text
//! learner --Collect{v}--> worker: read weights v (+ obs statistics) from the block,
//!                                 collect num_steps steps of its envs,
//!                                 encode the rollout into its slot,
//!         <--Rollout(header)--    send the header
//! ```

use std::path::Path;

use rl_env::Registry;
use rl_ipc::messages::{send_json, ToLearner, ToWorker, WorkerToSupervisor};
use rl_ipc::{Channel, ChannelError, RolloutSlot};
use rl_policy::{Exploration, ObsNormalizer, Rollout};

use crate::error::RuntimeError;
use crate::processes::child::{report_failure, ChildContext};
use crate::processes::fault::{Fault, FaultKind};
use crate::settings::TrainSettings;
use crate::spec::policy_spec;
use crate::storage::checkpoint::read_checkpoint;
use crate::training::collector::build_collector;
use crate::training::published::PublishedPolicy;

/// Which worker this process is.
#[derive(Debug, Clone)]
pub struct WorkerIdentity {
    pub worker: u32,
    pub generation: u32,
    pub first_env_index: u64,
    pub num_envs: usize,
    pub seed: u64,
    /// The checkpoint to restore this worker's envs from (first generation
    /// of a resumed run only).
    pub resume: Option<String>,
}

pub fn run_worker(
    registry: &Registry,
    mut context: ChildContext,
    id: WorkerIdentity,
) -> Result<(), RuntimeError> {
    let data = std::mem::take(&mut context.extra_fds)
        .into_iter()
        .next()
        .map(Channel::from_fd)
        .ok_or_else(|| RuntimeError::Setup("the setup carried no data channel".into()))?;
    match work(registry, &context.settings, context.block()?, &data, id) {
        // The learner is gone: the run is over, one way or another, and the
        // supervisor knows why.
        Err(RuntimeError::Channel(ChannelError::Closed)) => Ok(()),
        // The weights' fault, not this worker's: said as such, so that the
        // supervisor ends the run instead of replacing workers.
        Err(RuntimeError::Diverged(message)) => {
            let _ = send_json(
                &context.control,
                &WorkerToSupervisor::Diverged {
                    message: message.clone(),
                },
                &[],
            );
            Err(RuntimeError::Diverged(message))
        }
        other => report_failure(&context.control, other, |message| {
            WorkerToSupervisor::Failed { message }
        }),
    }
}

fn work(
    registry: &Registry,
    settings: &TrainSettings,
    block: &rl_ipc::WeightBlock,
    data: &Channel,
    id: WorkerIdentity,
) -> Result<(), RuntimeError> {
    let envs = registry.make_vec_with(&settings.env.id, id.num_envs, &settings.env.kwargs)?;
    let spec = policy_spec(settings, envs.observation_space(), envs.action_space())?;
    let obs_dim = spec.obs_dim;
    let mut published = PublishedPolicy::new(&spec, settings.env.normalize_obs);
    let checkpoint = match &id.resume {
        Some(path) => Some(read_checkpoint(Path::new(path)).map_err(RuntimeError::Setup)?),
        None => None,
    };
    let (mut collector, _) = build_collector(
        envs,
        spec,
        id.seed,
        id.first_env_index,
        // The checkpoint's collectors are every rank's workers in global
        // env order: this worker's is the one of its first env.
        checkpoint
            .as_ref()
            .map(|c| (c, (id.first_env_index / id.num_envs.max(1) as u64) as usize)),
    )?;
    let num_steps = settings.round_steps();
    let snapshot_len = collector.snapshot().map_or(0, |s| s.len() as u64);
    // Room for the snapshot to grow (a user env's state may vary in size).
    let capacity = rl_ipc::frame::max_payload_len(num_steps, id.num_envs, obs_dim, collector.action_dim())
        .and_then(|p| p.checked_add(2 * snapshot_len + 4096))
        .filter(|c| *c <= rl_ipc::frame::MAX_PAYLOAD)
        .ok_or_else(|| {
            RuntimeError::Setup(format!(
                "a rollout of {num_steps} steps x {} envs is too large for one message; use more workers or fewer steps",
                id.num_envs
            ))
        })?;
    let mut slot = RolloutSlot::create(capacity as usize)?;
    let fault = Fault::from_env(id.worker, id.generation);
    if fault.kind == Some(FaultKind::ExitAtStart) {
        std::process::exit(3);
    }
    let hello = ToLearner::Hello {
        worker: id.worker,
        generation: id.generation,
        slot_capacity: capacity,
    };
    data.send(&hello.encode(), &[slot.fd()])?;

    if settings.env.normalize_obs {
        *collector.obs_norm_mut() = Some(ObsNormalizer::new(obs_dim, settings.env.obs_clip));
    }
    let mut rollout = Rollout::default();
    let mut buf = Vec::new();
    let mut round = 0u64;
    loop {
        let received = data.recv(&mut buf, None)?;
        let version = match ToWorker::decode(&buf[..received.len])? {
            ToWorker::Stop => return Ok(()),
            ToWorker::Collect { version } => version,
        };
        let (policy, obs_norm) = collector.policy_and_obs_norm_mut();
        let mut exploration = Exploration::default();
        let got = published.read(
            block,
            policy.weights_mut(),
            &mut exploration,
            obs_norm.as_mut(),
        )?;
        collector.set_exploration(exploration);
        // Async: the newest weights, at least the version asked for.
        let version = match got {
            Some(got) if got == version || (settings.is_async() && got > version) => got,
            _ => {
                return Err(RuntimeError::Failed(format!(
                    "asked to collect with weights version {version}, the block holds {got:?}"
                )))
            }
        };
        collector.collect_into(num_steps, &mut rollout)?;
        if fault.fires(round, FaultKind::Fail) {
            return Err(RuntimeError::Failed(
                "an injected failure (FERRORL_FAULT kind=fail)".into(),
            ));
        }
        if fault.fires(round, FaultKind::NotFinite) {
            rollout.rewards[0] = f32::NAN;
        }
        if fault.fires(round, FaultKind::BadAction) {
            rollout.actions[0] = 1e6;
        }
        let snapshot = collector.snapshot().unwrap_or_default();
        let mut header = slot.write(id.worker, id.generation, version, &rollout, &snapshot)?;
        fault.tamper(round, &mut header);
        data.send(&ToLearner::Rollout(header).encode(), &[])?;
        round += 1;
    }
}
