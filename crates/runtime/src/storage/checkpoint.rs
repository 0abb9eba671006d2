//! Checkpoints: everything a run needs to continue exactly, in one
//! safetensors file.
//!
//! ```text
//! tensors   actor.0.weight ... critic.4.bias, actor_logstd   the parameters (f32, layout names)
//!           optimizer.exp_avg, optimizer.exp_avg_sq           Adam's moments (f32, flat, layout order)
//!           obs_norm.mean, obs_norm.var                       observation statistics (f64), if normalised
//!           reward_norm.mean, .var, .returns                  reward scaling (f64), if scaled
//!           collector.K                                       collector K's envs and sampling streams (u8): worker K,
//!                                                             in global env order (every rank's workers, rank by
//!                                                             rank, in a data-parallel run's)
//!           state.NAME                                        the off-policy learner's own tensors (f32):
//!                                                             state.agent.actor, state.agent.qf1_target,
//!                                                             state.agent.actor_adam.exp_avg, state.replay.obs, ...
//! metadata  format "ferrorl-checkpoint-v3", kind (periodic | stop | final | best),
//!           env_steps, updates, weights_version, num_updates, elapsed_s, train_s,
//!           adam_step, obs_norm_count,
//!           reward_norm_count, rng (4 x u64), counters (the off-policy learner's, JSON
//!           {name: value}), config_hash, settings (the run's
//!           settings as JSON), num_collectors,
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

use rl_algo::algorithm::LearnerState;
use rl_metrics::crc32c::crc32c;
use rl_policy::{ObsNormalizer, PolicySpec, RunningMeanStd};

use crate::settings::TrainSettings;
use crate::storage::policy_file::{
    policy_from_metadata, policy_metadata, policy_tensors, policy_weights, PolicyHeader,
    PolicyWeights,
};
use crate::storage::safetensors::{checksum, encode, seal, SafeTensors, TensorData};

pub const CHECKPOINT_FORMAT: &str = "ferrorl-checkpoint-v3";

/// The prefix of an algorithm's own tensors.
const STATE: &str = "state.";

/// Formats of earlier builds: refused with a message saying so (v2 held
/// settings from before `total_timesteps` and normalisation left `[ppo]`).
const OLDER_FORMATS: [&str; 2] = ["ferrorl-checkpoint-v1", "ferrorl-checkpoint-v2"];

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
    pub env_kwargs: rl_env::Kwargs,
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
    /// The run's whole settings as JSON: a run whose `config.toml` is lost
    /// or damaged is rebuilt from them on resume.
    pub settings_json: String,
    /// Each worker's collector snapshot, by worker index (one for a
    /// single-process run); empty when the envs do not support snapshots.
    pub collectors: Vec<Vec<u8>>,
}

