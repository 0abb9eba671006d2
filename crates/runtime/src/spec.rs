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
    let algo = settings.run.algo.as_str();
    let head = match (algo, action) {
        ("sac", Space::Box(b)) => ActionHead::SquashedGaussian { dim: b.flat_dim() },
        ("td3", Space::Box(b)) => ActionHead::Deterministic { dim: b.flat_dim() },
        ("dqn", Space::Discrete { n }) => ActionHead::QValues { n: *n },
        ("sac" | "td3" | "dqn", _) => {
            return Err(RuntimeError::Setup(format!(
                "{}: {algo} needs {} action space, the env's is {action}",
                settings.env.id,
                if algo == "dqn" { "a Discrete" } else { "a Box" }
            )))
        }
        (_, Space::Discrete { n }) => ActionHead::Categorical { n: *n },
        (_, Space::Box(b)) => ActionHead::Gaussian { dim: b.flat_dim() },
    };
    if let Space::Box(b) = action {
        if head.is_squashed() {
            if let Some(d) =
                (0..b.low.len()).find(|&d| !(b.low[d].is_finite() && b.high[d].is_finite()))
            {
                return Err(RuntimeError::Setup(format!(
                    "{}: {algo} squashes actions into the action space's bounds, and bound {d} is [{}, {}]",
                    settings.env.id, b.low[d], b.high[d]
                )));
            }
        }
    }
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
        // The off-policy algorithms' Q-networks are the learner's own.
        critic_hidden: if head.has_critic() {
            settings.network.critic_hidden.clone()
        } else {
            Vec::new()
        },
        activation: settings.network.activation,
    })
}

/// The policy architecture of a run: its env's spaces and the network
/// settings.
pub fn spec_for(registry: &Registry, settings: &TrainSettings) -> Result<PolicySpec, RuntimeError> {
    Ok(spec_and_action_space(registry, settings)?.0)
}

/// The policy architecture of a run and its env's action space.
pub fn spec_and_action_space(
    registry: &Registry,
    settings: &TrainSettings,
) -> Result<(PolicySpec, Space), RuntimeError> {
    let envs = registry.make_vec_with(&settings.env.id, 1, &settings.env.kwargs)?;
    let spec = policy_spec(settings, envs.observation_space(), envs.action_space())?;
    Ok((spec, envs.action_space().clone()))
}
