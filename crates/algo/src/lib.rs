//! Learning algorithms on libtorch through `tch`.
//!
//! * [`ppo`]: PPO with CleanRL's maths and names ([`ppo::PpoConfig`],
//!   [`ppo::PpoLearner`], [`ppo::ppo_loss`]), reward scaling, explained
//!   variance;
//! * [`net::ActorCritic`]: the networks as tensors in the flat layout of
//!   [`rl_policy::ParamLayout`], with CleanRL's orthogonal initialisation;
//! * [`adam::Adam`]: `torch.optim.Adam` on tensors with its moments and step
//!   counts in the open (checkpoints restore them), and gradient clipping;
//! * [`gae::gae`]: generalised advantage estimation;
//! * [`device`]: the learner's device (`auto`/`cpu`/`cuda`) and torch threads.
//!
//! ```no_run
//! use rl_algo::device::{DeviceChoice, resolve_device};
//! let device = resolve_device(DeviceChoice::Auto).unwrap();
//! println!("learning on {device:?}");
//! ```
//!
//! **Invariant:** no I/O and no processes here: the runtime owns files,
//! pipes and children; this crate only computes.

pub mod adam;
pub mod device;
pub mod divergence;
pub mod gae;
pub mod host;
pub mod init;
pub mod net;
pub mod ppo;

/// A config field whose value is out of range: the field's name, the value
/// and what is allowed. The CLI adds the file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub value: String,
    pub allowed: &'static str,
}
