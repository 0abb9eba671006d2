//! Training runs: the loop, the processes that run it, and what they write.
//!
//! The crate is in layers; a module only imports from its own layer's
//! lower modules and from the layers below it:
//!
//! ```text
//! processes   supervisor, learner, worker, evaluator, child start-up     (num_workers >= 1)
//! training    trainer (the one loop), host, experience sources, pool,
//!             published weights, evaluation, in_process (num_workers = 0)
//! resume      plans and repairs a run directory to continue from a checkpoint
//! recording   train.csv / eval.csv, TensorBoard scalars, curve.png
//! storage     run directory, safetensors, policy files, checkpoints
//! base        settings, spec, error, report, memory, clock
//! ```
//!
//! **Invariant:** the loops never parse command lines or config files (the
//! CLI does), every file they write is flushed row by row, and no process a
//! run starts outlives it.

pub mod clock;
pub mod error;
pub mod memory;
pub mod processes;
pub mod recording;
pub mod report;
pub mod resume;
pub mod settings;
pub mod spec;
pub mod storage;
pub mod training;

pub use error::RuntimeError;
pub use processes::child::CHILD_FLAG;
pub use processes::entry::{ignore_file_size_signal, run_child_if_requested};
pub use processes::supervisor::train_multi_process;
pub use recording::eval::{draw_curve, CURVE_FILE};
pub use recording::train::rebuild_tensorboard;
pub use report::{Ending, EvalResult, Observer, Progress, Requests, TrainSummary};
pub use resume::{prepare_resume, ResumePlan, RunLock};
pub use settings::{
    CheckpointSettings, EnvSettings, EvalSettings, NetworkSettings, RunSettings, TrainSettings,
};
pub use spec::{policy_spec, spec_and_action_space, spec_for};
pub use storage::run_dir::{
    train_csv_header, RunDir, BEST_POLICY_FILE, EVAL_CSV_HEADER, POLICY_FILE,
};
pub use training::in_process::{train_in_process, Ranks};
pub use training::trainer::DataParallel;
