//! The run's learning algorithm, built from its settings: where `[run]
//! device`, `[run] learner` and `[run] torch_threads` are read.

use rl_algo::algorithm::{Algorithm, RunSpec};
use rl_algo::device::{resolve_device_for, set_torch_threads, DeviceChoice};
use rl_algo::engine::gradient::Backend;
use rl_algo::engine::gradient::Device;
use rl_algo::offpolicy::learner::OffPolicyLearner;
use rl_algo::ppo::learner::PpoLearner;
use rl_env::Space;
use rl_policy::PolicySpec;

use crate::error::RuntimeError;
use crate::settings::TrainSettings;

/// The run's algorithm (`[run] algo`) for an env with `action` space, on
/// the configured device and gradient engine, with the configured
/// libtorch threads.
pub fn new_algorithm(
    settings: &TrainSettings,
    spec: &PolicySpec,
    action: &Space,
    local_rank: usize,
) -> Result<Box<dyn Algorithm>, RuntimeError> {
    match settings.off_policy() {
        None => Ok(Box::new(new_ppo(settings, spec, local_rank)?)),
        Some(algo) => {
            // The off-policy agents compute with libtorch on any device.
            let device = resolve(settings, local_rank)?;
            let bounds = match action {
                Space::Box(b) => Some((b.low.as_slice(), b.high.as_slice())),
                Space::Discrete { .. } => None,
            };
            // Its updates each train on one chunk: every env's, or one
            // worker's with async collection.
            let run = RunSpec {
                num_envs: settings.envs_per_update(),
                ..settings.run_spec()
            };
            let learner = OffPolicyLearner::new(
                spec.clone(),
                algo,
                settings.network.critic_hidden.clone(),
                bounds,
                &run,
                device,
            )
            .map_err(RuntimeError::Setup)?;
            set_torch_threads(settings.run.torch_threads);
            Ok(Box::new(learner))
        }
    }
}

/// The configured device; on CUDA, GPU `local_rank % GPUs` (the ranks of
/// a data-parallel run on one host spread over its GPUs).
fn resolve(settings: &TrainSettings, local_rank: usize) -> Result<Device, RuntimeError> {
    Ok(resolve_device_for(
        settings
            .run
            .device
            .parse::<DeviceChoice>()
            .map_err(|e| RuntimeError::Setup(e.to_string()))?,
        local_rank,
    )?)
}

/// PPO, on the configured device and gradient engine.
fn new_ppo(
    settings: &TrainSettings,
    spec: &PolicySpec,
    local_rank: usize,
) -> Result<PpoLearner, RuntimeError> {
    let device = resolve(settings, local_rank)?;
    let backend = match settings.run.learner.as_str() {
        "torch" => Backend::Torch(device),
        _ => Backend::for_device(device),
    };
    let learner = PpoLearner::new(
        spec.clone(),
        settings.ppo.clone(),
        &settings.run_spec(),
        backend,
    )
    .map_err(RuntimeError::Setup)?;
    // Once the libtorch engine is loaded (it is not loaded for this alone).
    set_torch_threads(settings.run.torch_threads);
    Ok(learner)
}
