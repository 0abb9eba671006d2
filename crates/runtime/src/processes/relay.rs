//! The collectives of a data-parallel run with worker processes
//! (`mpirun -np K train` with `[run] num_workers >= 1`). Each rank is the
//! usual set of processes: the supervisor (`train`, the MPI process the
//! launcher started), its learner, its workers (and on rank 0 the
//! evaluator). The learner computes the gradients, but a child that
//! `train` starts is not an MPI process, so it hands each collective to
//! its supervisor, which runs it over MPI:
//!
//! ```text
//! learner (RelayExchange)                      supervisor (Relay thread)
//!   operands -> ExchangeBlock (shared memory)
//!   --ToRelay { op, len } (+ new block fd)-->  MPI_Allreduce / MPI_Allgather
//!                                              in place on the block
//!   <--FromRelay::Done-------------------------
//!   result <- ExchangeBlock
//! ```
//!
//! The relay is a thread of the supervisor that owns MPI from the moment
//! the learner starts (MPI is initialised with `MPI_THREAD_SERIALIZED`;
//! the supervisor's own thread makes no MPI call until the relay has
//! ended), so the supervisor keeps watching its processes while a
//! collective waits for the other ranks. While the learner waits for an
//! answer it keeps sending heartbeats: waiting for slower ranks is not
//! being stuck.

use std::os::fd::AsFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rl_algo::exchange::{Exchange, ExchangeError, Traffic};
use rl_ipc::messages::{Collective, FromRelay, LearnerToSupervisor, ToRelay};
use rl_ipc::{Channel, ChannelError, ExchangeBlock};

use crate::error::RuntimeError;

/// How often a learner waiting for a collective tells its supervisor it
/// is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// [`Exchange`] for a learner process: every collective is run by its
/// supervisor (see the module documentation).
pub struct RelayExchange {
    rank: usize,
    ranks: usize,
    channel: Channel,
    /// A second handle on the learner's control channel, for heartbeats.
    control: Channel,
    block: Option<ExchangeBlock>,
    /// The block is new: its descriptor goes with the next request.
    attach: bool,
    buf: Vec<u8>,
    traffic: Traffic,
}

impl RelayExchange {
    pub fn new(
        rank: usize,
        ranks: usize,
        channel: Channel,
        control: &Channel,
    ) -> Result<Self, RuntimeError> {
        let control = control
            .as_fd()
            .try_clone_to_owned()
            .map(Channel::from_fd)
            .map_err(|e| RuntimeError::Setup(format!("cannot share the control channel: {e}")))?;
        Ok(RelayExchange {
            rank,
            ranks,
            channel,
            control,
            block: None,
            attach: false,
            buf: Vec::new(),
            traffic: Traffic::default(),
        })
    }

    /// The block, with room for `bytes`.
    fn block(&mut self, bytes: usize) -> Result<&mut ExchangeBlock, ExchangeError> {
        if self.block.as_ref().is_none_or(|b| b.len() < bytes) {
            let block = ExchangeBlock::create(bytes.next_power_of_two())
                .map_err(|e| ExchangeError(format!("cannot make the exchange block: {e}")))?;
            self.block = Some(block);
            self.attach = true;
        }
        self.block
            .as_mut()
            .ok_or_else(|| ExchangeError("no exchange block".into()))
    }

    /// Asks the supervisor to run `op` on the block's first `len` values
    /// and waits for its answer.
    fn run(&mut self, op: Collective, len: usize, bytes: usize) -> Result<(), ExchangeError> {
        let start = Instant::now();
        let request = ToRelay {
            op,
            len: len as u64,
        }
        .encode();
        let block = self
            .block
            .as_ref()
            .ok_or_else(|| ExchangeError("no exchange block".into()))?;
        let sent = match self.attach {
            true => self.channel.send(&request, &[block.fd()]),
            false => self.channel.send(&request, &[]),
        };
        sent.map_err(relay_error)?;
        self.attach = false;
        loop {
            match self.channel.recv(&mut self.buf, Some(HEARTBEAT)) {
                Ok(received) => {
                    FromRelay::decode(&self.buf[..received.len]).map_err(relay_error)?;
                    break;
                }
                Err(ChannelError::Timeout(_)) => {
                    // Never waits on the supervisor: a full channel means
                    // it has heartbeats enough.
                    if let Ok(bytes) = serde_json::to_vec(&LearnerToSupervisor::Heartbeat) {
                        let _ = self.control.send_within(&bytes, &[], Duration::ZERO);
                    }
                }
                Err(e) => return Err(relay_error(e)),
            }
        }
        self.traffic.calls += 1;
        self.traffic.seconds += start.elapsed().as_secs_f64();
        self.traffic.bytes += bytes as u64;
        Ok(())
    }
}

fn relay_error(e: ChannelError) -> ExchangeError {
    ExchangeError(format!(
        "the supervisor did not run the collective (its MPI process failed or ended): {e}"
    ))
}

fn block_error(e: rl_ipc::IpcError) -> ExchangeError {
    ExchangeError(e.to_string())
}

