//! Checkpoints: everything a run needs to continue exactly, in one
//! safetensors file.
//!
//! ```text
//! tensors   actor.0.weight ... critic.4.bias, actor_logstd   the parameters (f32, layout names)
//!           optimizer.exp_avg, optimizer.exp_avg_sq           Adam's moments (f32, flat, layout order)
//!           obs_norm.mean, obs_norm.var                       observation statistics (f64), if normalised
//!           reward_norm.mean, .var, .returns                  reward scaling (f64), if scaled
//!           collector.K                                       worker K's envs and sampling streams (u8)
//! metadata  format "ferrorl-checkpoint-v1", kind (periodic | stop | final | best),
//!           env_steps, updates, weights_version, num_updates, elapsed_s, train_s,
//!           adam_step, obs_norm_count,
//!           reward_norm_count, rng (4 x u64), config_hash, num_collectors,
//!           the policy's own metadata (env_id, obs_dim, action_head, ...),
//!           checksum: CRC-32C of the whole file with this field's value as 00000000
//! ```
//!
//! A checkpoint is also a policy file: `evaluate` and Python's `safetensors`
//! read the parameters by their names. Reading one checks the format, the
//! checksum (a flipped bit anywhere is caught), that every tensor has the
//! shape the architecture in the metadata needs, and that no number is NaN
//! or infinite; each problem is an error naming the file and what is wrong.

use std::path::{Path, PathBuf};

use rl_algo::ppo::LearnerState;
use rl_metrics::crc32c::crc32c;
use rl_policy::{ActionHead, Activation, ObsNormalizer, PolicySpec, RunningMeanStd};

use crate::run_dir::{policy_metadata, policy_tensors, write_atomically, PathError};
use crate::safetensors::{encode, SafeTensors, TensorData};

pub const CHECKPOINT_FORMAT: &str = "ferrorl-checkpoint-v1";

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointKind {
    /// Every `[checkpoint] interval_updates`.
    Periodic,
    /// When a run stopped early (Ctrl-C, SIGTERM, too many restarts).
    Stop,
    /// After the last update.
    Final,
    /// The weights with the best evaluation so far.
    Best,
}

impl CheckpointKind {
    fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Periodic => "periodic",
            CheckpointKind::Stop => "stop",
            CheckpointKind::Final => "final",
            CheckpointKind::Best => "best",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "periodic" => CheckpointKind::Periodic,
            "stop" => CheckpointKind::Stop,
            "final" => CheckpointKind::Final,
            "best" => CheckpointKind::Best,
            _ => return None,
        })
    }
}

/// A run's state at one update boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub kind: CheckpointKind,
    pub env_id: String,
    pub spec: PolicySpec,
    /// The observation normaliser's clip (when observations are normalised).
    pub obs_norm_clip: Option<f64>,
    pub learner: LearnerState,
    pub num_updates: u64,
    pub env_steps: u64,
    /// Seconds since the run started (curves continue from here).
    pub elapsed_s: f64,
    /// Seconds spent training (the denominator of `steps_per_s`).
    pub train_s: f64,
    /// The returns of the last (at most 100) finished training episodes,
    /// oldest first (`episode_return_mean` continues from them).
    pub recent_returns: Vec<f64>,
    /// Of the run's settings (see [`config_hash`]).
    pub config_hash: String,
    /// Each worker's collector snapshot, by worker index (one for a
    /// single-process run); empty when the envs do not support snapshots.
    pub collectors: Vec<Vec<u8>>,
}

/// A short hash of a run's settings (as JSON): a checkpoint only continues
/// the run it was made by.
pub fn config_hash(settings_json: &str) -> String {
    format!("{:08x}", crc32c(settings_json.as_bytes()))
}

