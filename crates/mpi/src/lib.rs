//! Data-parallel learners over MPI (issue 13): each rank is a learner with
//! its own envs; [`rl_algo::exchange`] says what they share at every
//! update. This crate is the MPI side:
//!
//! * [`launcher`]: whether an MPI launcher (or Slurm's `srun`) started
//!   this process, and as which rank of how many, read from the
//!   launcher's environment, so that a build without MPI can refuse to
//!   run K independent copies;
//! * with the `mpi` feature, `Mpi` (`MPI_Init` / `MPI_Finalize`) and
//!   `MpiExchange`, the [`rl_algo::exchange::Exchange`] over
//!   `MPI_COMM_WORLD` (OpenMPI through the `mpi` crate; `scripts/setup
//!   --mpi` installs what it builds with).
//!
//! The feature is off in the workspace build, so nothing here needs MPI
//! unless `rl-cli` is built with `--features mpi`.

#[cfg(feature = "mpi")]
mod world;
#[cfg(feature = "mpi")]
pub use world::{Mpi, MpiExchange};

/// This process's place as a launcher started it: rank and world size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub size: usize,
    /// The rank among the ranks on this host (`OMPI_COMM_WORLD_LOCAL_RANK`,
    /// `MPI_LOCALRANKID`, `SLURM_LOCALID`; 0 when the launcher does not
    /// say): which of the host's GPUs this rank takes.
    pub local_rank: usize,
    /// The environment variable the size was read from.
    pub from: &'static str,
}

/// The rank and size a launcher gave this process, if one started it:
/// OpenMPI's `mpirun` (`OMPI_COMM_WORLD_SIZE`), MPICH and Intel MPI's
/// Hydra (`PMI_SIZE`), Slurm's `srun` (`SLURM_STEP_NUM_TASKS`, set for a
/// job step, not in a batch script itself).
pub fn launcher() -> Option<Launch> {
    launcher_in(|name| std::env::var(name).ok())
}

/// [`launcher`] over any environment (for tests).
pub fn launcher_in(var: impl Fn(&str) -> Option<String>) -> Option<Launch> {
    let number = |name: &str| var(name).and_then(|v| v.trim().parse::<usize>().ok());
    [
        ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
        ("PMI_SIZE", "PMI_RANK"),
        ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID"),
    ]
    .into_iter()
    .find_map(|(size, rank)| {
        Some(Launch {
            size: number(size)?,
            rank: number(rank).unwrap_or(0),
            local_rank: [
                "OMPI_COMM_WORLD_LOCAL_RANK",
                "MPI_LOCALRANKID",
                "SLURM_LOCALID",
            ]
            .into_iter()
            .find_map(number)
            .unwrap_or(0),
            from: size,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launchers_are_told_apart_by_their_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(launcher_in(env(&[])), None);
        let open = launcher_in(env(&[
            ("OMPI_COMM_WORLD_SIZE", "3"),
            ("OMPI_COMM_WORLD_RANK", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ]));
        assert_eq!(
            open,
            Some(Launch {
                rank: 2,
                size: 3,
                local_rank: 1,
                from: "OMPI_COMM_WORLD_SIZE"
            })
        );
        let hydra = launcher_in(env(&[("PMI_SIZE", "2"), ("PMI_RANK", "1")])).unwrap();
        assert_eq!((hydra.rank, hydra.size), (1, 2));
        // A Slurm batch script (no job step) is not a launch.
        assert_eq!(
            launcher_in(env(&[("SLURM_NTASKS", "4"), ("SLURM_PROCID", "0")])),
            None
        );
        let srun = launcher_in(env(&[
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_PROCID", "3"),
            ("SLURM_LOCALID", "1"),
        ]))
        .unwrap();
        assert_eq!((srun.rank, srun.size, srun.local_rank), (3, 4, 1));
        assert_eq!(hydra.local_rank, 0);
        assert_eq!(launcher_in(env(&[("PMI_SIZE", "many")])), None);
    }
}
