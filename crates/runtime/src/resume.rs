//! Continuing a run in place (`train --resume RUN_DIR`): the newest
//! checkpoint that reads back whole and belongs to this run's config is
//! chosen (every newer one that does not is reported, never silently
//! skipped), `train.csv` and `eval.csv` are cut back to it, and the
//! TensorBoard files are rebuilt from them, so the curves continue without
//! a gap or a duplicate row. Nothing in the run directory changes before a
//! checkpoint was found.

use std::os::fd::AsRawFd;

use rl_env::Registry;

use crate::checkpoint::{config_hash, CheckpointDir, CheckpointKind, Rejected};
use crate::record::rebuild_tensorboard;
use crate::run_dir::{PathError, RunDir};
use crate::trainer::{spec_for, ResumeFrom, RuntimeError};
use crate::TrainSettings;

/// What resuming found.
#[derive(Debug)]
pub struct ResumePlan {
    /// The checkpoint to continue from.
    pub from: ResumeFrom,
    /// Newer checkpoints that could not be used, with the reason.
    pub rejected: Vec<Rejected>,
    /// The checkpoint is the final one: the run is complete.
    pub complete: bool,
    /// Rows of `train.csv` and `eval.csv` after the checkpoint, dropped.
    pub dropped_rows: (usize, usize),
}

/// Finds the checkpoint to continue from and cuts the run's files back to
/// it (see the module documentation).
pub fn prepare_resume(
    registry: &Registry,
    settings: &TrainSettings,
    run_dir: &RunDir,
) -> Result<ResumePlan, RuntimeError> {
    let spec = spec_for(registry, settings)?;
    let hash = config_hash(&settings.to_json());
    let collectors = settings.run.num_workers.max(1);
    let dir = CheckpointDir::new(run_dir.path(), settings.checkpoint.keep_last);
    let (found, rejected) = dir.newest_valid(|c| {
        if c.config_hash != hash {
            return Err(format!(
                "made with other settings (config hash {}, this run's config.toml gives {hash}); was config.toml edited?",
                c.config_hash
            ));
        }
        if c.env_id != settings.env.id || c.spec != spec {
            return Err(format!(
                "made for {} with another network than this run's {}",
                c.env_id, settings.env.id
            ));
        }
        if !c.collectors.is_empty() && c.collectors.len() != collectors {
            return Err(format!(
                "holds the envs of {} collectors, this run has {collectors}",
                c.collectors.len()
            ));
        }
        Ok(())
    });
    let Some((path, checkpoint)) = found else {
        let reasons: Vec<String> = rejected
            .iter()
            .map(|r| format!("  {}: {}", r.path.display(), r.reason))
            .collect();
        let detail = if reasons.is_empty() {
            "there is none".to_string()
        } else {
            format!("none is usable:\n{}", reasons.join("\n"))
        };
        return Err(RuntimeError::Failed(format!(
            "cannot resume {}: no valid checkpoint in {} ({detail}); nothing was changed",
            run_dir.path().display(),
            dir.path().display()
        )));
    };
    crate::run_dir::remove_stale_temporaries(run_dir.path());
    crate::run_dir::remove_stale_temporaries(dir.path());
    let updates = checkpoint.learner.updates_done as f64;
    let at = |path: std::path::PathBuf| move |source| PathError { path, source };
    let train = run_dir.path().join("train.csv");
    let eval = run_dir.path().join("eval.csv");
    let dropped_train =
        rl_metrics::csv::truncate_after(&train, "updates", updates).map_err(at(train))?;
    let dropped_eval =
        rl_metrics::csv::truncate_after(&eval, "policy_version", updates).map_err(at(eval))?;
    let start_unix_s = crate::child::unix_now() - checkpoint.elapsed_s;
    rebuild_tensorboard(run_dir, start_unix_s)?;
    Ok(ResumePlan {
        complete: checkpoint.kind == CheckpointKind::Final
            && checkpoint.learner.updates_done == checkpoint.num_updates,
        from: ResumeFrom { path, checkpoint },
        rejected,
        dropped_rows: (dropped_train, dropped_eval),
    })
}

/// An exclusive lock on a run directory, held while a run writes it (by
/// `flock` on the directory itself: no lock file is left behind). A second
/// `train` on the same directory, say a `--resume` while the run still
/// goes on, is refused.
pub struct RunLock {
    _dir: std::fs::File,
}

impl RunLock {
    pub fn acquire(run_dir: &RunDir) -> Result<Self, RuntimeError> {
        let dir = std::fs::File::open(run_dir.path()).map_err(|source| PathError {
            path: run_dir.path().to_path_buf(),
            source,
        })?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let locked = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            return Err(RuntimeError::Failed(format!(
                "{} is in use by another train process (is the run still going?)",
                run_dir.path().display()
            )));
        }
        Ok(RunLock { _dir: dir })
    }
}
