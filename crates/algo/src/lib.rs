//! Learning algorithms on libtorch through `tch`.
//!
//! * [`ppo`]: PPO with CleanRL's maths and names ([`ppo::config::PpoConfig`],
//!   [`ppo::learner::PpoLearner`]), reward scaling, explained variance;
//! * [`engine`]: what computes gradients, behind one trait: the
//!   hand-written host engine ([`host`] has its maths) and libtorch's;
//! * [`net::ActorCritic`]: the networks as tensors in the flat layout of
//!   [`rl_policy::ParamLayout`], with CleanRL's orthogonal initialisation;
//! * [`adam::Adam`]: `torch.optim.Adam` on tensors with its moments and step
//!   counts in the open (checkpoints restore them), and gradient clipping;
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
//! pipes and children; this crate only computes.

pub mod adam;
pub mod device;
pub mod divergence;
pub mod engine;
pub mod gae;
pub mod host;
pub mod init;
pub mod net;
pub mod ppo;
pub mod validate;

pub use validate::FieldError;
