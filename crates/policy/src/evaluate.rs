//! Deterministic evaluation episodes.

use rl_env::seeds::episode_seed;
use rl_env::{Action, Env, EnvError, Kwargs, Registry, Space};

use crate::{ObsNormalizer, Policy};

/// The returns of `episodes` deterministic episodes (argmax or mean action,
/// clipped to the action bounds) on a fresh env of `env_id`; episode `k` is
/// reset with `episode_seed(seed, k)`.
pub fn evaluate_episodes(
    registry: &Registry,
    env_id: &str,
    kwargs: &Kwargs,
    policy: &mut Policy,
    obs_norm: Option<&ObsNormalizer>,
    episodes: usize,
    seed: u64,
) -> Result<Vec<f64>, EnvError> {
    let mut env = registry.make_with(env_id, kwargs)?;
    let bounds = match env.action_space() {
        Space::Box(b) => Some((b.low.clone(), b.high.clone())),
        Space::Discrete { .. } => None,
    };
    let action_dim = policy.spec().head.action_dim();
    let mut action = vec![0.0_f32; action_dim];
    let mut normalized = vec![0.0_f32; env.observation_space().flat_dim()];
    let mut returns = Vec::with_capacity(episodes);
    for k in 0..episodes {
        let mut obs = env.reset(Some(episode_seed(seed, k as u64)))?;
        let mut total = 0.0;
        loop {
            match obs_norm {
                Some(norm) => norm.normalize(&obs, &mut normalized),
                None => normalized.copy_from_slice(&obs),
            }
            policy.deterministic(&normalized, &mut action);
            let step = match &bounds {
                None => env.step(Action::Discrete(action[0] as i64))?,
                Some((low, high)) => {
                    for d in 0..action_dim {
                        action[d] = action[d].clamp(low[d], high[d]);
                    }
                    env.step(Action::Continuous(&action))?
                }
            };
            total += step.reward;
            obs = step.obs;
            if step.terminated || step.truncated {
                break;
            }
        }
        returns.push(total);
    }
    Ok(returns)
}
