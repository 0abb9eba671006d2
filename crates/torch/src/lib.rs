//! The libtorch gradient engine, as the plugin `librl_torch.so`.
//!
//! * [`net::ActorCritic`]: the networks as tensors in the flat layout of
//!   [`rl_policy::ParamLayout`], with CleanRL's orthogonal initialisation;
//! * [`adam::Adam`]: `torch.optim.Adam` on tensors with its moments and step
//!   counts in the open (checkpoints restore them), and gradient clipping;
//! * [`engine::NativeEngine`]: the PPO gradient engine on them, with
//!   [`engine::ppo_loss`];
//! * [`agents`]: SAC, TD3 and DQN: one update each on flat-tensor MLPs
//!   (`rl_algo::offpolicy` drives them);
//! * `ffi`: the C ABI through which a learner process that needs libtorch
//!   loads this crate (see `rl_algo::engine::libtorch`).
//!
//! **Invariant:** only this crate (and the benchmarks) link libtorch; a
//! binary reaches it only through `dlopen` of this library.

pub mod adam;
pub mod agents;
pub mod engine;
pub mod ffi;
pub mod net;
