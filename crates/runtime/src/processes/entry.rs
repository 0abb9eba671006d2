//! A child process's entry point: what a binary runs first (see
//! [`run_child_if_requested`]), parsing the child's arguments, receiving its
//! setup and running its role.

use std::os::fd::OwnedFd;

use rl_env::Registry;
use rl_ipc::messages::{recv_json, RoleSetup, Setup};
use rl_ipc::process::{die_with_parent, set_process_name};
use rl_ipc::{Channel, WeightBlock};

use crate::error::RuntimeError;
use crate::processes::child::{ChildContext, CHILD_FLAG, CHILD_IGNORES, SETUP_TIMEOUT};
use crate::processes::evaluator::run_evaluator;
use crate::processes::learner::run_learner;
use crate::processes::worker::{run_worker, WorkerIdentity};
use crate::settings::TrainSettings;
use crate::training::trainer::DataParallel;

struct ChildArgs {
    role: String,
    control_fd: i32,
    parent: u32,
}

fn parse_child_args(args: &[String]) -> Result<ChildArgs, String> {
    let usage = || {
        format!(
            "{CHILD_FLAG} is for processes a run starts itself: {CHILD_FLAG} <role> --run-dir <dir> --control-fd <fd> --parent <pid>"
        )
    };
    let [role, k1, _run_dir, k2, fd, k3, parent] = args else {
        return Err(usage());
    };
    if (k1.as_str(), k2.as_str(), k3.as_str()) != ("--run-dir", "--control-fd", "--parent") {
        return Err(usage());
    }
    Ok(ChildArgs {
        role: role.clone(),
        control_fd: fd.parse().map_err(|_| usage())?,
        parent: parent.parse().map_err(|_| usage())?,
    })
}

/// A write past the file-size limit (`ulimit -f`) fails with an error that
/// names the file, instead of killing the process with SIGXFSZ.
pub fn ignore_file_size_signal() {
    // SAFETY: ignoring a signal installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGXFSZ,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
}

/// When this process was started as a child of a run (its first argument
/// is [`CHILD_FLAG`]), runs its role and returns the exit code; `None`
/// otherwise. Binaries call this first thing, with the registry they train
/// with.
pub fn run_child_if_requested(registry: &Registry) -> Option<u8> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some(CHILD_FLAG) {
        return None;
    }
    let parsed = match parse_child_args(&args[1..]) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return Some(2);
        }
    };
    if let Err(e) = die_with_parent(parsed.parent) {
        eprintln!("{}: {e}", parsed.role);
        return Some(1);
    }
    // Already ignored since before exec (see `spawn_child`); again, for a
    // child started some other way.
    for signal in CHILD_IGNORES {
        // SAFETY: ignoring a signal installs no handler code.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
    ignore_file_size_signal();
    set_process_name(&format!("rl-{}", parsed.role));
    match run_role(registry, &parsed) {
        Ok(()) => Some(0),
        Err(e) => {
            eprintln!("{}: {e}", parsed.role);
            Some(1)
        }
    }
}

fn run_role(registry: &Registry, args: &ChildArgs) -> Result<(), RuntimeError> {
    // SAFETY: the supervisor passed this descriptor for this process to own.
    let control = unsafe { Channel::from_inherited(args.control_fd) }?;
    let mut buf = Vec::new();
    let (setup, fds): (Setup, Vec<OwnedFd>) = recv_json(&control, &mut buf, Some(SETUP_TIMEOUT))?;
    let settings: TrainSettings = serde_json::from_str(&setup.settings_json)
        .map_err(|e| RuntimeError::Setup(format!("bad settings from the supervisor: {e}")))?;
    let mut fds = fds.into_iter();
    let block_fd = fds
        .next()
        .ok_or_else(|| RuntimeError::Setup("the setup carried no weight block".into()))?;
    let context = ChildContext {
        control,
        settings,
        run_dir: setup.run_dir.into(),
        start_unix_s: setup.start_unix_s,
        block: Some(WeightBlock::open(block_fd)?),
        extra_fds: fds.collect(),
        resume: setup.resume.clone(),
    };
    match setup.role {
        RoleSetup::Learner {
            rank,
            ranks,
            local_rank,
        } => run_learner(
            registry,
            context,
            DataParallel {
                rank: rank as usize,
                ranks: ranks.max(1) as usize,
                local_rank: local_rank as usize,
            },
        ),
        RoleSetup::Worker {
            worker,
            generation,
            first_env_index,
            num_envs,
            seed,
        } => {
            let resume = (generation == 0).then(|| context.resume.clone()).flatten();
            run_worker(
                registry,
                context,
                WorkerIdentity {
                    worker,
                    generation,
                    first_env_index,
                    num_envs: num_envs as usize,
                    seed,
                    resume,
                },
            )
        }
        RoleSetup::Evaluator { ranks, .. } => run_evaluator(registry, context, ranks),
    }
}
