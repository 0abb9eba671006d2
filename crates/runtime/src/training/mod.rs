//! The training loop and what feeds it.
//!
//! * `trainer`: [`trainer::Trainer`], the one loop;
//! * `host`: what the loop runs in ([`host::Host`]) and what it can be told;
//! * `source`: where experience comes from ([`source::ExperienceSource`]),
//!   with `collector` (every env in this process) and `worker_source` (the
//!   worker processes, through `pool`);
//! * `published`: the layout of the weights and statistics workers act with;
//! * `algorithm`: the run's learner, built from its settings;
//! * `evaluate`: evaluation episodes;
//! * `in_process`: the whole run in one process (`num_workers = 0`).

pub mod algorithm;
pub mod collector;
pub mod evaluate;
pub mod host;
pub mod in_process;
pub mod pool;
pub mod published;
pub mod source;
pub mod trainer;
pub mod worker_source;
