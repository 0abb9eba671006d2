//! Every message that crosses a process boundary, and who sends it to whom.
//!
//! ```text
//!                 Setup (+ fds)                 WorkerJoined (+ data channel), Stop, SaveBest
//!   supervisor ------------------> any child    supervisor --------------------------> learner
//!   supervisor <-- LearnerToSupervisor -------- learner
//!   supervisor --- SupervisorToEvaluator -----> evaluator
//!   supervisor <-- EvaluatorToSupervisor ------ evaluator
//!   supervisor <-- WorkerToSupervisor --------- worker
//!   learner ------ ToWorker (Collect, Stop) --> worker       data channel, binary
//!   learner <----- ToLearner (Hello, Rollout) - worker       data channel, binary
//!   learner ------ ToRelay (a collective) ----> supervisor   exchange channel, binary
//!   learner <----- FromRelay (Done) ----------- supervisor   (data-parallel runs only)
//! ```
//!
//! Control messages (to and from the supervisor) are rare and small: JSON.
//! The data channel carries two messages per worker and round: a fixed binary
//! layout, with the rollout itself in the worker's shared-memory slot.
//! Weights never travel in messages; they live in the shared
//! [`crate::WeightBlock`].

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::channel::{Channel, ChannelError};
use crate::frame::RolloutHeader;

/// Supervisor -> child: the first message on a child's control channel.
/// Carries the weight block's descriptor, and for a worker its data channel
/// to the learner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// The run directory (absolute).
    pub run_dir: String,
    /// The validated run settings, as JSON (their type belongs to the
    /// runtime, which parses them back).
    pub settings_json: String,
    /// When the run started, in seconds since the Unix epoch: every process
    /// measures `time_s` from it.
    pub start_unix_s: f64,
    /// The checkpoint a resumed run continues from (the learner its state,
    /// each first-generation worker its envs).
    pub resume: Option<String>,
    pub role: RoleSetup,
}

/// What one child is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoleSetup {
    /// Rank `rank` of `ranks` data-parallel learners (0 of 1 without MPI);
    /// under an MPI launcher its exchange channel to the supervisor (the
    /// MPI process) is attached after the evaluation block.
    Learner {
        rank: u32,
        ranks: u32,
        /// Its rank among those on this host (which GPU it takes).
        #[serde(default)]
        local_rank: u32,
    },
    Worker {
        worker: u32,
        /// 0 for the first process of this worker, +1 per replacement.
        generation: u32,
        /// Global index of the worker's first env.
        first_env_index: u64,
        num_envs: u32,
        /// Seed of the worker's envs and sampling streams.
        seed: u64,
    },
    /// An evaluator learns what earlier evaluator processes did from
    /// `eval.csv` itself.
    Evaluator {
        generation: u32,
        /// Data-parallel ranks (1 without MPI): an update is this many
        /// ranks' rounds of env steps.
        #[serde(default = "one")]
        ranks: u32,
    },
}

fn one() -> u32 {
    1
}

/// Supervisor -> learner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SupervisorToLearner {
    /// A worker process started; its data channel is attached.
    WorkerJoined { worker: u32, generation: u32 },
    /// Finish or abandon the current update, save the weights, answer
    /// `Stopped` and exit.
    Stop,
    /// The evaluator found weights `version` the best so far: save the
    /// learner's state at that version as the best checkpoint.
    SaveBest { version: u64 },
    /// Write a checkpoint of the state after the last update now (SIGUSR1);
    /// answered with `Saved`.
    Checkpoint,
}

/// Learner -> supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LearnerToSupervisor {
    /// Set up and waiting for workers.
    Ready,
    /// Still making progress (waiting for workers, or between minibatches
    /// of a long update); at most one a second. Silence past `[run]
    /// learner_timeout_s` means the learner is stuck.
    Heartbeat,
    /// A checkpoint asked for with `Checkpoint` is written and synced.
    Saved { path: String },
    /// One update done.
    Updated(UpdateReport),
    /// This worker process broke the protocol, went silent past its deadline
    /// or closed its channel: kill it if it still runs and start another.
    ReplaceWorker {
        worker: u32,
        generation: u32,
        reason: String,
    },
    /// Every update done; final weights saved.
    Finished(RunReport),
    /// Stopped on request; weights saved.
    Stopped(RunReport),
    /// Something the user should know; training goes on.
    Warning { message: String },
    /// Something the learner cannot recover from.
    Failed { message: String },
    /// An update went non-finite: the learner saved its last finite state
    /// (the message says where) and exits; the run ends with an error.
    Diverged { message: String },
}

