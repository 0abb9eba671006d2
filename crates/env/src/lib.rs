//! Environments with Gymnasium semantics, built for speed.
//!
//! * [`Env`]: the trait an environment implements: spaces, `reset(seed)`,
//!   `step(action)` returning reward, `terminated` and `truncated`, `f32`
//!   observations written into caller-owned buffers.
//! * [`Space`]: `Discrete(n)` and `Box{low, high, shape}`.
//! * [`Checked`]: the wrapper every registered env comes in: time limit as
//!   truncation, reset/step order, and action checks with clear errors.
//! * [`VecEnv`]: E envs stepped into contiguous `[E, obs_dim]` buffers with
//!   same-step autoreset, keeping each finished episode's final observation.
//! * [`Registry`]: ids to constructors; the classic-control envs
//!   (`CartPole-v1`, `Pendulum-v1`, `MountainCar-v0`,
//!   `MountainCarContinuous-v0`, `Acrobot-v1`) are faithful ports of
//!   Gymnasium 1.4 and come pre-registered.
//!
//! ```
//! use rl_env::{Actions, Registry};
//!
//! let registry = Registry::with_builtins();
//! let mut envs = registry.make_vec("CartPole-v1", 8).unwrap();
//! envs.reset(42).unwrap();
//! let actions = vec![1_i64; envs.num_envs()];
//! envs.step(Actions::Discrete(&actions)).unwrap();
//! assert_eq!(envs.obs().len(), 8 * 4);
//! ```
//!
//! **Invariant:** this crate knows nothing of tensors, processes or I/O. It
//! never panics on input a caller or a user-defined env can get wrong; it
//! returns an [`EnvError`] naming the env, the value and what is allowed. The
//! same seed gives bit-identical trajectories.

mod checked;
pub mod classic;
mod env;
mod error;
mod registry;
pub mod render;
pub mod rng;
pub mod seeds;
pub mod snapshot;
mod space;
mod vec_env;

pub use checked::Checked;
pub use env::{Env, Step, Transition};
pub use error::EnvError;
pub use registry::{FamilyConstructor, Kwargs, Registry};
pub use render::Frame;
pub use space::{Action, Actions, BoxSpace, Space};
pub use vec_env::{FinishedEpisode, VecEnv};
