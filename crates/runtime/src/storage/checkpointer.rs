//! Builds the checkpoints of one run from the learner's state and writes
//! them into its `checkpoints/` folder.

use std::path::PathBuf;

use rl_algo::algorithm::Algorithm;
use rl_policy::PolicySpec;

use crate::error::RuntimeError;
use crate::settings::TrainSettings;
use crate::storage::checkpoint::{config_hash, Checkpoint, CheckpointKind};
use crate::storage::checkpoint_dir::CheckpointDir;
use crate::storage::run_dir::RunDir;

/// Builds and writes checkpoints of one run.
pub struct Checkpointer {
    dir: CheckpointDir,
    interval: u64,
    interval_steps: Option<u64>,
    env_id: String,
    env_kwargs: rl_env::Kwargs,
    spec: PolicySpec,
    obs_norm_clip: Option<f64>,
    config_hash: String,
    settings_json: String,
    steps_per_update: u64,
}

impl Checkpointer {
    /// For a run of `ranks` data-parallel ranks (1 without MPI), whose
    /// updates are each `ranks` rounds of env steps.
    pub fn new(
        run_dir: &RunDir,
        settings: &TrainSettings,
        spec: &PolicySpec,
        ranks: usize,
    ) -> Self {
        Checkpointer {
            dir: CheckpointDir::new(run_dir.path(), settings.checkpoint.keep_last),
            interval: settings.checkpoint.interval_updates,
            interval_steps: settings.checkpoint_interval_steps(),
            env_id: settings.env.id.clone(),
            env_kwargs: settings.env.kwargs.clone(),
            spec: spec.clone(),
            obs_norm_clip: settings.env.normalize_obs.then_some(settings.env.obs_clip),
            config_hash: config_hash(settings),
            settings_json: settings.to_json(),
            steps_per_update: settings.steps_per_update() * ranks.max(1) as u64,
        }
    }

    /// Whether a periodic checkpoint is due after `updates` updates.
    pub fn due(&self, updates: u64) -> bool {
        match self.interval_steps {
            Some(every) => {
                let steps = |u: u64| u.saturating_mul(self.steps_per_update) / every.max(1);
                updates > 0 && steps(updates) > steps(updates - 1)
            }
            None => updates > 0 && updates % self.interval == 0,
        }
    }

    /// The learner's state now, with the collectors' snapshots taken at
    /// the same update boundary.
    pub fn build(
        &self,
        kind: CheckpointKind,
        learner: &dyn Algorithm,
        collectors: Vec<Vec<u8>>,
        clock: (f64, f64),
        recent_returns: Vec<f64>,
    ) -> Checkpoint {
        let (elapsed_s, train_s) = clock;
        Checkpoint {
            kind,
            env_id: self.env_id.clone(),
            env_kwargs: self.env_kwargs.clone(),
            spec: self.spec.clone(),
            obs_norm_clip: self.obs_norm_clip,
            // The states kept at evaluation points leave out the replay
            // buffer: a best checkpoint resumes with an empty one.
            learner: learner.state(kind == CheckpointKind::Best),
            num_updates: learner.num_updates(),
            env_steps: learner.updates_done() * self.steps_per_update,
            elapsed_s,
            train_s,
            config_hash: self.config_hash.clone(),
            settings_json: self.settings_json.clone(),
            collectors,
            recent_returns,
        }
    }

    pub fn write(&self, checkpoint: &Checkpoint) -> Result<PathBuf, RuntimeError> {
        Ok(self.dir.write(checkpoint)?)
    }
}
