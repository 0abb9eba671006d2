//! The one error type of the runtime: what went wrong, in words a user can
//! act on.

use rl_env::EnvError;
use rl_policy::{CollectError, PolicyError};

use crate::storage::run_dir::PathError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(transparent)]
    Device(#[from] rl_algo::device::DeviceError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Channel(#[from] rl_ipc::ChannelError),
    #[error(transparent)]
    Ipc(#[from] rl_ipc::IpcError),
    #[error(transparent)]
    Frame(#[from] rl_ipc::FrameError),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Failed(String),
    /// Training diverged; the message says where, why, what was kept and
    /// how to continue.
    #[error("{0}")]
    Diverged(String),
}

impl From<CollectError> for RuntimeError {
    fn from(e: CollectError) -> Self {
        match e {
            CollectError::Env(e) => RuntimeError::Env(e),
            e @ CollectError::PolicyNotFinite { .. } => RuntimeError::Diverged(e.to_string()),
        }
    }
}
