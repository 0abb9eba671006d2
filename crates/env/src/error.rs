//! The one error type of this crate.

use thiserror::Error;

/// Everything that can go wrong when building or stepping an environment.
///
/// Every message names the environment, the offending value and what is
/// allowed, so it can be shown to a user as it is.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EnvError {
    /// A discrete action outside `0..n`.
    #[error("{env}: action {action} is out of range; Discrete({n}) allows the integers 0..={max}", max = .n.saturating_sub(1))]
    ActionOutOfRange { env: String, action: i64, n: usize },

    /// A continuous action whose length does not match the action space.
    #[error("{env}: continuous action has {got} value(s); the action space {space} needs exactly {expected}")]
    ActionLength {
        env: String,
        got: usize,
        expected: usize,
        space: String,
    },

    /// A NaN or infinite value in a continuous action.
    #[error("{env}: continuous action value {value} at index {index} is not finite; allowed: finite numbers (values outside [{low}, {high}] are clipped by the environment)")]
    ActionNotFinite {
        env: String,
        index: usize,
        value: f32,
        low: f32,
        high: f32,
    },

    /// A discrete action given to a continuous env, or the other way round.
    #[error("{env}: got a {got} action, but the action space is {space}")]
    ActionKind {
        env: String,
        got: &'static str,
        space: String,
    },

    /// `step` called before the first `reset`.
    #[error("{env}: step() called before reset(); call reset() first")]
    StepBeforeReset { env: String },

    /// `step` called after the episode ended and before `reset`.
    #[error(
        "{env}: step() called after the episode ended ({how}); call reset() before stepping again"
    )]
    StepAfterEpisodeEnd { env: String, how: &'static str },

    /// A caller-provided buffer of the wrong length.
    #[error("{env}: {what} buffer holds {got} value(s), but {expected} are needed")]
    BufferLength {
        env: String,
        what: &'static str,
        got: usize,
        expected: usize,
    },

    /// `set_state` with the wrong number of values, or on an env without state access.
    #[error("{env}: {problem}")]
    State { env: String, problem: String },

    /// An id that the registry does not know.
    #[error("unknown environment id '{id}'; known ids: {}", .known.join(", "))]
    UnknownId { id: String, known: Vec<String> },

    /// Registering an id twice.
    #[error("environment id '{id}' is already registered")]
    DuplicateId { id: String },

    /// A vectorised env with zero envs.
    #[error("{env}: a vectorised env needs at least 1 env, got {num_envs}")]
    NoEnvs { env: String, num_envs: usize },

    /// An error raised by a user-defined environment itself.
    #[error("{env}: {message}")]
    Custom { env: String, message: String },
}
