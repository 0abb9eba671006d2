//! Training loops, the processes that run them, and what they write.
//!
//! * [`TrainSettings`]: the run's settings, one struct per config table
//!   (`[env]`, `[network]`, `[ppo]`, `[eval]`, `[run]`), validated before
//!   anything starts;
//! * [`train_in_process`]: PPO with every part in this process
//!   (`num_workers = 0`): collect a rollout with the current policy, update,
//!   evaluate every `eval.interval_steps`, write the run directory;
//! * [`train_multi_process`]: the supervisor (`num_workers >= 1`): a learner
//!   process, worker processes and an evaluator process, started by
//!   re-running the current executable with a role
//!   ([`run_child_if_requested`] is the child's entry point), watched,
//!   restarted, stopped; the same PPO, bit for bit;
//! * [`RunDir`]: `config.toml`, `train.csv`, `eval.csv`,
//!   `policy.safetensors`, `best_policy.safetensors`, written so other tools
//!   can read them while the run goes on.
//!
//! **Invariant:** the loops never parse command lines or config files (the
//! CLI does), every file they write is flushed row by row, and no process a
//! run starts outlives it.

pub mod checkpoint;
mod child;
pub mod eval;
mod evaluator;
mod learner;
pub mod memory;
pub mod policy_file;
pub mod pool;
mod record;
pub mod resume;
pub mod run_dir;
pub mod safetensors;
mod settings;
mod supervisor;
pub mod throughput;
mod trainer;
mod worker;

pub use child::{ignore_file_size_signal, run_child_if_requested, CHILD_FLAG};
pub use eval::{draw_curve, CURVE_FILE};
pub use record::rebuild_tensorboard;
pub use resume::{prepare_resume, ResumePlan, RunLock};
pub use run_dir::{RunDir, BEST_POLICY_FILE, EVAL_CSV_HEADER, POLICY_FILE, TRAIN_CSV_HEADER};
pub use settings::{
    CheckpointSettings, EnvSettings, EvalSettings, NetworkSettings, RunSettings, TrainSettings,
};
pub use supervisor::train_multi_process;
pub use trainer::{
    policy_spec, spec_for, train_in_process, Ending, EvalResult, Observer, Progress, Requests,
    RuntimeError, TrainSummary,
};