/// Parses the policy metadata (see [`crate::run_dir::policy_metadata`])
/// back into the architecture, env id and observation clip.
pub fn policy_from_metadata(
    st: &SafeTensors<'_>,
) -> Result<(PolicySpec, String, Option<f64>), String> {
    let sizes = |key: &str| -> Result<Vec<usize>, String> {
        let raw = st.meta(key)?;
        let inner = raw.trim().trim_start_matches('[').trim_end_matches(']');
        if inner.trim().is_empty() {
            return Ok(Vec::new());
        }
        inner
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|_| format!("metadata {key} = {raw:?} is not a list of sizes"))
            })
            .collect()
    };
    let outputs: usize = st.meta_parse("action_outputs")?;
    let head = match st.meta("action_head")? {
        "categorical" => ActionHead::Categorical { n: outputs },
        "gaussian" => ActionHead::Gaussian { dim: outputs },
        other => {
            return Err(format!(
                "metadata action_head = {other:?} is not categorical or gaussian"
            ))
        }
    };
    let activation = match st.meta("activation")? {
        "Tanh" => Activation::Tanh,
        "ReLU" => Activation::Relu,
        other => {
            return Err(format!(
                "metadata activation = {other:?} is not Tanh or ReLU"
            ))
        }
    };
    let spec = PolicySpec {
        obs_dim: st.meta_parse("obs_dim")?,
        head,
        actor_hidden: sizes("actor_hidden")?,
        critic_hidden: sizes("critic_hidden")?,
        activation,
    };
    let clip = match st.meta("obs_norm_clip")? {
        "none" => None,
        raw => Some(
            raw.parse()
                .map_err(|_| format!("metadata obs_norm_clip = {raw:?} is not a number"))?,
        ),
    };
    Ok((spec, st.meta("env_id")?.to_string(), clip))
}

/// Reads a policy's parameters (flat, layout order) and observation
/// normaliser from a policy file or checkpoint, checking every shape.
pub fn policy_weights(
    st: &SafeTensors<'_>,
    spec: &PolicySpec,
    clip: Option<f64>,
) -> Result<(Vec<f32>, Option<ObsNormalizer>), String> {
    let layout = spec.layout();
    let mut weights = vec![0.0_f32; layout.total_len];
    for e in &layout.entries {
        let shape = st
            .shape(&e.name)
            .ok_or_else(|| format!("tensor {} is missing", e.name))?;
        if shape != e.shape.as_slice() {
            return Err(format!(
                "tensor {} has shape {shape:?}, the architecture in the metadata needs {:?}",
                e.name, e.shape
            ));
        }
        weights[e.offset..e.offset + e.len].copy_from_slice(&st.f32s(&e.name)?);
    }
    let obs_norm = match clip {
        None => None,
        Some(clip) => {
            let (mean, var) = (st.f64s("obs_norm.mean")?, st.f64s("obs_norm.var")?);
            if mean.len() != spec.obs_dim
                || var.len() != spec.obs_dim
                || var.iter().any(|v| *v < 0.0)
            {
                return Err(format!(
                    "observation statistics of {} and {} values (variances >= 0) for observations of {}",
                    mean.len(),
                    var.len(),
                    spec.obs_dim
                ));
            }
            let mut norm = ObsNormalizer::new(spec.obs_dim, clip);
            norm.stats.mean = mean;
            norm.stats.var = var;
            Some(norm)
        }
    };
    Ok((weights, obs_norm))
}

