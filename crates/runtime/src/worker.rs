//! The worker process: steps its share of the envs with the latest weights
//! and hands each rollout to the learner.
//!
//! ```text
//! learner --Collect{v}--> worker: read weights v (+ obs statistics) from the block,
//!                                 collect num_steps steps of its envs,
//!                                 encode the rollout into its slot,
//!         <--Rollout(header)--    send the header
//! ```

use std::time::Duration;

use rl_env::rng::derive_seed;
use rl_env::Registry;
use rl_ipc::messages::{send_json, ToLearner, ToWorker, WorkerToSupervisor};
use rl_ipc::{Channel, ChannelError, RolloutSlot};
use rl_policy::{ObsNormalizer, Policy, Rollout, RolloutCollector};

use crate::child::{report_failure, ChildContext};
use crate::trainer::{policy_spec, RuntimeError};

/// Keeps a replacement worker's envs and sampling streams apart from its
/// predecessors'.
const RESTART_SALT: u64 = 0x5E57_A27E_0000_0001;

/// Which worker this process is.
#[derive(Debug, Clone)]
pub(crate) struct WorkerIdentity {
    pub worker: u32,
    pub generation: u32,
    pub first_env_index: u64,
    pub num_envs: usize,
    pub seed: u64,
    /// The checkpoint to restore this worker's envs from (first generation
    /// of a resumed run only).
    pub resume: Option<String>,
}

/// Reads a checkpoint file a resumed run was started from.
pub(crate) fn load_checkpoint(path: &str) -> Result<crate::checkpoint::Checkpoint, RuntimeError> {
    let bytes = std::fs::read(path).map_err(|e| RuntimeError::Setup(format!("{path}: {e}")))?;
    crate::checkpoint::Checkpoint::decode(&bytes)
        .map_err(|e| RuntimeError::Setup(format!("{path}: {e}")))
}

/// The seed a worker process of `generation` starts its envs with: the run
/// seed for the first process (so a split run reproduces a single-process
/// one), fresh streams for each replacement.
pub(crate) fn worker_seed(run_seed: u64, generation: u32) -> u64 {
    if generation == 0 {
        run_seed
    } else {
        derive_seed(run_seed ^ RESTART_SALT, u64::from(generation))
    }
}

pub(crate) fn run_worker(
    registry: &Registry,
    context: ChildContext,
    id: WorkerIdentity,
) -> Result<(), RuntimeError> {
    let data = context
        .extra_fds
        .into_iter()
        .next()
        .map(Channel::from_fd)
        .ok_or_else(|| RuntimeError::Setup("the setup carried no data channel".into()))?;
    match work(registry, &context.settings, &context.block, &data, id) {
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
    settings: &crate::TrainSettings,
    block: &rl_ipc::WeightBlock,
    data: &Channel,
    id: WorkerIdentity,
) -> Result<(), RuntimeError> {
    let envs = registry.make_vec(&settings.env.id, id.num_envs)?;
    let spec = policy_spec(settings, envs.observation_space(), envs.action_space())?;
    let obs_dim = spec.obs_dim;
    let mut collector = match &id.resume {
        None => RolloutCollector::new(envs, Policy::new(spec)?, id.seed, id.first_env_index)?,
        Some(path) => {
            let checkpoint = load_checkpoint(path)?;
            let updates = checkpoint.learner.updates_done;
            match checkpoint
                .collectors
                .get(id.worker as usize)
                .filter(|s| !s.is_empty())
            {
                Some(snapshot) => {
                    let mut c = RolloutCollector::new(
                        envs,
                        Policy::new(spec)?,
                        id.seed,
                        id.first_env_index,
                    )?;
                    c.restore(snapshot)?;
                    c
                }
                None => RolloutCollector::new(
                    envs,
                    Policy::new(spec)?,
                    crate::trainer::resume_seed(id.seed, updates),
                    id.first_env_index,
                )?,
            }
        }
    };
    let num_steps = settings.ppo.num_steps;
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
    let fault = Fault::from_env(&id);
    if fault.kind == Some(FaultKind::ExitAtStart) {
        std::process::exit(3);
    }
    let hello = ToLearner::Hello {
        worker: id.worker,
        generation: id.generation,
        slot_capacity: capacity,
    };
    data.send(&hello.encode(), &[slot.fd()])?;

    let mut stats = vec![0.0_f64; block.stats_len()];
    if settings.ppo.normalize_obs {
        *collector.obs_norm_mut() = Some(ObsNormalizer::new(obs_dim, settings.ppo.obs_clip));
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
        let got = block.read_with_stats_into(collector.policy_mut().weights_mut(), &mut stats)?;
        if got != Some(version) {
            return Err(RuntimeError::Failed(format!(
                "asked to collect with weights version {version}, the block holds {got:?}"
            )));
        }
        if let Some(norm) = collector.obs_norm_mut() {
            norm.stats.mean.copy_from_slice(&stats[..obs_dim]);
            norm.stats.var.copy_from_slice(&stats[obs_dim..2 * obs_dim]);
        }
        collector.collect_into(num_steps, &mut rollout)?;
        if fault.fires(round, FaultKind::Fail) {
            return Err(RuntimeError::Failed(
                "an injected failure (FERRORL_FAULT kind=fail)".into(),
            ));
        }
        if fault.fires(round, FaultKind::NotFinite) {
            rollout.rewards[0] = f32::NAN;
        }
        let snapshot = collector.snapshot().unwrap_or_default();
        let mut header = slot.write(id.worker, id.generation, version, &rollout, &snapshot)?;
        fault.tamper(round, &mut header);
        data.send(&ToLearner::Rollout(header).encode(), &[])?;
        round += 1;
    }
}

/// Faults a test can make a worker commit, through the environment variable
/// `FERRORL_FAULT` (`worker=W generation=G|* round=R kind=K`): the fault
/// tests run real worker processes that break the protocol in a chosen way
/// at a chosen moment. Unset, nothing happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    /// A NaN reward in the payload.
    NotFinite,
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
struct Fault {
    kind: Option<FaultKind>,
    round: u64,
}

impl Fault {
    fn from_env(id: &WorkerIdentity) -> Self {
        let none = Fault {
            kind: None,
            round: 0,
        };
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
                "worker" => matches &= value.parse() == Ok(id.worker),
                "generation" => matches &= value == "*" || value.parse() == Ok(id.generation),
                "round" => fault.round = value.parse().unwrap_or(0),
                "kind" => {
                    fault.kind = match value {
                        "nan" => Some(FaultKind::NotFinite),
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

    fn fires(&self, round: u64, kind: FaultKind) -> bool {
        self.kind == Some(kind) && self.round == round
    }

    fn tamper(&self, round: u64, header: &mut rl_ipc::RolloutHeader) {
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
            Some(FaultKind::NotFinite | FaultKind::ExitAtStart | FaultKind::Fail) | None => {}
        }
    }
}
