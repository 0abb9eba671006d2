//! The processes of a run with `num_workers >= 1`, each the current
//! executable started again with a role: the supervisor (`train` itself),
//! the learner, the workers and the evaluator; how children are started
//! (`child`) and what they run first (`entry`); test-only worker faults
//! (`fault`); the rollout throughput of real workers (`throughput`); and,
//! in data-parallel runs, the learner's collectives relayed through its
//! supervisor, the MPI process (`relay`).

pub mod child;
pub mod entry;
pub mod evaluator;
pub mod fault;
pub mod learner;
pub mod relay;
pub mod supervisor;
pub mod throughput;
pub mod worker;