impl Exchange for RelayExchange {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.ranks
    }

    fn traffic(&self) -> Traffic {
        self.traffic
    }

    fn sum_f32(&mut self, values: &mut [f32]) -> Result<(), ExchangeError> {
        let n = values.len();
        let bytes = std::mem::size_of_val(values);
        self.block(bytes)?
            .f32s(n)
            .map_err(block_error)?
            .copy_from_slice(values);
        self.run(Collective::SumF32, n, bytes)?;
        values.copy_from_slice(self.block(bytes)?.f32s(n).map_err(block_error)?);
        Ok(())
    }

    fn sum_f64(&mut self, values: &mut [f64]) -> Result<(), ExchangeError> {
        let n = values.len();
        let bytes = std::mem::size_of_val(values);
        self.block(bytes)?
            .f64s(n)
            .map_err(block_error)?
            .copy_from_slice(values);
        self.run(Collective::SumF64, n, bytes)?;
        values.copy_from_slice(self.block(bytes)?.f64s(n).map_err(block_error)?);
        Ok(())
    }

    fn gather_f64(&mut self, values: &[f64]) -> Result<Vec<f64>, ExchangeError> {
        let n = values.len();
        let all = n * self.ranks;
        let room = all * std::mem::size_of::<f64>();
        self.block(room)?
            .f64s(n)
            .map_err(block_error)?
            .copy_from_slice(values);
        self.run(Collective::GatherF64, n, std::mem::size_of_val(values))?;
        Ok(self.block(room)?.f64s(all).map_err(block_error)?.to_vec())
    }

    fn gather_u64(&mut self, values: &[u64]) -> Result<Vec<u64>, ExchangeError> {
        let n = values.len();
        let all = n * self.ranks;
        let room = all * std::mem::size_of::<u64>();
        self.block(room)?
            .u64s(n)
            .map_err(block_error)?
            .copy_from_slice(values);
        self.run(Collective::GatherU64, n, std::mem::size_of_val(values))?;
        Ok(self.block(room)?.u64s(all).map_err(block_error)?.to_vec())
    }
}

/// The supervisor's side: a thread that runs the learner's collectives
/// with the rank's [`Exchange`] (MPI) until the learner's channel closes.
pub struct Relay {
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Relay {
    /// Starts the thread; the returned channel end is the learner's.
    pub fn start(exchange: Box<dyn Exchange + Send>) -> Result<(Relay, Channel), RuntimeError> {
        let (ours, learners) = Channel::pair()?;
        let thread = std::thread::Builder::new()
            .name("rl-mpi-relay".into())
            .spawn(move || serve(exchange, &ours))
            .map_err(|e| RuntimeError::Setup(format!("cannot start the MPI relay: {e}")))?;
        Ok((
            Relay {
                thread: Some(thread),
            },
            learners,
        ))
    }

    /// Waits up to `wait` for the relay to end (the learner has exited, so
    /// its channel is closed). A relay still inside a collective (the
    /// learner was killed in the middle of one) is left as it is: this
    /// rank cannot meet the others any more, and says so.
    pub fn finish(mut self, wait: Duration) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + wait;
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        while !thread.is_finished() {
            if Instant::now() > deadline {
                return Err(RuntimeError::Failed(
                    "the learner ended in the middle of a collective; this rank leaves the others without finishing MPI".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match thread.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(RuntimeError::Failed(format!("the MPI relay: {message}"))),
            Err(_) => Err(RuntimeError::Failed("the MPI relay panicked".into())),
        }
    }
}

fn serve(mut exchange: Box<dyn Exchange + Send>, channel: &Channel) -> Result<(), String> {
    let mut block: Option<ExchangeBlock> = None;
    let mut buf = Vec::new();
    loop {
        let received = match channel.recv(&mut buf, None) {
            Ok(received) => received,
            Err(ChannelError::Closed) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let request = ToRelay::decode(&buf[..received.len]).map_err(|e| e.to_string())?;
        if let Some(fd) = received.fds.into_iter().next() {
            block = Some(ExchangeBlock::open(fd).map_err(|e| e.to_string())?);
        }
        let block = block
            .as_mut()
            .ok_or("a collective asked for before any exchange block")?;
        let n = usize::try_from(request.len).map_err(|e| e.to_string())?;
        let text = |e: rl_ipc::IpcError| e.to_string();
        match request.op {
            Collective::SumF32 => exchange.sum_f32(block.f32s(n).map_err(text)?),
            Collective::SumF64 => exchange.sum_f64(block.f64s(n).map_err(text)?),
            Collective::GatherF64 => {
                exchange
                    .gather_f64(block.f64s(n).map_err(text)?)
                    .and_then(|all| {
                        let out = block
                            .f64s(all.len())
                            .map_err(|e| ExchangeError(e.to_string()))?;
                        out.copy_from_slice(&all);
                        Ok(())
                    })
            }
            Collective::GatherU64 => {
                exchange
                    .gather_u64(block.u64s(n).map_err(text)?)
                    .and_then(|all| {
                        let out = block
                            .u64s(all.len())
                            .map_err(|e| ExchangeError(e.to_string()))?;
                        out.copy_from_slice(&all);
                        Ok(())
                    })
            }
        }
        .map_err(|e| e.to_string())?;
        channel
            .send(&FromRelay::Done.encode(), &[])
            .map_err(|e| e.to_string())?;
    }
}
