//! MPI itself: initialisation, finalisation and the collectives of
//! [`rl_algo::exchange::Exchange`] on `MPI_COMM_WORLD`.

use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Equivalence, Root};
use mpi::Threading;
use rl_algo::exchange::{Exchange, ExchangeError, Traffic};

/// MPI, initialised: `MPI_Finalize` when dropped. A rank that ends with
/// an error should exit without dropping it (the launcher then ends the
/// other ranks; finalising would wait for them).
pub struct Mpi {
    universe: Universe,
}

impl Mpi {
    /// `MPI_Init_thread` with `MPI_THREAD_SERIALIZED`: one thread at a
    /// time calls MPI (the main thread, or while a learner process runs,
    /// the supervisor's relay thread, `rl_runtime::processes::relay`).
    pub fn init() -> Result<Mpi, String> {
        let (universe, provided) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| "MPI was already initialised in this process".to_string())?;
        if provided < Threading::Serialized {
            return Err(format!(
                "this MPI provides {provided:?} threading; MPI_THREAD_SERIALIZED is needed (the learner's collectives run on a thread of their own)"
            ));
        }
        Ok(Mpi { universe })
    }

    pub fn rank(&self) -> usize {
        self.universe.world().rank() as usize
    }

    pub fn size(&self) -> usize {
        self.universe.world().size() as usize
    }

    /// `MPI_Barrier`: every rank has got here.
    pub fn barrier(&self) {
        self.universe.world().barrier();
    }

    /// Rank 0's `bytes` to every rank (`MPI_Bcast` of the length, then of
    /// the bytes): on rank 0 they are sent, elsewhere replaced.
    pub fn broadcast_from_rank0(&self, bytes: &mut Vec<u8>) {
        let world = self.universe.world();
        let root = world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
    }

    /// The collectives on `MPI_COMM_WORLD`.
    pub fn exchange(&self) -> MpiExchange {
        MpiExchange {
            world: self.universe.world(),
            traffic: Traffic::default(),
        }
    }
}

/// [`Exchange`] over `MPI_COMM_WORLD`: `MPI_Allreduce` (sum) and
/// `MPI_Allgather`. MPI's default error handler ends the job on a failed
/// collective, so these do not return errors of their own.
pub struct MpiExchange {
    world: SimpleCommunicator,
    traffic: Traffic,
}

// SAFETY: the communicator is a handle that MPI lets any thread use under
// MPI_THREAD_SERIALIZED (what `Mpi::init` asks for and checks), provided
// no two threads call MPI at once: an `MpiExchange` moves to the relay
// thread whole, and the thread that gave it away makes no MPI call until
// the relay has ended.
unsafe impl Send for MpiExchange {}

impl MpiExchange {
    /// `MPI_Allreduce` (sum) in place (rsmpi takes separate send and
    /// receive buffers: the values are copied to send).
    fn sum<T: Equivalence + Copy>(&mut self, values: &mut [T]) {
        let send = values.to_vec();
        self.timed(std::mem::size_of_val(values), |x| {
            x.world
                .all_reduce_into(&send[..], values, SystemOperation::sum());
        });
    }

    /// `MPI_Allgather`: every rank's `values`, in rank order.
    fn gather<T: Equivalence + Copy + Default>(&mut self, values: &[T]) -> Vec<T> {
        let mut all = vec![T::default(); values.len() * self.world.size() as usize];
        self.timed(std::mem::size_of_val(values), |x| {
            x.world.all_gather_into(values, &mut all[..]);
        });
        all
    }

    fn timed<T>(&mut self, bytes: usize, f: impl FnOnce(&mut Self) -> T) -> T {
        let start = Instant::now();
        let out = f(self);
        self.traffic.calls += 1;
        self.traffic.seconds += start.elapsed().as_secs_f64();
        self.traffic.bytes += bytes as u64;
        out
    }
}

impl Exchange for MpiExchange {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn ranks(&self) -> usize {
        self.world.size() as usize
    }

    fn traffic(&self) -> Traffic {
        self.traffic
    }

    fn sum_f32(&mut self, values: &mut [f32]) -> Result<(), ExchangeError> {
        self.sum(values);
        Ok(())
    }

    fn sum_f64(&mut self, values: &mut [f64]) -> Result<(), ExchangeError> {
        self.sum(values);
        Ok(())
    }

    fn gather_f64(&mut self, values: &[f64]) -> Result<Vec<f64>, ExchangeError> {
        Ok(self.gather(values))
    }

    fn gather_u64(&mut self, values: &[u64]) -> Result<Vec<u64>, ExchangeError> {
        Ok(self.gather(values))
    }
}
