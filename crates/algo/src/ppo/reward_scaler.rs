//! Reward scaling by the running standard deviation of discounted returns.

use rl_policy::{ObsNormalizer, RunningMeanStd};

/// Scales rewards by the running std of discounted returns (SB3's
/// `VecNormalize(norm_reward=True)`), keeping one running return per env.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardScaler {
    pub stats: RunningMeanStd,
    pub returns: Vec<f64>, // [E]
    pub gamma: f64,
    pub clip: f64,
}

impl RewardScaler {
    pub fn new(num_envs: usize, gamma: f64, clip: f64) -> Self {
        RewardScaler {
            stats: RunningMeanStd::new(1),
            returns: vec![0.0; num_envs],
            gamma,
            clip,
        }
    }

    /// Scales a time-major `[T, E]` reward array in place, step by step.
    pub fn scale(&mut self, rewards: &mut [f32], dones: &[bool]) {
        let n = self.returns.len();
        for (row, done_row) in rewards.chunks_exact_mut(n).zip(dones.chunks_exact(n)) {
            let step_returns: Vec<f32> = row
                .iter()
                .zip(&mut self.returns)
                .map(|(r, ret)| {
                    *ret = *ret * self.gamma + *r as f64;
                    *ret as f32
                })
                .collect();
            self.stats.update(&step_returns);
            let scale = (self.stats.var[0] + ObsNormalizer::EPSILON).sqrt();
            for ((r, ret), done) in row.iter_mut().zip(&mut self.returns).zip(done_row) {
                *r = (*r as f64 / scale).clamp(-self.clip, self.clip) as f32;
                if *done {
                    *ret = 0.0;
                }
            }
        }
    }
}