impl Checkpoint {
    /// The file's bytes, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let l = &self.learner;
        let obs_norm = l
            .obs_norm
            .as_ref()
            .zip(self.obs_norm_clip)
            .map(|(stats, clip)| ObsNormalizer {
                stats: stats.clone(),
                clip,
            });
        let mut tensors = policy_tensors(&self.spec, &l.weights, obs_norm.as_ref());
        let n = l.weights.len();
        tensors.push(TensorData::f32s(
            "optimizer.exp_avg",
            vec![n],
            &l.adam_exp_avg,
        ));
        tensors.push(TensorData::f32s(
            "optimizer.exp_avg_sq",
            vec![n],
            &l.adam_exp_avg_sq,
        ));
        if let Some((stats, returns)) = &l.reward_scaler {
            tensors.push(TensorData::f64s("reward_norm.mean", &stats.mean));
            tensors.push(TensorData::f64s("reward_norm.var", &stats.var));
            tensors.push(TensorData::f64s("reward_norm.returns", returns));
        }
        for (k, bytes) in self.collectors.iter().enumerate() {
            tensors.push(TensorData::u8s(format!("collector.{k}"), bytes.clone()));
        }
        tensors.push(TensorData::f64s("recent_returns", &self.recent_returns));
        let mut meta = policy_metadata(&self.spec, &self.env_id, self.obs_norm_clip);
        let rng = l.rng.map(|w| w.to_string()).join(",");
        for (k, v) in [
            ("format", CHECKPOINT_FORMAT.to_string()),
            ("kind", self.kind.as_str().to_string()),
            ("env_steps", self.env_steps.to_string()),
            ("updates", l.updates_done.to_string()),
            // The version the workers' weights block held for these weights.
            ("weights_version", l.updates_done.to_string()),
            ("num_updates", self.num_updates.to_string()),
            ("elapsed_s", self.elapsed_s.to_string()),
            ("train_s", self.train_s.to_string()),
            ("adam_step", l.adam_step.to_string()),
            (
                "obs_norm_count",
                l.obs_norm
                    .as_ref()
                    .map_or("none".into(), |s| s.count.to_string()),
            ),
            (
                "reward_norm_count",
                l.reward_scaler
                    .as_ref()
                    .map_or("none".into(), |(s, _)| s.count.to_string()),
            ),
            ("rng", rng),
            ("config_hash", self.config_hash.clone()),
            ("num_collectors", self.collectors.len().to_string()),
            ("checksum", "00000000".to_string()),
        ] {
            meta.insert(k.to_string(), v);
        }
        let mut bytes = encode(tensors, &meta);
        seal(&mut bytes);
        bytes
    }

    /// Reads and checks a checkpoint file's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        // The checksum first: damage anywhere reads as damage.
        let (stored, computed) = checksum(bytes)?;
        if stored != computed {
            return Err(format!(
                "checksum mismatch (stored {stored}, computed {computed}): the file is damaged"
            ));
        }
        let st = SafeTensors::decode(bytes)?;
        let format = st.meta("format")?;
        if format != CHECKPOINT_FORMAT {
            return Err(format!(
                "format {format:?} is not supported; this build reads {CHECKPOINT_FORMAT:?}"
            ));
        }
        let kind = CheckpointKind::parse(st.meta("kind")?)
            .ok_or_else(|| format!("metadata kind = {:?} is unknown", st.metadata["kind"]))?;
        let (spec, env_id, clip) = policy_from_metadata(&st)?;
        let (weights, obs_norm) = policy_weights(&st, &spec, clip)?;
        let n = weights.len();
        let moments = |name: &str| -> Result<Vec<f32>, String> {
            let v = st.f32s(name)?;
            if v.len() != n {
                return Err(format!(
                    "tensor {name} holds {} values, the network has {n}",
                    v.len()
                ));
            }
            Ok(v)
        };
        let (adam_exp_avg, adam_exp_avg_sq) = (
            moments("optimizer.exp_avg")?,
            moments("optimizer.exp_avg_sq")?,
        );
        if let Some(i) = adam_exp_avg_sq.iter().position(|v| *v < 0.0) {
            return Err(format!(
                "tensor optimizer.exp_avg_sq is negative at index {i}"
            ));
        }
        let count = |key: &str| -> Result<Option<f64>, String> {
            match st.meta(key)? {
                "none" => Ok(None),
                raw => raw
                    .parse::<f64>()
                    .ok()
                    .filter(|c| c.is_finite() && *c > 0.0)
                    .map(Some)
                    .ok_or_else(|| format!("metadata {key} = {raw:?} is not a positive count")),
            }
        };
        let obs_count = count("obs_norm_count")?;
        let obs_norm = match (obs_norm, obs_count) {
            (Some(norm), Some(count)) => Some(RunningMeanStd {
                count,
                ..norm.stats
            }),
            (None, None) => None,
            _ => return Err("observation statistics and their count disagree".into()),
        };
        let reward_scaler = match count("reward_norm_count")? {
            None => None,
            Some(count) => {
                let (mean, var) = (st.f64s("reward_norm.mean")?, st.f64s("reward_norm.var")?);
                if mean.len() != 1 || var.len() != 1 || var[0] < 0.0 {
                    return Err("reward statistics are not one mean and one variance >= 0".into());
                }
                Some((
                    RunningMeanStd { mean, var, count },
                    st.f64s("reward_norm.returns")?,
                ))
            }
        };
        let rng: Vec<u64> = st
            .meta("rng")?
            .split(',')
            .map(|w| {
                w.parse().map_err(|_| {
                    format!("metadata rng = {:?} is not 4 integers", st.metadata["rng"])
                })
            })
            .collect::<Result<_, _>>()?;
        let rng: [u64; 4] = rng
            .try_into()
            .map_err(|_| "metadata rng is not 4 integers".to_string())?;
        let updates: u64 = st.meta_parse("updates")?;
        let num_updates: u64 = st.meta_parse("num_updates")?;
        if updates > num_updates {
            return Err(format!("{updates} updates done of {num_updates}"));
        }
        let elapsed_s: f64 = st.meta_parse("elapsed_s")?;
        let train_s: f64 = st.meta_parse("train_s")?;
        for (key, t) in [("elapsed_s", elapsed_s), ("train_s", train_s)] {
            if !t.is_finite() || t < 0.0 {
                return Err(format!("metadata {key} = {t} is not a time"));
            }
        }
        let num_collectors: usize = st.meta_parse("num_collectors")?;
        let collectors = (0..num_collectors)
            .map(|k| st.u8s(&format!("collector.{k}")).map(<[u8]>::to_vec))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Checkpoint {
            kind,
            env_id,
            spec,
            obs_norm_clip: clip,
            learner: LearnerState {
                weights,
                adam_exp_avg,
                adam_exp_avg_sq,
                adam_step: st.meta_parse("adam_step")?,
                obs_norm,
                reward_scaler,
                rng,
                updates_done: updates,
            },
            num_updates,
            env_steps: st.meta_parse("env_steps")?,
            elapsed_s,
            train_s,
            recent_returns: st.f64s("recent_returns")?,
            config_hash: st.meta("config_hash")?.to_string(),
            collectors,
        })
    }
}

