//! Gradient engines: what computes a minibatch's PPO loss and gradient and
//! applies Adam. One trait ([`gradient::GradientEngine`]), two engines:
//! `host` (hand-written, no libtorch: fastest for the small networks of
//! classic control on a CPU) and `libtorch` (libtorch through tch, on a CPU
//! or a GPU, in the plugin `librl_torch.so` loaded on first use). Both
//! compute the same numbers as PyTorch (crates/torch/tests/ppo_learner_on_both_engines.rs,
//! crates/torch/tests/ppo_maths_against_pytorch.rs).
//!
//! The off-policy agents (SAC, TD3, DQN) compute in the libtorch plugin
//! only: [`agent`] has their ABI and handle.

pub mod agent;
pub mod agent_abi;
pub mod gradient;
pub mod host;
pub mod libtorch;
