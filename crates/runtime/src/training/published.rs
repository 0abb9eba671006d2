//! The one owner of what a learner publishes for the processes that act
//! with its policy, in a [`WeightBlock`]:
//!
//! ```text
//! weights  f32 x P    the parameters, flat in layout order
//! stats    f64 x 3    exploration: random actions (0/1), epsilon, noise
//!                     (see `rl_policy::Exploration`)
//!          f64 x 2D   observation mean (D values) then variance (D values),
//!                     only when observations are normalised
//! version  u64        updates done
//! ```

use rl_ipc::WeightBlock;
use rl_policy::{Exploration, ObsNormalizer, PolicySpec};

/// The exploration values ahead of the observation statistics.
const EXPLORATION: usize = 3;

use crate::error::RuntimeError;

/// Publishes and reads the policy of one run (see the module documentation).
#[derive(Debug, Clone)]
pub struct PublishedPolicy {
    obs_dim: usize,
    normalised: bool,
    stats: Vec<f64>,
}

impl PublishedPolicy {
    pub fn new(spec: &PolicySpec, normalize_obs: bool) -> Self {
        PublishedPolicy {
            obs_dim: spec.obs_dim,
            normalised: normalize_obs,
            stats: Vec::new(),
        }
    }

    fn stats_len(&self) -> usize {
        EXPLORATION + if self.normalised { 2 * self.obs_dim } else { 0 }
    }

    /// A block for `params` weights and this run's statistics.
    pub fn create_block(&self, params: usize) -> Result<WeightBlock, RuntimeError> {
        Ok(WeightBlock::create_with_stats(params, self.stats_len())?)
    }

    /// Publishes `weights`, how to explore and the statistics of
    /// `obs_norm` as `version`.
    pub fn publish(
        &mut self,
        block: &mut WeightBlock,
        weights: &[f32],
        obs_norm: Option<&ObsNormalizer>,
        exploration: Exploration,
        version: u64,
    ) -> Result<(), RuntimeError> {
        self.stats.clear();
        self.stats.extend_from_slice(&exploration.to_array());
        if let Some(norm) = obs_norm.filter(|_| self.normalised) {
            self.stats.extend_from_slice(&norm.stats.mean);
            self.stats.extend_from_slice(&norm.stats.var);
        }
        block.publish_with_stats(weights, &self.stats, version)?;
        Ok(())
    }

    /// Reads the newest version into `weights`, `exploration` and
    /// `obs_norm`'s statistics; `None` before anything was published.
    pub fn read(
        &mut self,
        block: &WeightBlock,
        weights: &mut [f32],
        exploration: &mut Exploration,
        obs_norm: Option<&mut ObsNormalizer>,
    ) -> Result<Option<u64>, RuntimeError> {
        self.stats.resize(block.stats_len(), 0.0);
        let version = block.read_with_stats_into(weights, &mut self.stats)?;
        if self.stats.len() < EXPLORATION {
            return Err(RuntimeError::Failed(format!(
                "the weight block holds {} statistics, fewer than the {EXPLORATION} exploration values",
                self.stats.len()
            )));
        }
        *exploration = Exploration::from_array([self.stats[0], self.stats[1], self.stats[2]]);
        if let Some(norm) = obs_norm {
            let d = self.obs_dim;
            let stats = &self.stats[EXPLORATION..];
            if stats.len() != 2 * d {
                return Err(RuntimeError::Failed(format!(
                    "the weight block holds {} statistics, normalised observations of {d} values need {}",
                    stats.len(),
                    2 * d
                )));
            }
            norm.stats.mean.copy_from_slice(&stats[..d]);
            norm.stats.var.copy_from_slice(&stats[d..]);
        }
        Ok(version)
    }
}