/// Where the checksum's 8 hex digits are in a file: found in the header
/// text, without parsing the rest.
fn checksum_field(bytes: &[u8]) -> Result<std::ops::Range<usize>, String> {
    let len: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("truncated: {} bytes", bytes.len()))?;
    let end = usize::try_from(u64::from_le_bytes(len))
        .ok()
        .and_then(|l| l.checked_add(8))
        .filter(|e| *e <= bytes.len())
        .ok_or("truncated: the header is longer than the file")?;
    let key = b"\"checksum\":\"";
    let at = bytes[8..end]
        .windows(key.len())
        .position(|w| w == key)
        .ok_or("not a checkpoint: its metadata has no checksum")?;
    let value = 8 + at + key.len();
    if value + 8 > end {
        return Err("the checksum field is cut short".into());
    }
    Ok(value..value + 8)
}

/// The stored and the computed checksum: CRC-32C of the whole file with
/// the checksum's value replaced by zeros.
fn checksum(bytes: &[u8]) -> Result<(String, String), String> {
    let field = checksum_field(bytes)?;
    let stored = String::from_utf8_lossy(&bytes[field.clone()]).into_owned();
    // Over the file as if the field held zeros, without copying the file.
    let crc = crc32c(&bytes[..field.start]);
    let crc = rl_metrics::crc32c::update(crc, b"00000000");
    let crc = rl_metrics::crc32c::update(crc, &bytes[field.end..]);
    Ok((stored, format!("{crc:08x}")))
}

