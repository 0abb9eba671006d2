//! Proximal Policy Optimization (Schulman et al. 2017), with the maths of
//! CleanRL's `ppo.py` / `ppo_continuous_action.py` and Stable-Baselines3's
//! PPO, and CleanRL's names:
//!
//! * `config`: the `[ppo]` table and its validation;
//! * `learner`: [`learner::PpoLearner`], whose `update` reads like the
//!   update loop of CleanRL's `ppo.py`;
//! * `reward_scaler`: SB3's `VecNormalize(norm_reward=True)`;
//! * `checks`: that an update stays finite, and what to say when not;
//! * `batch`: one update's data, and explained variance;
//! * `data_parallel`: PPO's part of a data-parallel run (`crate::exchange`).
//!
//! The gradient of a minibatch comes from a [`crate::engine`].

pub mod batch;
pub mod checks;
pub mod config;
mod data_parallel;
pub mod learner;
pub mod reward_scaler;
