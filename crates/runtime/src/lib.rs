//! Training loops and what they write.
//!
//! * [`TrainSettings`]: the run's settings, one struct per config table
//!   (`[env]`, `[network]`, `[ppo]`, `[eval]`, `[run]`), validated before
//!   anything starts;
//! * [`train_in_process`]: PPO with every part in this process
//!   (`num_workers = 0`): collect a rollout with the current policy, update,
//!   evaluate every `eval.interval_steps`, write the run directory;
//! * [`RunDir`]: `config.toml`, `train.csv`, `eval.csv`,
//!   `policy.safetensors`, written so other tools can read them while the run
//!   goes on.
//!
//! **Invariant:** the loop never parses command lines or config files (the
//! CLI does), and every file it writes is flushed row by row.

pub mod run_dir;
mod settings;
mod trainer;

pub use run_dir::{RunDir, EVAL_CSV_HEADER, POLICY_FILE, TRAIN_CSV_HEADER};
pub use settings::{EnvSettings, EvalSettings, NetworkSettings, RunSettings, TrainSettings};
pub use trainer::{
    policy_spec, train_in_process, Ending, EvalResult, Observer, Progress, RuntimeError,
    TrainSummary,
};