/// Fills in the checksum of an encoded checkpoint (one whose checksum field
/// holds the placeholder, or a stale value after an edit: tools and tests
/// that alter a checkpoint on purpose reseal it).
pub fn seal(bytes: &mut [u8]) {
    if let (Ok(field), Ok((_, sum))) = (checksum_field(bytes), checksum(bytes)) {
        bytes[field].copy_from_slice(sum.as_bytes());
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        let spec = PolicySpec {
            obs_dim: 3,
            head: ActionHead::Gaussian { dim: 1 },
            actor_hidden: vec![4],
            critic_hidden: vec![5, 2],
            activation: Activation::Tanh,
        };
        let n = spec.layout().total_len;
        Checkpoint {
            kind: CheckpointKind::Periodic,
            env_id: "Pendulum-v1".into(),
            spec,
            obs_norm_clip: Some(10.0),
            learner: LearnerState {
                weights: (0..n).map(|i| i as f32 * 0.01).collect(),
                adam_exp_avg: vec![0.5; n],
                adam_exp_avg_sq: vec![0.25; n],
                adam_step: 40,
                obs_norm: Some(RunningMeanStd {
                    mean: vec![0.1, 0.2, 1.0 / 3.0],
                    var: vec![1.0, 2.0, 3.0],
                    count: 1234.0001,
                }),
                reward_scaler: Some((
                    RunningMeanStd {
                        mean: vec![0.0],
                        var: vec![7.5],
                        count: 99.0,
                    },
                    vec![1.0, -2.0],
                )),
                rng: [1, 2, 3, u64::MAX],
                updates_done: 10,
            },
            num_updates: 50,
            env_steps: 10 * 256,
            elapsed_s: 12.5,
            train_s: 10.25,
            recent_returns: vec![-150.0, -140.5],
            config_hash: "0badf00d".into(),
            collectors: vec![vec![1, 2, 3], vec![]],
        }
    }

    #[test]
    fn a_checkpoint_reads_back_exactly() {
        let c = checkpoint();
        assert_eq!(Checkpoint::decode(&c.encode()).unwrap(), c);
        let plain = Checkpoint {
            obs_norm_clip: None,
            learner: LearnerState {
                obs_norm: None,
                reward_scaler: None,
                ..c.learner.clone()
            },
            collectors: vec![],
            ..c
        };
        assert_eq!(Checkpoint::decode(&plain.encode()).unwrap(), plain);
    }

    #[test]
    fn damaged_checkpoints_are_refused_with_the_reason() {
        let bytes = checkpoint().encode();
        let err = Checkpoint::decode(&bytes[..bytes.len() - 10]).unwrap_err();
        assert!(err.contains("damaged"), "{err}");
        let err = Checkpoint::decode(&bytes[..100]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        for byte in (20..bytes.len()).step_by(37) {
            let mut flipped = bytes.clone();
            flipped[byte] ^= 0x10;
            let err = Checkpoint::decode(&flipped).unwrap_err();
            assert!(
                err.contains("checksum") || err.contains("truncated") || err.contains("damaged"),
                "byte {byte}: {err}"
            );
        }
        // Edits of the header that keep its length, resealed.
        let swap = |from: &str, to: &str| {
            assert_eq!(from.len(), to.len());
            let mut b = bytes.clone();
            let at = b
                .windows(from.len())
                .position(|w| w == from.as_bytes())
                .unwrap();
            b[at..at + from.len()].copy_from_slice(to.as_bytes());
            seal(&mut b);
            b
        };
        let err =
            Checkpoint::decode(&swap(CHECKPOINT_FORMAT, "ferrorl-checkpoint-v9")).unwrap_err();
        assert!(err.contains("not supported"), "{err}");
        let err = Checkpoint::decode(&swap("\"shape\":[4,3]", "\"shape\":[3,4]")).unwrap_err();
        assert!(err.contains("actor.0.weight has shape [3, 4]"), "{err}");
        // A NaN moment, sealed: the checksum passes, the value check does not.
        let mut c = checkpoint();
        c.learner.adam_exp_avg[3] = f32::NAN;
        let err = Checkpoint::decode(&c.encode()).unwrap_err();
        assert!(
            err.contains("optimizer.exp_avg holds NaN at index 3"),
            "{err}"
        );
    }
}