/// Supervisor -> evaluator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SupervisorToEvaluator {
    /// Training is over at this version: evaluate it unless done already,
    /// answer `Done`, exit.
    Finish { final_version: u64 },
    /// Exit now.
    Stop,
}

/// Evaluator -> supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EvaluatorToSupervisor {
    Ready,
    /// An evaluation of weights `version` begins (its deadline is `[eval]
    /// timeout_s`).
    Started {
        version: u64,
    },
    /// One evaluation, already appended to `eval.csv`.
    Evaluated(EvalReport),
    Done,
    Failed {
        message: String,
    },
}

/// Worker -> supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkerToSupervisor {
    /// The worker cannot go on (an env error, say); it exits after this.
    Failed { message: String },
    /// The weights it was given compute non-finite numbers from finite
    /// observations: the learner's fault, so no replacement would help.
    Diverged { message: String },
}

/// What one update reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateReport {
    pub elapsed_s: f64,
    pub env_steps: u64,
    pub total_env_steps: u64,
    pub updates: u64,
    #[serde(with = "lossy_f64")]
    pub steps_per_s: f64,
    pub episode_return_mean: Option<f64>,
    /// What the algorithm reported, in the order of its stat names (the
    /// run's settings say which); `None` for a non-finite value.
    pub stats: Vec<Option<f64>>,
    /// Worker messages rejected so far.
    pub rejected_messages: u64,
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub elapsed_s: f64,
    pub env_steps: u64,
    pub policy_version: u64,
    pub returns: Vec<f64>,
    /// The mean beats every earlier evaluation of the run.
    pub new_best: bool,
}

/// How far a learner got, and what it saved at the end (sent only once
/// the files are written and synced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub env_steps: u64,
    pub updates: u64,
    pub rejected_messages: u64,
    /// The policy file.
    pub policy_file: String,
    /// The checkpoint written at the end (final, or the stop's).
    pub checkpoint: Option<String>,
    /// Seconds in the learner's updates, over this session.
    #[serde(default)]
    pub update_s: f64,
    /// Data-parallel runs: the learner's collectives, as it waited for
    /// them (the relay through the supervisor included).
    #[serde(default)]
    pub exchange: Option<ExchangeReport>,
}

/// What a data-parallel learner's collectives cost over the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExchangeReport {
    pub calls: u64,
    pub seconds: f64,
    /// Bytes this rank handed to them.
    pub bytes: u64,
}

/// Non-finite numbers as `null` (JSON has no NaN), and back as NaN.
mod lossy_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Sends a control message (JSON) with `fds` attached.
pub fn send_json<M: Serialize>(
    channel: &Channel,
    message: &M,
    fds: &[BorrowedFd<'_>],
) -> Result<(), ChannelError> {
    let bytes = serde_json::to_vec(message).map_err(|e| ChannelError::Malformed(e.to_string()))?;
    channel.send(&bytes, fds)
}

/// Receives one control message (JSON), waiting at most `timeout`.
pub fn recv_json<M: DeserializeOwned>(
    channel: &Channel,
    buf: &mut Vec<u8>,
    timeout: Option<Duration>,
) -> Result<(M, Vec<OwnedFd>), ChannelError> {
    let received = channel.recv(buf, timeout)?;
    let message = serde_json::from_slice(&buf[..received.len]).map_err(|e| {
        ChannelError::Malformed(format!(
            "{e}: {}",
            String::from_utf8_lossy(&buf[..received.len.min(200)])
        ))
    })?;
    Ok((message, received.fds))
}

/// Learner -> worker, on the data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToWorker {
    /// Collect one rollout with weights `version` (already published).
    Collect { version: u64 },
    /// Exit.
    Stop,
}

/// Worker -> learner, on the data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToLearner {
    /// The first message of a worker process; the rollout slot's descriptor
    /// is attached.
    Hello {
        worker: u32,
        generation: u32,
        slot_capacity: u64,
    },
    /// A rollout is complete in the slot.
    Rollout(RolloutHeader),
}

/// The collectives a learner process asks its supervisor (the MPI
/// process of its rank) to run on the [`crate::ExchangeBlock`]
/// (`rl_algo::exchange::Exchange`, one to one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collective {
    SumF32,
    SumF64,
    GatherF64,
    GatherU64,
}

/// Learner -> supervisor, on the exchange channel of a data-parallel run:
/// run `op` over every rank on the first `len` values of the exchange
/// block (a new block's descriptor is attached to the first request that
/// uses it). Answered by [`FromRelay::Done`], the result then in the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToRelay {
    pub op: Collective,
    pub len: u64,
}

