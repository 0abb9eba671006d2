//! Generalised advantage estimation, on `[T, E]` arrays (`ndarray` views
//! of the rollout's flat, time-major buffers: no copies).

use ndarray::{Array2, ArrayView2};

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
    let shape = (num_steps, num_envs);
    let view = |what: &str, len: usize| {
        assert_eq!(
            len,
            num_steps * num_envs,
            "gae: {what} has {len} values, not [{num_steps}, {num_envs}]"
        );
    };
    view("values", values.len());
    view("dones", dones.len());
    let (Ok(rewards), Ok(values), Ok(dones)) = (
        ArrayView2::from_shape(shape, rewards),
        ArrayView2::from_shape(shape, values),
        ArrayView2::from_shape(shape, dones),
    ) else {
        unreachable!("the lengths were checked")
    };
    let mut advantages = Array2::<f32>::zeros(shape);
    for e in 0..num_envs {
        let mut last_gae = 0.0_f32;
        for t in (0..num_steps).rev() {
            let next_non_terminal = if dones[[t, e]] { 0.0 } else { 1.0 };
            let next_value = if t + 1 == num_steps {
                last_values[e]
            } else {
                values[[t + 1, e]]
            };
            let delta = rewards[[t, e]] + gamma * next_value * next_non_terminal - values[[t, e]];
            last_gae = delta + gamma * gae_lambda * next_non_terminal * last_gae;
            advantages[[t, e]] = last_gae;
        }
    }
    let returns = (&advantages + &values).into_raw_vec_and_offset().0;
    (advantages.into_raw_vec_and_offset().0, returns)
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
