//! What crosses process boundaries.
//!
//! So far: [`WeightBlock`], one anonymous shared-memory block (memfd + mmap)
//! through which the learner publishes weights and every worker and the
//! evaluator read them, without locks and without ever seeing a half-written
//! set; and [`frame`], rollouts on a pipe as one typed header plus one flat
//! payload, validated on arrival. The process message types come with the
//! multi-process runtime.
//!
//! ```
//! use rl_ipc::WeightBlock;
//!
//! let mut block = WeightBlock::create(4).unwrap();
//! block.publish(&[1.0, 2.0, 3.0, 4.0], 1).unwrap();
//! let mut weights = [0.0_f32; 4];
//! assert_eq!(block.read_into(&mut weights).unwrap(), Some(1));
//! assert_eq!(weights, [1.0, 2.0, 3.0, 4.0]);
//! ```
//!
//! **Invariant:** this crate never links libtorch, and nothing it creates has
//! a name in the file system: the block is a memfd, gone when the last
//! process holding it exits, however it exits.

pub mod frame;
mod weights;

pub use frame::{read_rollout, write_rollout, FrameError, FrameReader, FrameWriter, RolloutMeta};
pub use weights::{IpcError, WeightBlock};
