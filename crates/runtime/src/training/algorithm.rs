//! The run's learning algorithm, built from its settings: where `[run]
//! device`, `[run] learner` and `[run] torch_threads` are read.

use rl_algo::algorithm::Algorithm;
use rl_algo::device::{resolve_device, set_torch_threads, DeviceChoice};
use rl_algo::engine::gradient::Backend;
use rl_algo::ppo::learner::PpoLearner;
use rl_policy::PolicySpec;

use crate::error::RuntimeError;
use crate::settings::TrainSettings;

/// The run's algorithm (`[run] algo`), on the configured device and
/// gradient engine, with the configured libtorch threads.
pub fn new_algorithm(
    settings: &TrainSettings,
    spec: &PolicySpec,
) -> Result<Box<dyn Algorithm>, RuntimeError> {
    match settings.run.algo.as_str() {
        "ppo" => Ok(Box::new(new_ppo(settings, spec)?)),
        other => Err(RuntimeError::Setup(format!(
            "[run] algo = {other:?} is not an algorithm of this build"
        ))),
    }
}

/// PPO, on the configured device and gradient engine.
fn new_ppo(settings: &TrainSettings, spec: &PolicySpec) -> Result<PpoLearner, RuntimeError> {
    let device = resolve_device(
        settings
            .run
            .device
            .parse::<DeviceChoice>()
            .map_err(|e| RuntimeError::Setup(e.to_string()))?,
    )?;
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
