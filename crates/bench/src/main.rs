//! `bench`: benchmarks that print JSON lines on stdout.
//!
//! ```text
//! bench envs [--seconds S] [--env ID]... [--num-envs N]...   env steps/s, single-threaded
//! bench rollout [--env ID] [--seconds S] [--workers N]... [--envs-per-worker E]... [--num-steps T]
//!                                                            worker processes -> receiver
//! bench broadcast                                            weight publish -> every worker read
//! bench transport                                            rollout payloads worker -> learner
//! bench learner-compare [--device D]                         one update on each engine, compared
//! bench learner-time [--device D] [--hidden 64,64] [--batch B] ...  ms per minibatch step
//! bench offpolicy-step [--algo A] [--device D] [--hidden 256,256] [--batch B] [--threads N]
//!                                                            ms per off-policy gradient step
//! ```
//!
//! The figures and the commands that reproduce them are in the README.

mod envs;
mod ipc;
mod learner;
mod offpolicy;
mod rollout;

use std::process::ExitCode;

use rl_env::Registry;

fn usage() -> &'static str {
    "usage: bench envs [--seconds S] [--env ID]... [--num-envs N]...\n\
     \x20      bench rollout [--env ID] [--seconds S] [--workers N]... [--envs-per-worker E]... [--num-steps T]\n\
     \x20      bench broadcast\n\
     \x20      bench transport\n\
     \x20      bench learner-compare [--device cpu|cuda]\n\
     \x20      bench learner-time [--device cpu|cuda] [--hidden 64,64] [--batch B] [--minibatches M] [--epochs K] [--seconds S]\n\
     \x20      bench offpolicy-step [--algo sac|td3|dqn] [--device cpu|cuda] [--hidden 256,256] [--batch B] [--threads N] [--seconds S]\n\
     Prints JSON lines."
}

/// The built-in envs and the `gymnasium:` family.
pub fn registry() -> Registry {
    let mut registry = Registry::with_builtins();
    rl_gym::register(&mut registry);
    registry
}

fn main() -> ExitCode {
    // Worker processes of `bench rollout` are this executable run again.
    if let Some(code) = rl_runtime::run_child_if_requested(&registry()) {
        return ExitCode::from(code);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (what, rest) = match args.split_first() {
        Some((what, rest)) => (what.as_str(), rest),
        None => {
            eprintln!("bench: no benchmark named\n{}", usage());
            return ExitCode::from(2);
        }
    };
    // Bad usage (and, for `envs`, an unknown env id) exits 2, a failure 1.
    let result = match what {
        "envs" => envs::run(rest).map_err(|m| (2, m)),
        "rollout" => rollout::run(rest),
        "broadcast" => ipc::broadcast().map_err(|m| (1, m)),
        "transport" => ipc::transport().map_err(|m| (1, m)),
        "learner-compare" => learner::compare(rest),
        "learner-time" => learner::time(rest),
        "offpolicy-step" => offpolicy::step(rest),
        ipc::READER_ROLE => ipc::broadcast_reader(rest).map_err(|m| (1, m)),
        ipc::WRITER_ROLE => ipc::transport_writer(rest).map_err(|m| (1, m)),
        other => Err((2, format!("unknown benchmark '{other}'\n{}", usage()))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("bench: {message}");
            ExitCode::from(code)
        }
    }
}