/// A short hash of the settings a checkpoint's state depends on (see
/// [`TrainSettings::fixed_for_the_run`]): a checkpoint only continues the
/// run it was made by, whatever else a resume changes.
pub fn config_hash(settings: &TrainSettings) -> String {
    let text: Vec<String> = settings
        .fixed_for_the_run()
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    format!("{:08x}", crc32c(text.join("\n").as_bytes()))
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
        // PPO's Adam; the off-policy learners keep theirs in `state.*`.
        if !l.adam_exp_avg.is_empty() {
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
        }
        for (name, values) in &l.tensors {
            tensors.push(TensorData::f32s(
                format!("{STATE}{name}"),
                vec![values.len()],
                values,
            ));
        }
        if let Some((stats, returns)) = &l.reward_scaler {
            tensors.push(TensorData::f64s("reward_norm.mean", &stats.mean));
            tensors.push(TensorData::f64s("reward_norm.var", &stats.var));
            tensors.push(TensorData::f64s("reward_norm.returns", returns));
        }
        for (k, bytes) in self.collectors.iter().enumerate() {
            tensors.push(TensorData::u8s(format!("collector.{k}"), bytes.clone()));
        }
        tensors.push(TensorData::f64s("recent_returns", &self.recent_returns));
        let mut meta = policy_metadata(
            &self.spec,
            &self.env_id,
            &self.env_kwargs,
            self.obs_norm_clip,
        );
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
            (
                "counters",
                serde_json::to_string(
                    &l.counters
                        .iter()
                        .cloned()
                        .collect::<std::collections::BTreeMap<String, u64>>(),
                )
                .unwrap_or_default(),
            ),
            ("config_hash", self.config_hash.clone()),
            ("settings", self.settings_json.clone()),
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
        if OLDER_FORMATS.contains(&format) {
            return Err(format!(
                "format {format:?} was written by an earlier version of ferrorl; this build reads {CHECKPOINT_FORMAT:?} only (the run cannot be resumed; its policy files still play with evaluate)"
            ));
        }
        if format != CHECKPOINT_FORMAT {
            return Err(format!(
                "format {format:?} is not supported; this build reads {CHECKPOINT_FORMAT:?}"
            ));
        }
        let kind = CheckpointKind::parse(st.meta("kind")?)
            .ok_or_else(|| format!("metadata kind = {:?} is unknown", st.metadata["kind"]))?;
        let PolicyHeader {
            spec,
            env_id,
            env_kwargs,
            obs_norm_clip: clip,
        } = policy_from_metadata(&st)?;
        let PolicyWeights { weights, obs_norm } = policy_weights(&st, &spec, clip)?;
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
        let (adam_exp_avg, adam_exp_avg_sq) = if st.contains("optimizer.exp_avg") {
            (
                moments("optimizer.exp_avg")?,
                moments("optimizer.exp_avg_sq")?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let state_tensors = st
            .names()
            .filter_map(|name| name.strip_prefix(STATE).map(|n| (name, n)))
            .map(|(full, short)| Ok((short.to_string(), st.f32s(full)?)))
            .collect::<Result<Vec<(String, Vec<f32>)>, String>>()?;
        let counters: std::collections::BTreeMap<String, u64> = match st.metadata.get("counters") {
            None => Default::default(),
            Some(raw) => serde_json::from_str(raw)
                .map_err(|e| format!("metadata counters = {raw:?} is not a map of counts: {e}"))?,
        };
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
            env_kwargs,
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
                tensors: state_tensors,
                counters: counters.into_iter().collect(),
            },
            num_updates,
            env_steps: st.meta_parse("env_steps")?,
            elapsed_s,
            train_s,
            recent_returns: st.f64s("recent_returns")?,
            config_hash: st.meta("config_hash")?.to_string(),
            settings_json: st.meta("settings")?.to_string(),
            collectors,
        })
    }
}

/// A checkpoint a resumed run continues from, and the file it was read from.
#[derive(Debug, Clone)]
pub struct ResumeFrom {
    pub path: PathBuf,
    pub checkpoint: Checkpoint,
}

/// Reads and checks a checkpoint file; the error names the file.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Checkpoint::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rl_policy::{ActionHead, Activation};

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
            env_kwargs: Default::default(),
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
                tensors: vec![
                    ("agent.qf1".into(), vec![0.5, -1.0, 2.0]),
                    ("replay.rewards".into(), vec![]),
                ],
                counters: vec![
                    ("agent.qf1_adam.step".into(), 7),
                    ("replay.pos".into(), u64::MAX),
                ],
            },
            num_updates: 50,
            env_steps: 10 * 256,
            elapsed_s: 12.5,
            train_s: 10.25,
            recent_returns: vec![-150.0, -140.5],
            config_hash: "0badf00d".into(),
            settings_json: r#"{"env":{"id":"Pendulum-v1"}}"#.into(),
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
        let older =
            Checkpoint::decode(&swap(CHECKPOINT_FORMAT, "ferrorl-checkpoint-v2")).unwrap_err();
        assert!(older.contains("earlier version of ferrorl"), "{older}");
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
