//! Learning algorithms, without linking libtorch.
//!
//! * [`ppo`]: PPO with CleanRL's maths and names ([`ppo::config::PpoConfig`],
//!   [`ppo::learner::PpoLearner`]), reward scaling, explained variance;
//! * [`engine`]: what computes gradients, behind one trait: the
//!   hand-written host engine ([`host`] has its maths) and libtorch's,
//!   loaded from the plugin of crate rl-torch only by a learner that uses it;
//! * [`exchange`]: what data-parallel learners (MPI ranks) share: the
//!   averaged gradient, observation statistics, the weights' checksum;
//! * [`init`]: CleanRL's orthogonal initialisation, drawn by our generator;
//! * [`gae::gae`]: generalised advantage estimation;
//! * [`validate`]: config checks shared by algorithms' tables;
//! * [`device`]: the learner's device (`auto`/`cpu`/`cuda`) and torch threads.
//!
//! ```no_run
//! use rl_algo::device::{DeviceChoice, resolve_device};
//! let device = resolve_device(DeviceChoice::Auto).unwrap();
//! println!("learning on {device:?}");
//! ```
//!
//! **Invariant:** no I/O and no processes here: the runtime owns files,
//! pipes and children; this crate only computes. Nothing here links
//! libtorch.

pub mod algorithm;
pub mod device;
pub mod divergence;
pub mod engine;
pub mod exchange;
pub mod gae;
pub mod host;
pub mod init;
pub mod offpolicy;
pub mod ppo;
pub mod validate;

pub use validate::FieldError;
