//! Generalised advantage estimation.

/// GAE over a time-major rollout (`[T, E]` arrays).
///
/// `rewards` already include the truncation bootstrap (`gamma * V(final
/// obs)` added where an episode was truncated). `dones[t]` is true when the
/// episode ended at step `t` (terminated or truncated): no value flows back
/// across it. `last_values` are the values of the observations after the
/// last step. Returns `(advantages, returns)`, with `returns = advantages +
/// values`, computed in float32 in the order of CleanRL and SB3.
pub fn gae(
    rewards: &[f32],
    values: &[f32],
    dones: &[bool],
    last_values: &[f32],
    num_envs: usize,
    gamma: f32,
    gae_lambda: f32,
) -> (Vec<f32>, Vec<f32>) {
    let num_steps = rewards.len() / num_envs.max(1);
    let mut advantages = vec![0.0_f32; rewards.len()];
    #[allow(clippy::needless_range_loop)] // e indexes three arrays of different strides.
    for e in 0..num_envs {
        let mut last_gae = 0.0_f32;
        for t in (0..num_steps).rev() {
            let k = t * num_envs + e;
            let next_non_terminal = if dones[k] { 0.0 } else { 1.0 };
            let next_value = if t + 1 == num_steps {
                last_values[e]
            } else {
                values[k + num_envs]
            };
            let delta = rewards[k] + gamma * next_value * next_non_terminal - values[k];
            last_gae = delta + gamma * gae_lambda * next_non_terminal * last_gae;
            advantages[k] = last_gae;
        }
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    (advantages, returns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_step_episodes_reduce_to_one_step_td() {
        // Every step ends an episode: advantage = r - V.
        let (adv, ret) = gae(
            &[1.0, 2.0],
            &[0.5, 0.25],
            &[true, true],
            &[9.0],
            1,
            0.99,
            0.95,
        );
        assert_eq!(adv, vec![0.5, 1.75]);
        assert_eq!(ret, vec![1.0, 2.0]);
    }

    #[test]
    fn lambda_one_gives_discounted_returns_minus_values() {
        let rewards = [1.0, 1.0, 1.0];
        let values = [0.0, 0.0, 0.0];
        let (adv, _) = gae(
            &rewards,
            &values,
            &[false, false, false],
            &[10.0],
            1,
            0.5,
            1.0,
        );
        assert_eq!(
            adv,
            vec![
                1.0 + 0.5 + 0.25 + 0.125 * 10.0,
                1.0 + 0.5 + 0.25 * 10.0,
                1.0 + 0.5 * 10.0
            ]
        );
    }
}
