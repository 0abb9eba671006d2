//! The off-policy algorithms: SAC, TD3 and DQN with CleanRL's maths and
//! names, learning from a replay buffer kept in the learner.
//!
//! * [`config`]: the `[sac]`, `[td3]` and `[dqn]` tables;
//! * [`replay`]: the replay buffer;
//! * [`learner`]: [`learner::OffPolicyLearner`], the `Algorithm` the loop
//!   drives; one update's maths is in the libtorch plugin
//!   ([`crate::engine::agent`]).

pub mod config;
pub mod learner;
pub mod replay;
