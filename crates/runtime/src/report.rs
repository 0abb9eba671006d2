//! What a run tells the outside while it goes and when it ends, and what
//! the outside asks of it: the types the command line and its users see.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rl_algo::algorithm::Stats;

/// What the user, a terminal or a cluster asked of a running training, by
/// signal: counted by the command's signal handlers, read by the loops.
#[derive(Debug, Default)]
pub struct Requests {
    /// Stop requests (SIGINT, SIGTERM, SIGHUP): the first ends the run in
    /// order (the update in progress is abandoned, the state saved), a
    /// second at once.
    pub stops: AtomicUsize,
    /// Checkpoint-now requests (SIGUSR1).
    pub checkpoints: AtomicUsize,
}

impl Requests {
    pub fn stops(&self) -> usize {
        self.stops.load(Ordering::SeqCst)
    }

    pub fn checkpoints(&self) -> usize {
        self.checkpoints.load(Ordering::SeqCst)
    }
}

/// Where a run stands, for status lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub env_steps: u64,
    pub total_env_steps: u64,
    pub updates: u64,
    /// Env steps per second of training (evaluation excluded).
    pub steps_per_s: f64,
    pub episode_return_mean: Option<f64>,
    pub last_eval_return: Option<f64>,
}

/// One evaluation's results.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    pub env_steps: u64,
    pub policy_version: u64,
    pub returns: Vec<f64>,
}

impl EvalResult {
    pub fn mean(&self) -> f64 {
        self.returns.iter().sum::<f64>() / self.returns.len().max(1) as f64
    }

    pub fn std(&self) -> f64 {
        let m = self.mean();
        (self.returns.iter().map(|r| (r - m).powi(2)).sum::<f64>()
            / self.returns.len().max(1) as f64)
            .sqrt()
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Completed,
    Interrupted,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    pub ending: Ending,
    pub env_steps: u64,
    pub updates: u64,
    pub last_eval: Option<EvalResult>,
    /// Worker and evaluator processes restarted.
    pub restarts: u32,
    /// Worker messages the learner rejected.
    pub rejected_messages: u64,
    /// The policy file the end of the run wrote, once written and synced
    /// (`None`: the run stopped without saving, at a second interrupt).
    pub policy_file: Option<PathBuf>,
    /// The checkpoint the end of the run wrote, once written and synced.
    pub checkpoint: Option<PathBuf>,
    /// Seconds in the learner's updates (single-process runs; `None` when
    /// the learner is another process).
    pub update_s: Option<f64>,
    /// What exchanging with the other ranks cost (data-parallel runs).
    pub traffic: Option<rl_algo::exchange::Traffic>,
}

/// Receives progress while a run trains.
pub trait Observer {
    fn on_update(&mut self, progress: &Progress, stats: &Stats);
    fn on_eval(&mut self, progress: &Progress, eval: &EvalResult);
    /// Something the user should know (a process replaced, say).
    fn on_message(&mut self, message: &str) {
        eprintln!("{message}");
    }
}