/// Supervisor -> learner, on the exchange channel: the collective asked
/// for is done. A supervisor that cannot run it closes the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromRelay {
    Done,
}

const COLLECT: u32 = 1;
const STOP: u32 = 2;
const HELLO: u32 = 3;
const ROLLOUT: u32 = 4;
const COLLECTIVE: u32 = 5;
const DONE: u32 = 6;

impl ToRelay {
    /// 16 bytes: tag, operation (0..4), `len`.
    pub fn encode(&self) -> Vec<u8> {
        let op: u32 = match self.op {
            Collective::SumF32 => 0,
            Collective::SumF64 => 1,
            Collective::GatherF64 => 2,
            Collective::GatherU64 => 3,
        };
        let mut b = COLLECTIVE.to_le_bytes().to_vec();
        b.extend_from_slice(&op.to_le_bytes());
        b.extend_from_slice(&self.len.to_le_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ChannelError> {
        match (tag_of(bytes)?, bytes.len()) {
            (COLLECTIVE, 16) => {
                let op = match u32_at(bytes, 4) {
                    0 => Collective::SumF32,
                    1 => Collective::SumF64,
                    2 => Collective::GatherF64,
                    3 => Collective::GatherU64,
                    op => return Err(ChannelError::Malformed(format!("unknown collective {op}"))),
                };
                Ok(ToRelay {
                    op,
                    len: u64_at(bytes, 8),
                })
            }
            (COLLECTIVE, len) => Err(wrong_length("collective", len)),
            (tag, _) => Err(ChannelError::Malformed(format!(
                "unknown exchange message {tag}"
            ))),
        }
    }
}

impl FromRelay {
    pub fn encode(&self) -> Vec<u8> {
        DONE.to_le_bytes().to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ChannelError> {
        match (tag_of(bytes)?, bytes.len()) {
            (DONE, 4) => Ok(FromRelay::Done),
            (DONE, len) => Err(wrong_length("relay", len)),
            (tag, _) => Err(ChannelError::Malformed(format!(
                "unknown relay message {tag}"
            ))),
        }
    }
}

fn tag_of(bytes: &[u8]) -> Result<u32, ChannelError> {
    bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| ChannelError::Malformed(format!("a {}-byte message", bytes.len())))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn wrong_length(what: &str, len: usize) -> ChannelError {
    ChannelError::Malformed(format!("a {what} message of {len} bytes"))
}

impl ToWorker {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToWorker::Collect { version } => {
                let mut b = COLLECT.to_le_bytes().to_vec();
                b.extend_from_slice(&version.to_le_bytes());
                b
            }
            ToWorker::Stop => STOP.to_le_bytes().to_vec(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ChannelError> {
        match (tag_of(bytes)?, bytes.len()) {
            (COLLECT, 12) => Ok(ToWorker::Collect {
                version: u64_at(bytes, 4),
            }),
            (STOP, 4) => Ok(ToWorker::Stop),
            (COLLECT | STOP, len) => Err(wrong_length("learner", len)),
            (tag, _) => Err(ChannelError::Malformed(format!(
                "unknown learner message {tag}"
            ))),
        }
    }
}

impl ToLearner {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToLearner::Hello {
                worker,
                generation,
                slot_capacity,
            } => {
                let mut b = HELLO.to_le_bytes().to_vec();
                b.extend_from_slice(&worker.to_le_bytes());
                b.extend_from_slice(&generation.to_le_bytes());
                b.extend_from_slice(&slot_capacity.to_le_bytes());
                b
            }
            ToLearner::Rollout(header) => {
                let mut b = ROLLOUT.to_le_bytes().to_vec();
                b.extend_from_slice(&header.encode());
                b
            }
        }
    }

    /// Parses a worker message; a rollout header is checked (sizes against
    /// the payload length, limits) on the way.
    pub fn decode(bytes: &[u8]) -> Result<Self, ChannelError> {
        match (tag_of(bytes)?, bytes.len()) {
            (HELLO, 20) => Ok(ToLearner::Hello {
                worker: u32_at(bytes, 4),
                generation: u32_at(bytes, 8),
                slot_capacity: u64_at(bytes, 12),
            }),
            (ROLLOUT, len) if len == 4 + RolloutHeader::LEN => RolloutHeader::decode(&bytes[4..])
                .map(ToLearner::Rollout)
                .map_err(|e| ChannelError::Malformed(e.to_string())),
            (HELLO | ROLLOUT, len) => Err(wrong_length("worker", len)),
            (tag, _) => Err(ChannelError::Malformed(format!(
                "unknown worker message {tag}"
            ))),
        }
    }
}
