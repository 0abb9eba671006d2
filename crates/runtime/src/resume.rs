//! Continuing a run in place (`train --resume RUN_DIR`): the newest
//! checkpoint that reads back whole and belongs to this run is chosen (every
//! newer one that does not is reported, never silently skipped),
//! `train.csv` and `eval.csv` are cut back to it, and the TensorBoard files
//! are rebuilt from them, so the curves continue without a gap or a
//! duplicate row.
//!
//! Everything is worked out before anything is written, and a run
//! directory is never left worse than it was found: a CSV file that is
//! missing or empty gets its header back and its rows rebuilt from the
//! TensorBoard files; one that lost only its header line gets it back; one
//! whose first line is something else is refused, with what to do. A
//! `config.toml` that is missing or damaged is rebuilt from the settings
//! every checkpoint carries ([`settings_from_checkpoints`]).

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rl_env::Registry;

use crate::clock::unix_now;
use crate::error::RuntimeError;
use crate::recording::train::rebuild_tensorboard;
use crate::settings::TrainSettings;
use crate::spec::spec_for;
use crate::storage::checkpoint::{config_hash, CheckpointKind, ResumeFrom};
use crate::storage::checkpoint_dir::{CheckpointDir, Rejected};
use crate::storage::run_dir::{
    remove_stale_temporaries, train_csv_header, write_atomically, PathError, RunDir,
    EVAL_CSV_HEADER,
};

/// What resuming found.
#[derive(Debug)]
pub struct ResumePlan {
    /// The checkpoint to continue from.
    pub from: ResumeFrom,
    /// Newer checkpoints that could not be used, with the reason.
    pub rejected: Vec<Rejected>,
    /// The checkpoint is at the last update the settings ask for: the run
    /// is complete.
    pub complete: bool,
    /// Rows of `train.csv` and `eval.csv` after the checkpoint, dropped.
    pub dropped_rows: (usize, usize),
    /// What was repaired in the run directory, in words.
    pub repairs: Vec<String>,
}

/// The run's settings as its newest valid checkpoint holds them, and that
/// checkpoint: for a run whose `config.toml` is lost or damaged.
pub fn settings_from_checkpoints(run_dir: &RunDir) -> Result<(TrainSettings, PathBuf), String> {
    let dir = CheckpointDir::new(run_dir.path(), 1);
    let (found, rejected) = dir.newest_valid(|c| {
        serde_json::from_str::<TrainSettings>(&c.settings_json)
            .map(|_| ())
            .map_err(|e| format!("its settings do not parse: {e}"))
    });
    match found {
        Some((path, c)) => serde_json::from_str(&c.settings_json)
            .map(|settings| (settings, path))
            .map_err(|e| e.to_string()),
        None => {
            let reasons: Vec<String> = rejected
                .iter()
                .map(|r| format!("{}: {}", r.path.display(), r.reason))
                .collect();
            Err(format!(
                "no valid checkpoint in {} holds them{}",
                dir.path().display(),
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", reasons.join("; "))
                }
            ))
        }
    }
}

/// One CSV file of the run, as it will be written back.
struct CsvPlan {
    path: PathBuf,
    text: String,
    later: usize,
    repair: Option<String>,
}

/// Works out what `file` (with `header`) becomes when the run goes back to
/// `max_value` in `column`: cut back, or repaired, or refused.
fn plan_csv(
    run_dir: &Path,
    file: &str,
    header: &str,
    prefix: &str,
    column: &str,
    max_value: f64,
) -> Result<CsvPlan, String> {
    let path = run_dir.join(file);
    let shown = path.display();
    let width = header.split(',').count();
    let (text, mut repair) = match std::fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let first = text.lines().next().unwrap_or_default();
            if text.trim().is_empty() {
                let (rebuilt, rows) = rows_from_tensorboard(run_dir, prefix, header);
                (
                    rebuilt,
                    Some(format!(
                        "{shown} was empty: its header is back, with {rows} rows rebuilt from the TensorBoard files (float32 precision)"
                    )),
                )
            } else if first.trim_end() != header && rl_metrics::csv::is_row(first, width) {
                (
                    format!("{header}\n{text}"),
                    Some(format!("{shown} had lost its header line: it is back")),
                )
            } else {
                (text, None)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (rebuilt, rows) = rows_from_tensorboard(run_dir, prefix, header);
            (
                rebuilt,
                Some(format!(
                    "{shown} was missing: it is back, with {rows} rows rebuilt from the TensorBoard files (float32 precision)"
                )),
            )
        }
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    let (kept, later, unreadable) =
        rl_metrics::csv::cut_after(&text, header, column, max_value).map_err(|e| {
            format!(
                "{shown}: {e}. It is not a {file} this program wrote; move it away (mv {shown} {shown}.old) to resume with its rows rebuilt from the TensorBoard files, or put the original back"
            )
        })?;
    if unreadable > 0 {
        let note = format!("{unreadable} unreadable lines of {shown} dropped");
        repair = Some(match repair {
            Some(r) => format!("{r}; {note}"),
            None => note,
        });
    }
    Ok(CsvPlan {
        path,
        text: kept,
        later,
        repair,
    })
}

