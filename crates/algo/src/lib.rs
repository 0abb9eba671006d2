//! Learning algorithms on libtorch through `tch`.
//!
//! So far: choosing the device the learner runs on ([`device`]) and the
//! libtorch thread count. PPO, GAE, the normalisers and an optimizer whose
//! state can be saved arrive with the PPO work.
//!
//! ```no_run
//! use rl_algo::device::{DeviceChoice, resolve_device};
//! let device = resolve_device(DeviceChoice::Auto).unwrap();
//! println!("learning on {device:?}");
//! ```
//!
//! **Invariant:** no I/O and no processes here: the runtime owns files,
//! pipes and children; this crate only computes.

pub mod device;
