//! The run directory: the files other tools read while and after a run.
//!
//! * `config.toml`: the fully resolved configuration;
//! * `train.csv`: one row per update ([`train_csv_header`]);
//! * `eval.csv`: one row per evaluation ([`EVAL_CSV_HEADER`]);
//! * `policy.safetensors`: the final weights of the networks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rl_policy::{ObsNormalizer, PolicySpec};

/// `train.csv`'s columns: the run's clock and counters, what the
/// algorithm reports (`stat_names`, e.g. PPO's losses), and the mean return
/// of the last 100 training episodes.
pub fn train_csv_header(stat_names: &[&str]) -> String {
    format!(
        "time_s,env_steps,updates,steps_per_s,{},episode_return_mean",
        stat_names.join(",")
    )
}
pub const EVAL_CSV_HEADER: &str =
    "time_s,env_steps,policy_version,return_mean,return_std,return_min,return_max,episodes";
pub const POLICY_FILE: &str = "policy.safetensors";
/// The weights of the best evaluation so far (by mean return).
pub const BEST_POLICY_FILE: &str = "best_policy.safetensors";

/// An I/O error with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PathError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> PathError + '_ {
    move |source| PathError {
        path: path.to_path_buf(),
        source,
    }
}

/// An append-only CSV file that is flushed after every row, so a reader
/// never waits for a buffer.
pub struct CsvWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl CsvWriter {
    /// Creates the file with its header line.
    pub fn create(path: PathBuf, header: &str) -> Result<Self, PathError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(at(&path))?;
        let mut writer = CsvWriter {
            path,
            file: BufWriter::new(file),
        };
        writer.write_line(header)?;
        Ok(writer)
    }

    /// Opens an existing CSV file (header already written) to append rows,
    /// as a process that joins a run does.
    pub fn append(path: PathBuf) -> Result<Self, PathError> {
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(at(&path))?;
        Ok(CsvWriter {
            path,
            file: BufWriter::new(file),
        })
    }

    fn write_line(&mut self, line: &str) -> Result<(), PathError> {
        let path = self.path.clone();
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(at(&path))
    }

    /// Appends one row; non-finite numbers are written empty (a missing
    /// value to pandas and spreadsheet tools).
    pub fn row(&mut self, values: &[Value]) -> Result<(), PathError> {
        let line = values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(",");
        self.write_line(&line)
    }
}

/// One CSV cell.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) if v.is_finite() => write!(f, "{v}"),
            Value::Float(_) => Ok(()),
        }
    }
}

