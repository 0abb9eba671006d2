//! The policy architecture of a run: its env's spaces and the `[network]`
//! settings.

use rl_env::{Registry, Space};
use rl_policy::{ActionHead, PolicySpec};

use crate::error::RuntimeError;
use crate::settings::TrainSettings;

/// The policy architecture for an env's spaces and the network settings.
pub fn policy_spec(
    settings: &TrainSettings,
    observation: &Space,
    action: &Space,
) -> Result<PolicySpec, RuntimeError> {
    let head = match action {
        Space::Discrete { n } => ActionHead::Categorical { n: *n },
        Space::Box(b) => ActionHead::Gaussian { dim: b.flat_dim() },
    };
    if !matches!(observation, Space::Box(_)) {
        return Err(RuntimeError::Setup(format!(
            "{}: observation space {observation} is not a Box",
            settings.env.id
        )));
    }
    Ok(PolicySpec {
        obs_dim: observation.flat_dim(),
        head,
        actor_hidden: settings.network.actor_hidden.clone(),
        critic_hidden: settings.network.critic_hidden.clone(),
        activation: settings.network.activation,
    })
}

/// The policy architecture of a run: its env's spaces and the network
/// settings.
pub fn spec_for(registry: &Registry, settings: &TrainSettings) -> Result<PolicySpec, RuntimeError> {
    let envs = registry.make_vec_with(&settings.env.id, 1, &settings.env.kwargs)?;
    policy_spec(settings, envs.observation_space(), envs.action_space())
}
