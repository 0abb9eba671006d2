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
//! Both commands add the `gymnasium:` family (crate rl-gym) to the registry
//! they are given, so `[env] id = "gymnasium:HalfCheetah-v5"` works in any
//! such program too.
//!
//! **Invariant:** no algorithm logic here: the CLI parses and validates
//! (every config value is checked before anything is created), maps errors to
//! exit codes (0 done, 1 failure, 2 bad usage or config, 130 Ctrl-C, 143
//! SIGTERM) and prints.

/// `println!` that ignores a closed stdout (a pipe whose reader exited):
/// output is informational, the work goes on.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that ignores a closed stderr.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

/// `registry` with the `gymnasium:` family of envs added.
pub(crate) fn with_gymnasium(registry: &rl_env::Registry) -> rl_env::Registry {
    let mut registry = registry.clone();
    rl_gym::register(&mut registry);
    registry
}

/// Parses a command's arguments; `--help` and `--version` exit 0, bad usage
/// exits 2 (after clap printed why).
pub(crate) fn parse_args<T: clap::Parser>() -> Result<T, std::process::ExitCode> {
    T::try_parse().map_err(|e| {
        let _ = e.print();
        std::process::ExitCode::from(if e.use_stderr() {
            train::exit::USAGE
        } else {
            train::exit::DONE
        })
    })
}

pub mod config;
pub mod curves;
pub mod evaluate;
pub mod exit;
pub mod ranks;
pub mod train;
pub mod video;
