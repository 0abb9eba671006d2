//! The commands users run.
//!
//! `train` is also a library function, so a program with its own
//! environments registers them and hands its registry over:
//!
//! ```no_run
//! use rl_env::Registry;
//!
//! fn main() -> std::process::ExitCode {
//!     let registry = Registry::with_builtins();
//!     // registry.register("MyEnv-v0", Some(1000), MyEnv::new).unwrap();
//!     rl_cli::train::train_main(&registry)
//! }
//! ```
//!
//! **Invariant:** no algorithm logic here: the CLI parses and validates
//! (every config value is checked before anything is created), maps errors to
//! exit codes (0 done, 1 failure, 2 bad usage or config, 130 Ctrl-C, 143
//! SIGTERM) and prints.

pub mod config;
pub mod train;
