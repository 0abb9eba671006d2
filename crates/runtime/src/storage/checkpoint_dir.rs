//! The `checkpoints/` folder of a run: which file each checkpoint goes to,
//! how many are kept, and which one a resumed run continues from.

use std::path::{Path, PathBuf};

use crate::storage::checkpoint::{Checkpoint, CheckpointKind};
use crate::storage::run_dir::{write_atomically, PathError};

/// Where a run can continue from, in words, for messages about what a stop
/// did not save: the newest checkpoint file by name (not read), or that
/// there is none yet.
pub fn newest_checkpoint_note(run_dir: &Path) -> String {
    let dir = CheckpointDir::new(run_dir, 1);
    let mut files = dir.periodic_files();
    files.sort();
    let final_file = dir.dir.join("final.safetensors");
    let newest = if final_file.exists() {
        Some(final_file)
    } else {
        files.pop()
    };
    match newest {
        Some(path) => format!(
            "the newest checkpoint is {}: train --resume {} continues from it",
            path.display(),
            run_dir.display()
        ),
        None => "no checkpoint was written yet".to_string(),
    }
}

/// The `checkpoints/` folder of a run.
pub struct CheckpointDir {
    dir: PathBuf,
    keep_last: usize,
}

/// A checkpoint that could not be used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub path: PathBuf,
    pub reason: String,
}

impl CheckpointDir {
    pub fn new(run_dir: &Path, keep_last: usize) -> Self {
        CheckpointDir {
            dir: run_dir.join("checkpoints"),
            keep_last: keep_last.max(1),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The file a checkpoint goes to: `ckpt-<updates>.safetensors` for
    /// periodic and stop checkpoints, `final.safetensors`, `best.safetensors`.
    pub fn file_for(&self, checkpoint: &Checkpoint) -> PathBuf {
        self.dir.join(match checkpoint.kind {
            CheckpointKind::Periodic | CheckpointKind::Stop => {
                format!("ckpt-{:010}.safetensors", checkpoint.learner.updates_done)
            }
            CheckpointKind::Final => "final.safetensors".to_string(),
            CheckpointKind::Best => "best.safetensors".to_string(),
        })
    }

    /// Writes a checkpoint atomically (a crash at any moment leaves the
    /// previous file whole), then removes periodic checkpoints beyond the
    /// newest `keep_last`.
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<PathBuf, PathError> {
        let path = self.file_for(checkpoint);
        let at = |source| PathError {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(at)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        write_atomically(&self.dir, &name, &checkpoint.encode()).map_err(at)?;
        if matches!(
            checkpoint.kind,
            CheckpointKind::Periodic | CheckpointKind::Stop
        ) {
            let mut periodic = self.periodic_files();
            periodic.sort();
            let excess = periodic.len().saturating_sub(self.keep_last);
            for old in &periodic[..excess] {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(path)
    }

    fn periodic_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name().is_some_and(|n| {
                            let n = n.to_string_lossy();
                            n.starts_with("ckpt-") && n.ends_with(".safetensors")
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The newest checkpoint that reads back whole and passes `accept` (the
    /// caller's checks against the run's config), and every newer one that
    /// did not, with the reason. Best checkpoints are not candidates: a run
    /// continues from where it stopped.
    pub fn newest_valid(
        &self,
        accept: impl Fn(&Checkpoint) -> Result<(), String>,
    ) -> (Option<(PathBuf, Checkpoint)>, Vec<Rejected>) {
        let mut candidates: Vec<(u64, PathBuf)> = Vec::new();
        let mut rejected = Vec::new();
        let mut files = self.periodic_files();
        files.push(self.dir.join("final.safetensors"));
        for path in files {
            if !path.exists() {
                continue;
            }
            // Order by the update count in the name; the file says the truth.
            let order = path
                .file_stem()
                .and_then(|s| {
                    s.to_string_lossy()
                        .strip_prefix("ckpt-")
                        .and_then(|n| n.parse().ok())
                })
                .unwrap_or(u64::MAX);
            candidates.push((order, path));
        }
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        for (_, path) in candidates {
            let result = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| Checkpoint::decode(&bytes))
                .and_then(|c| accept(&c).map(|()| c));
            match result {
                Ok(checkpoint) => return (Some((path, checkpoint)), rejected),
                Err(reason) => rejected.push(Rejected { path, reason }),
            }
        }
        (None, rejected)
    }
}
