//! The processes of a run with `num_workers >= 1`, each the current
//! executable started again with a role: the supervisor (`train` itself),
//! the learner, the workers and the evaluator; how children are started
//! (`child`) and what they run first (`entry`); test-only worker faults
//! (`fault`); and the rollout throughput of real workers (`throughput`).

pub mod child;
pub mod entry;
pub mod evaluator;
pub mod fault;
pub mod learner;
pub mod supervisor;
pub mod throughput;
pub mod worker;
