//! `train` started by an MPI launcher (`mpirun -np K train ...`, `srun`):
//! each rank is one learner with its own envs, exchanging gradients with
//! the others at every minibatch (`rl_algo::exchange`, over MPI through
//! `rl_mpi`). Rank 0 is the run users know: it owns the run directory,
//! evaluates and prints; the other ranks write nothing and print only
//! errors.
//!
//! A build without the `mpi` feature refuses to run as one of K > 1 ranks
//! (each would train alone) and says how to build one that can.

use rl_algo::exchange::Traffic;
use rl_mpi::Launch;
use rl_runtime::{TrainSettings, TrainSummary};

use crate::exit;

/// The limits of data-parallel runs today, checked by rank 0 before it
/// makes the run directory and tells the others to start.
pub fn check(settings: &TrainSettings, ranks: usize) -> Result<(), String> {
    if ranks > 1 && settings.off_policy().is_some() {
        return Err(format!(
            "[run] algo = \"{}\": under an MPI launcher only PPO trains on more than one rank for now (SAC, TD3 and DQN train on one machine: run them without mpirun)",
            settings.run.algo
        ));
    }
    Ok(())
}

/// A warning when this rank may use fewer cores than its processes need:
/// `mpirun` binds each rank to one core by default (with two ranks or
/// fewer per node), and a rank's learner and workers are its children, so
/// they would all share that core.
pub fn binding_note(settings: &TrainSettings) -> Option<String> {
    let processes = settings.run.num_workers + 1;
    if processes <= 1 {
        return None;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity
    // writes at most its size.
    let cores = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        libc::CPU_COUNT(&set) as usize
    };
    // The machine's cores (available_parallelism would count the
    // affinity's).
    // SAFETY: sysconf has no preconditions.
    let online = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1);
    (cores < processes.min(online)).then(|| {
        format!(
            "warning: this rank may run on {cores} core{} (its CPU affinity, set by the launcher: mpirun binds each rank to one core by default), shared by its learner and {} worker processes; give each rank more (mpirun --bind-to none, or --map-by slot:PE=N; srun --cpus-per-task N)",
            if cores == 1 { "" } else { "s" },
            settings.run.num_workers
        )
    })
}

/// What rank 0 tells the other ranks before anyone trains: the config it
/// resolved (its `--set` and `--seed` applied, or the run's own on
/// resume) and the checkpoint it resumes from. The other ranks read that
/// checkpoint's learner (identical on every rank) and their own envs from
/// the same path, so a resume across hosts needs the run directory on a
/// shared filesystem.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub config_name: std::path::PathBuf,
    pub config: String,
    pub run_dir: std::path::PathBuf,
    pub checkpoint: Option<std::path::PathBuf>,
}

/// Rank 0's first message to the others: start with a plan, or exit with
/// rank 0's code (it stopped before training: a config error, a run that
/// is already complete).
#[cfg(feature = "mpi")]
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Start {
    Go(Plan),
    Exit(u8),
}

/// Rank 0's part of a data-parallel run: its place and exchange, and how
/// it hands its [`Plan`] to the other ranks (once, before training).
pub struct RankZero<'a> {
    pub ranks: rl_runtime::Ranks,
    pub share: &'a mut dyn FnMut(&Plan),
}

/// Runs this process as the rank `launch` names: `rank0` for rank 0
/// (which shares its plan when it is ready to train), else `other` with
/// rank 0's plan. Returns the exit code.
#[cfg(feature = "mpi")]
pub fn run_ranked(
    launch: Launch,
    rank0: impl FnOnce(RankZero<'_>) -> u8,
    other: impl FnOnce(rl_runtime::Ranks, Plan) -> u8,
) -> u8 {
    use rl_runtime::{DataParallel, Ranks};
    let mpi = match rl_mpi::Mpi::init() {
        Ok(mpi) => mpi,
        Err(e) => {
            errln!("train: cannot start MPI: {e}");
            return exit::FAILED;
        }
    };
    let place = DataParallel {
        rank: mpi.rank(),
        ranks: mpi.size(),
        local_rank: launch.local_rank,
    };
    if place.ranks != launch.size {
        errln!(
            "train: the launcher says {} ranks ({}), MPI {}: was this train built against the MPI that launched it?",
            launch.size,
            launch.from,
            place.ranks
        );
    }
    let ranks = Ranks {
        place,
        exchange: Box::new(mpi.exchange()),
    };
    let send = |start: &Start| {
        let mut bytes = serde_json::to_vec(start).unwrap_or_default();
        mpi.broadcast_from_rank0(&mut bytes);
    };
    let code = if place.rank == 0 {
        let mut shared = false;
        let code = rank0(RankZero {
            ranks,
            share: &mut |plan: &Plan| {
                send(&Start::Go(plan.clone()));
                shared = true;
            },
        });
        if !shared {
            send(&Start::Exit(code));
        }
        code
    } else {
        let mut bytes = Vec::new();
        mpi.broadcast_from_rank0(&mut bytes);
        match serde_json::from_slice::<Start>(&bytes) {
            Ok(Start::Go(plan)) => other(ranks, plan),
            Ok(Start::Exit(code)) => code,
            Err(e) => {
                errln!(
                    "train (rank {}): rank 0's plan does not decode: {e}",
                    place.rank
                );
                exit::FAILED
            }
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // Finished or stopped together (a stop is voted by every rank): wait
    // for all, rank 0's files written, then MPI_Finalize. The launcher
    // ends a job as soon as one rank exits with an error code, so no rank
    // may leave before rank 0 has saved.
    if code == exit::DONE || code >= 128 {
        mpi.barrier();
        drop(mpi);
        return code;
    }
    // A failure: without MPI_Finalize, which would wait for ranks that may
    // never get there; the launcher ends the job.
    std::process::exit(i32::from(code));
}

/// Without MPI support: one rank is an ordinary run; more is refused.
#[cfg(not(feature = "mpi"))]
pub fn run_ranked(launch: Launch, alone: impl FnOnce() -> u8) -> u8 {
    if launch.size <= 1 {
        return alone();
    }
    errln!(
        "train: started as rank {} of {} ({}={}), but this train was built without MPI support: each rank would train alone. Build it with MPI support: scripts/setup --mpi && cargo build --release -p rl-cli --features mpi",
        launch.rank,
        launch.size,
        launch.from,
        launch.size
    );
    exit::USAGE
}

/// Rank 0's account of a data-parallel run, one line: per update, the
/// learner's time, the part of it in collectives, their count and the
/// bytes this rank sent (`scripts/bench mpi` reads it).
pub fn traffic_line(summary: &TrainSummary, traffic: Traffic, update_s: f64) -> String {
    let updates = summary.updates.max(1) as f64;
    format!(
        "mpi: per update {:.3} ms in the learner, {:.3} ms in {:.1} collectives, {:.0} bytes sent by rank 0 ({} updates)",
        update_s * 1e3 / updates,
        traffic.seconds * 1e3 / updates,
        traffic.calls as f64 / updates,
        traffic.bytes as f64 / updates,
        summary.updates
    )
}