/// The rows of a run CSV rebuilt from its TensorBoard event files (every
/// CSV value is a scalar `prefix/column` at step `env_steps`), as CSV text
/// with the header, and how many rows. Records after damage in a file are
/// left out.
fn rows_from_tensorboard(run_dir: &Path, prefix: &str, header: &str) -> (String, usize) {
    let mut rows: BTreeMap<i64, BTreeMap<String, f32>> = BTreeMap::new();
    let suffix = format!(".{prefix}");
    for entry in std::fs::read_dir(run_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.contains("tfevents") && name.ends_with(&suffix)) {
            continue;
        }
        let Ok((scalars, _)) = rl_metrics::tensorboard::read_scalars_until_damage(&entry.path())
        else {
            continue;
        };
        for (step, tag, value) in scalars {
            if let Some(column) = tag.strip_prefix(&format!("{prefix}/")) {
                rows.entry(step)
                    .or_default()
                    .insert(column.to_string(), value);
            }
        }
    }
    let mut text = format!("{header}\n");
    for (step, values) in &rows {
        let cells: Vec<String> = header
            .split(',')
            .map(|column| match column {
                "env_steps" => step.to_string(),
                c => values.get(c).map_or(String::new(), |v| v.to_string()),
            })
            .collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    (text, rows.len())
}

/// Finds the checkpoint to continue from and cuts the run's files back to
/// it (see the module documentation).
pub fn prepare_resume(
    registry: &Registry,
    settings: &TrainSettings,
    run_dir: &RunDir,
    ranks: usize,
) -> Result<ResumePlan, RuntimeError> {
    let spec = spec_for(registry, settings)?;
    let hash = config_hash(settings);
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
        // A data-parallel run's checkpoints hold every rank's collectors
        // (any number of ranks resumes it: ranks beyond the checkpoint's
        // start new episodes).
        if c.collectors.len() % collectors != 0 {
            return Err(format!(
                "holds the envs of {} collectors, this run has {collectors} per rank",
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
    let updates_done = checkpoint.learner.updates_done;
    let num_updates = settings.num_updates_on(ranks);
    if updates_done > num_updates {
        return Err(RuntimeError::Failed(format!(
            "cannot resume {}: {} is at update {updates_done}, but [run] total_timesteps = {} makes {num_updates} updates in all; raise it (--set run.total_timesteps=...); nothing was changed",
            run_dir.path().display(),
            path.display(),
            settings.run.total_timesteps
        )));
    }
    let updates = updates_done as f64;
    let plan = |file, header, prefix, column| {
        plan_csv(run_dir.path(), file, header, prefix, column, updates).map_err(|e| {
            RuntimeError::Failed(format!(
                "cannot resume {}: {e}; nothing was changed",
                run_dir.path().display()
            ))
        })
    };
    let train_header = train_csv_header(settings.stat_names());
    let train = plan("train.csv", &train_header, "train", "updates")?;
    let eval = plan("eval.csv", EVAL_CSV_HEADER, "eval", "policy_version")?;

    // Only now is anything written.
    remove_stale_temporaries(run_dir.path());
    remove_stale_temporaries(dir.path());
    for csv in [&train, &eval] {
        let name = csv
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        write_atomically(run_dir.path(), &name, csv.text.as_bytes()).map_err(|source| {
            PathError {
                path: csv.path.clone(),
                source,
            }
        })?;
    }
    let start_unix_s = unix_now() - checkpoint.elapsed_s;
    rebuild_tensorboard(run_dir, start_unix_s, settings.stat_names())?;
    Ok(ResumePlan {
        complete: checkpoint.kind == CheckpointKind::Final && updates_done >= num_updates,
        from: ResumeFrom { path, checkpoint },
        rejected,
        dropped_rows: (train.later, eval.later),
        repairs: [train.repair, eval.repair].into_iter().flatten().collect(),
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