/// A run directory being written.
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates the directory (and its parents). An existing directory must be
    /// empty: a run never writes over another run.
    pub fn create(path: &Path) -> Result<Self, PathError> {
        if path.exists() {
            let mut entries = fs::read_dir(path).map_err(at(path))?;
            if entries.next().is_some() {
                return Err(PathError {
                    path: path.to_path_buf(),
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "the run directory already exists and is not empty; choose another --run-dir",
                    ),
                });
            }
        }
        fs::create_dir_all(path).map_err(at(path))?;
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    /// The run directory another process owns (rank 0 of a data-parallel
    /// run, perhaps on another machine): named in messages, never read or
    /// written through this value. Nothing is checked.
    pub fn elsewhere(path: PathBuf) -> Self {
        RunDir { path }
    }

    /// A run directory another process created (its files exist).
    pub fn existing(path: &Path) -> Result<Self, PathError> {
        if !path.is_dir() {
            return Err(PathError {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotFound, "not a run directory"),
            });
        }
        Ok(RunDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates `train.csv` and `eval.csv` with their headers, for the
    /// processes that append to them.
    pub fn create_csv_files(&self, train_header: &str) -> Result<(), PathError> {
        self.train_csv(train_header)?;
        self.eval_csv()?;
        Ok(())
    }

    /// `train.csv`, created by [`RunDir::create_csv_files`], to append to.
    pub fn append_train_csv(&self) -> Result<CsvWriter, PathError> {
        CsvWriter::append(self.path.join("train.csv"))
    }

    /// `eval.csv`, created by [`RunDir::create_csv_files`], to append to.
    pub fn append_eval_csv(&self) -> Result<CsvWriter, PathError> {
        CsvWriter::append(self.path.join("eval.csv"))
    }

    /// Writes `config.toml` atomically (a full disk or a kill leaves the
    /// previous file, never half of one).
    pub fn write_config(&self, toml_text: &str) -> Result<(), PathError> {
        let path = self.path.join("config.toml");
        write_atomically(&self.path, "config.toml", toml_text.as_bytes()).map_err(at(&path))
    }

    pub fn train_csv(&self, header: &str) -> Result<CsvWriter, PathError> {
        CsvWriter::create(self.path.join("train.csv"), header)
    }

    pub fn eval_csv(&self) -> Result<CsvWriter, PathError> {
        CsvWriter::create(self.path.join("eval.csv"), EVAL_CSV_HEADER)
    }

    /// Writes the policy file atomically (temporary file, fsync, rename).
    pub fn write_policy(
        &self,
        spec: &PolicySpec,
        env_id: &str,
        env_kwargs: &rl_env::Kwargs,
        weights: &[f32],
        obs_norm: Option<&ObsNormalizer>,
    ) -> Result<PathBuf, PathError> {
        self.write_policy_as(POLICY_FILE, spec, env_id, env_kwargs, weights, obs_norm)
    }

    /// Writes a policy file called `name` atomically (see
    /// [`write_atomically`]).
    pub fn write_policy_as(
        &self,
        name: &str,
        spec: &PolicySpec,
        env_id: &str,
        env_kwargs: &rl_env::Kwargs,
        weights: &[f32],
        obs_norm: Option<&ObsNormalizer>,
    ) -> Result<PathBuf, PathError> {
        let path = self.path.join(name);
        let bytes =
            crate::storage::policy_file::encode_policy(spec, env_id, env_kwargs, weights, obs_norm);
        write_atomically(&self.path, name, &bytes).map_err(|source| PathError {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

/// Removes `.NAME.tmp` files a killed process left in `dir`.
pub fn remove_stale_temporaries(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Replaces `dir/name` with `bytes` so that a reader, or a crash at any
/// moment, sees the old file or the new one, never a mix, and a process
/// killed while writing leaves nothing behind: the bytes go into an unnamed
/// file (`O_TMPFILE`), which is synced, given the temporary name
/// `.NAME.tmp` only once complete, renamed over `name`, and the directory
/// synced (a new name is linked directly). Only a kill in the instant
/// between the link and the rename of a replacement leaves a complete
/// `.NAME.tmp`; where the file system has no `O_TMPFILE`, the temporary file
/// is written under that name. Either is removed by [`remove_stale_temporaries`]
/// (the supervisor when a run ends, `train --resume` when it starts).
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let unnamed = OpenOptions::new()
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    let result = match unnamed {
        Ok(mut file) => (|| {
            file.write_all(bytes)?;
            file.sync_all()?;
            let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
            let link = |to: &Path| {
                nix::unistd::linkat(
                    nix::fcntl::AT_FDCWD,
                    proc_path.as_str(),
                    nix::fcntl::AT_FDCWD,
                    to,
                    nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                )
            };
            // A new name is linked in one step; replacing a file needs a
            // temporary name for the moment between link and rename.
            match link(&path) {
                Ok(()) => Ok(()),
                Err(nix::errno::Errno::EEXIST) => {
                    let _ = fs::remove_file(&tmp);
                    link(&tmp).map_err(io::Error::from)?;
                    fs::rename(&tmp, &path)
                }
                Err(e) => Err(e.into()),
            }
        })(),
        Err(_) => (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        })(),
    };
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("rl-atomic-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        write_atomically(&dir, "policy.safetensors", b"first").unwrap();
        write_atomically(&dir, "policy.safetensors", b"second, longer").unwrap();
        assert_eq!(
            fs::read(dir.join("policy.safetensors")).unwrap(),
            b"second, longer"
        );
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["policy.safetensors"]);
        // A directory that is not there is an error, not a panic.
        assert!(write_atomically(&dir.join("missing"), "x", b"x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
