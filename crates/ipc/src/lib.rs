//! What crosses process boundaries, and how.
//!
//! * [`messages`]: every message type, with who sends it and who receives it.
//! * [`Channel`]: a Unix `SOCK_SEQPACKET` socket pair end, whole messages
//!   with file descriptors attached; a peer's exit shows up as
//!   [`ChannelError::Closed`]; sends and receives are bounded in time.
//! * [`WeightBlock`]: one anonymous shared-memory block (memfd + mmap)
//!   through which the learner publishes weights (and the observation
//!   statistics that go with them) and every worker and the evaluator read
//!   them, without locks and without ever seeing a half-written set.
//! * [`RolloutSlot`] and [`frame`]: a rollout as a 64-byte typed header (a
//!   message) plus one flat payload (in the worker's shared-memory slot),
//!   checked on arrival.
//! * [`process`]: what a child does first so that it dies with its parent.
//! * [`ExchangeBlock`]: the memory a learner process shares with its MPI
//!   rank process for the collectives of a data-parallel run.
//!
//! ```
//! use rl_ipc::WeightBlock;
//!
//! let mut block = WeightBlock::create(4).unwrap();
//! block.publish(&[1.0, 2.0, 3.0, 4.0], 0).unwrap();
//! let mut weights = [0.0_f32; 4];
//! assert_eq!(block.read_into(&mut weights).unwrap(), Some(0));
//! assert_eq!(weights, [1.0, 2.0, 3.0, 4.0]);
//! ```
//!
//! **Invariant:** this crate never links libtorch, and nothing it creates has
//! a name in the file system: sockets are unnamed pairs, shared memory is
//! memfds, all gone when the last process holding them exits, however it
//! exits.

pub mod channel;
mod exchange_block;
pub mod frame;
pub mod messages;
pub mod process;
mod shm;
mod slot;
mod weights;

pub use channel::{Channel, ChannelError};
pub use exchange_block::ExchangeBlock;
pub use frame::{FrameError, RolloutHeader};
pub use slot::RolloutSlot;
pub use weights::{IpcError, WeightBlock};
