//! The learner's side of the workers: one data channel and one rollout slot
//! per worker process, and the rollouts of the current round.
//!
//! A round is synchronous: every worker gets `Collect { version }` for the
//! weights just published and the round is complete when each has delivered
//! a rollout collected with exactly those weights. Anything else a worker
//! sends is rejected, counted, and reported as a [`PoolEvent::Replace`] (the
//! supervisor kills the process and starts another, which joins with the
//! next generation number). So are a worker that stays silent past its
//! deadline and one whose channel closes. Nothing a retired process sends
//! is read again: its channel and slot are dropped on the spot.
//!
//! In **async** collection (the off-policy algorithms' `[run] collection =
//! "async"`) there are no rounds: each worker collects with whatever
//! weights are newest when it starts a chunk (`Collect { version }` says
//! the oldest it may use), the learner takes chunks one at a time in the
//! order they arrived and asks their worker for the next one at once, before
//! it trains, so that no worker waits for an update. A chunk's policy lag
//! is the learner's version when it is taken minus the version it was
//! collected with; chunks past `max_policy_lag` are dropped and counted.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rl_ipc::channel::wait_any;
use rl_ipc::frame::DecodeScratch;
use rl_ipc::messages::{ToLearner, ToWorker};
use rl_ipc::{Channel, ChannelError, RolloutHeader, RolloutSlot};
use rl_policy::Rollout;

/// Where one worker stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LinkState {
    /// No process: never started, or retired and not yet replaced.
    Absent,
    /// Started; its hello (with the slot) has not arrived.
    Joining { since: Instant },
    /// Ready, with nothing asked of it.
    Idle,
    /// Asked for a rollout of the current round.
    Collecting { since: Instant },
}

struct WorkerLink {
    generation: u32,
    channel: Option<Channel>,
    slot: Option<RolloutSlot>,
    state: LinkState,
    /// Whether its rollout for the current round is in.
    delivered: bool,
    /// The oldest weights version it may collect with (async).
    asked: u64,
    /// The weights version its delivered rollout was collected with.
    collected_with: u64,
}

/// Something only the supervisor can act on.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolEvent {
    /// Kill this worker process if it still runs, and start another.
    Replace {
        worker: u32,
        generation: u32,
        reason: String,
    },
    /// A replacement process said hello: its envs start fresh episodes.
    Rejoined { worker: u32, generation: u32 },
}

/// The sizes every worker's rollouts must have.
#[derive(Debug, Clone)]
pub struct RolloutShape {
    /// Which actions a rollout may hold.
    pub actions: ActionRange,
    pub num_steps: usize,
    pub envs_per_worker: usize,
    /// The global index of worker 0's first env (`rank * num_envs` in a
    /// data-parallel run; episodes name their env globally).
    pub first_env: usize,
    pub obs_dim: usize,
    pub action_dim: usize,
    /// Whether rollouts carry final observations (off-policy heads).
    pub final_obs: bool,
}

/// The actions a worker may report: what it applied to its envs.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionRange {
    /// PPO's Gaussian samples, unclipped: any finite value.
    Any,
    /// An index in `0..n`.
    Index(usize),
    /// Each value within its bounds (the off-policy heads report the
    /// actions they applied).
    Within(Vec<f32>, Vec<f32>),
}

impl ActionRange {
    /// The first action of `actions` (`dim` values each) outside the range.
    pub fn check(&self, actions: &[f32], dim: usize) -> Result<(), String> {
        let bad = match self {
            ActionRange::Any => None,
            ActionRange::Index(n) => actions
                .iter()
                .position(|a| a.fract() != 0.0 || *a < 0.0 || *a >= *n as f32)
                .map(|i| format!("action {i} is {}, not an index in 0..{n}", actions[i])),
            ActionRange::Within(low, high) => actions.iter().enumerate().find_map(|(i, a)| {
                let d = i % dim.max(1);
                (!(low[d]..=high[d]).contains(a))
                    .then(|| format!("action value {i} is {a}, outside [{}, {}]", low[d], high[d]))
            }),
        };
        bad.map_or(Ok(()), Err)
    }
}

/// See the module documentation.
pub struct WorkerPool {
    links: Vec<WorkerLink>,
    shape: RolloutShape,
    slot_capacity: usize,
    timeout: Duration,
    version: Option<u64>,
    parts: Vec<Rollout>,
    /// Each worker's collector snapshot after its rollout of the current
    /// round (its envs at the start of the next round).
    pending_snapshots: Vec<Vec<u8>>,
    /// The same after the last round that was merged (and so trained on):
    /// what a checkpoint of the learner's state goes with.
    snapshots: Vec<Vec<u8>>,
    incoming_snapshot: Vec<u8>,
    scratch: DecodeScratch,
    buf: Vec<u8>,
    /// When the last [`WorkerPool::poll`] returned.
    last_poll: Instant,
    /// Worker messages rejected so far.
    pub rejected: u64,
    /// Async collection: the largest policy lag a chunk may have.
    max_lag: Option<u64>,
    /// Async: workers whose chunk is in, oldest first.
    arrivals: std::collections::VecDeque<usize>,
    /// Async: the worker whose chunk was taken last, and its lag.
    taken: Option<(usize, u64)>,
    /// Async: chunks dropped for being staler than `max_lag`.
    pub stale: u64,
}

impl WorkerPool {
    pub fn new(num_workers: usize, shape: RolloutShape, timeout: Duration) -> Self {
        let slot_capacity = rl_ipc::frame::max_payload_len(
            shape.num_steps,
            shape.envs_per_worker,
            shape.obs_dim,
            shape.action_dim,
        )
        .unwrap_or(u64::MAX) as usize;
        WorkerPool {
            links: (0..num_workers)
                .map(|_| WorkerLink {
                    generation: 0,
                    channel: None,
                    slot: None,
                    state: LinkState::Absent,
                    delivered: false,
                    asked: 0,
                    collected_with: 0,
                })
                .collect(),
            shape,
            slot_capacity,
            timeout,
            version: None,
            parts: (0..num_workers).map(|_| Rollout::default()).collect(),
            pending_snapshots: vec![Vec::new(); num_workers],
            snapshots: vec![Vec::new(); num_workers],
            incoming_snapshot: Vec::new(),
            scratch: DecodeScratch::default(),
            buf: Vec::new(),
            last_poll: Instant::now(),
            rejected: 0,
            max_lag: None,
            arrivals: std::collections::VecDeque::new(),
            taken: None,
            stale: 0,
        }
    }

    /// Collects asynchronously (see the module documentation), dropping
    /// chunks with a policy lag above `max_lag`.
    pub fn collect_async(mut self, max_lag: u64) -> Self {
        self.max_lag = Some(max_lag);
        self
    }

    pub fn is_async(&self) -> bool {
        self.max_lag.is_some()
    }

    pub fn num_workers(&self) -> usize {
        self.links.len()
    }

    /// A worker process started (generation `generation`); `channel` is its
    /// data channel. Replaces whatever the pool knew of that worker.
    pub fn join(&mut self, worker: u32, generation: u32, channel: OwnedFd) -> Result<(), String> {
        let num_workers = self.links.len();
        let link = self
            .links
            .get_mut(worker as usize)
            .ok_or_else(|| format!("worker {worker} joined a pool of {num_workers}"))?;
        link.generation = generation;
        link.channel = Some(Channel::from_fd(channel));
        link.slot = None;
        link.state = LinkState::Joining {
            since: Instant::now(),
        };
        Ok(())
    }

    /// Starts a round for weights `version` (published already): asks every
    /// ready worker for a rollout.
    pub fn start_round(&mut self, version: u64) -> Vec<PoolEvent> {
        self.version = Some(version);
        if !self.is_async() {
            for link in &mut self.links {
                link.delivered = false;
            }
        }
        let mut events = Vec::new();
        for worker in 0..self.links.len() {
            self.ask(worker, &mut events);
        }
        events
    }

    /// Whether every worker's rollout of the current round is in (async:
    /// whether a chunk is waiting).
    pub fn round_complete(&self) -> bool {
        if self.is_async() {
            return !self.arrivals.is_empty();
        }
        self.version.is_some() && self.links.iter().all(|l| l.delivered)
    }

    /// Async: takes the oldest chunk that arrived into `chunk` (that
    /// worker's envs only) and asks its worker for the next one; chunks
    /// staler than the limit are dropped on the way. `None` when none is
    /// waiting.
    pub fn take_chunk(&mut self, chunk: &mut Rollout, events: &mut Vec<PoolEvent>) -> Option<u64> {
        let version = self.version?;
        while let Some(worker) = self.arrivals.pop_front() {
            let link = &mut self.links[worker];
            link.delivered = false;
            let lag = version.saturating_sub(link.collected_with);
            if lag > self.max_lag.unwrap_or(u64::MAX) {
                self.stale += 1;
                self.ask(worker, events);
                continue;
            }
            std::mem::swap(chunk, &mut self.parts[worker]);
            self.taken = Some((worker, lag));
            self.ask(worker, events);
            return Some(lag);
        }
        None
    }

    /// Asks `worker` for the current round's rollout if it is ready and has
    /// not delivered it.
    fn ask(&mut self, worker: usize, events: &mut Vec<PoolEvent>) {
        let Some(version) = self.version else {
            return;
        };
        let link = &mut self.links[worker];
        if link.delivered || link.state != LinkState::Idle {
            return;
        }
        link.asked = version;
        let sent = link
            .channel
            .as_ref()
            .map(|c| c.send(&ToWorker::Collect { version }.encode(), &[]));
        match sent {
            Some(Ok(())) => {
                link.state = LinkState::Collecting {
                    since: Instant::now(),
                }
            }
            Some(Err(e)) => {
                self.retire(worker, format!("cannot ask it for a rollout: {e}"), events)
            }
            None => {}
        }
    }

    /// Drops a worker's channel and slot and asks for a replacement.
    fn retire(&mut self, worker: usize, reason: String, events: &mut Vec<PoolEvent>) {
        self.arrivals.retain(|w| *w != worker);
        let link = &mut self.links[worker];
        link.delivered = false;
        link.channel = None;
        link.slot = None;
        link.state = LinkState::Absent;
        events.push(PoolEvent::Replace {
            worker: worker as u32,
            generation: link.generation,
            reason,
        });
    }

    fn reject(&mut self, worker: usize, reason: String, events: &mut Vec<PoolEvent>) {
        self.rejected += 1;
        self.retire(worker, format!("rejected its message: {reason}"), events);
    }

    /// Waits up to `wait` for worker messages (and for `extra` to become
    /// readable), handles them, and retires workers past their deadline.
    /// Returns whether `extra` is readable, and what the supervisor must do.
    pub fn poll(
        &mut self,
        extra: Option<BorrowedFd<'_>>,
        wait: Duration,
    ) -> Result<(bool, Vec<PoolEvent>), ChannelError> {
        let mut events = Vec::new();
        let now = Instant::now();
        // Time the learner spent away from its workers (an update, a
        // checkpoint, or the whole process stopped): nobody could be heard
        // meanwhile, so no deadline counts it.
        if now.duration_since(self.last_poll) > Duration::from_secs(1) {
            self.discount(self.last_poll, now);
        }
        // Wake up in time for the nearest deadline.
        let mut wait = wait;
        for link in &self.links {
            if let LinkState::Joining { since } | LinkState::Collecting { since } = link.state {
                wait = wait.min((since + self.timeout).saturating_duration_since(now));
            }
        }
        let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        for (i, link) in self.links.iter().enumerate() {
            if let Some(c) = &link.channel {
                fds.push(c.as_fd());
                owners.push(i);
            }
        }
        if let Some(fd) = extra {
            fds.push(fd);
        }
        let waited = Instant::now();
        let ready = wait_any(&fds, wait)?;
        // A wait far longer than asked: this process was stopped meanwhile.
        let overslept = waited.elapsed().saturating_sub(wait);
        let extra_ready = extra.is_some() && ready.last().copied().unwrap_or(false);
        let ready_workers: Vec<usize> = owners
            .iter()
            .zip(&ready)
            .filter(|(_, r)| **r)
            .map(|(w, _)| *w)
            .collect();
        drop(fds);
        if overslept > Duration::from_secs(1) {
            self.discount(waited + wait, waited + wait + overslept);
        }
        for worker in ready_workers {
            self.receive(worker, &mut events);
        }
        let now = Instant::now();
        for worker in 0..self.links.len() {
            let link = &self.links[worker];
            let overdue = |since: Instant| now.duration_since(since) >= self.timeout;
            let reason = match link.state {
                LinkState::Joining { since } if overdue(since) => "did not start",
                LinkState::Collecting { since } if overdue(since) => "delivered no rollout",
                _ => continue,
            };
            let reason = format!(
                "{reason} within {:.1} s ([run] worker_timeout_s)",
                self.timeout.as_secs_f64()
            );
            self.retire(worker, reason, &mut events);
        }
        self.last_poll = Instant::now();
        Ok((extra_ready, events))
    }

    /// Moves every pending deadline on by the part of `from..to` after it
    /// started: time in which this process could not listen to its workers.
    fn discount(&mut self, from: Instant, to: Instant) {
        for link in &mut self.links {
            if let LinkState::Joining { since } | LinkState::Collecting { since } = &mut link.state
            {
                *since += to.saturating_duration_since((*since).max(from));
            }
        }
    }

    fn receive(&mut self, worker: usize, events: &mut Vec<PoolEvent>) {
        let Some(channel) = &self.links[worker].channel else {
            return;
        };
        let received = match channel.recv(&mut self.buf, Some(Duration::ZERO)) {
            Ok(received) => received,
            Err(ChannelError::Timeout(_)) => return,
            Err(ChannelError::Closed) => {
                return self.retire(worker, "its process exited".to_string(), events)
            }
            Err(e) => return self.reject(worker, e.to_string(), events),
        };
        let message = match ToLearner::decode(&self.buf[..received.len]) {
            Ok(message) => message,
            Err(e) => return self.reject(worker, e.to_string(), events),
        };
        let generation = self.links[worker].generation;
        match message {
            ToLearner::Hello {
                worker: id,
                generation: g,
                slot_capacity,
            } => {
                if !matches!(self.links[worker].state, LinkState::Joining { .. }) {
                    return self.reject(worker, "a second hello".into(), events);
                }
                if (id, g) != (worker as u32, generation) {
                    return self.reject(
                        worker,
                        format!("a hello from worker {id} generation {g} on the channel of worker {worker} generation {generation}"),
                        events,
                    );
                }
                // The payload's room, plus whatever the worker set aside for
                // its snapshot (within the message limit).
                let limit = self.slot_capacity as u64 + rl_ipc::frame::MAX_PAYLOAD;
                if slot_capacity < self.slot_capacity as u64 || slot_capacity > limit {
                    return self.reject(
                        worker,
                        format!(
                            "a slot of {slot_capacity} bytes, expected {} to {limit}",
                            self.slot_capacity
                        ),
                        events,
                    );
                }
                let Some(fd) = received.fds.into_iter().next() else {
                    return self.reject(worker, "a hello without its slot".into(), events);
                };
                match RolloutSlot::open(fd, slot_capacity as usize) {
                    Ok(slot) => self.links[worker].slot = Some(slot),
                    Err(e) => return self.reject(worker, e.to_string(), events),
                }
                self.links[worker].state = LinkState::Idle;
                if generation > 0 {
                    events.push(PoolEvent::Rejoined {
                        worker: worker as u32,
                        generation,
                    });
                }
                self.ask(worker, events);
            }
            ToLearner::Rollout(header) => {
                if let Err(reason) = self.accept(worker, &header) {
                    return self.reject(worker, reason, events);
                }
                std::mem::swap(
                    &mut self.pending_snapshots[worker],
                    &mut self.incoming_snapshot,
                );
                self.links[worker].state = LinkState::Idle;
                self.links[worker].delivered = true;
                self.links[worker].collected_with = header.weights_version;
                if self.is_async() {
                    self.arrivals.push_back(worker);
                }
            }
        }
    }

    /// Checks a rollout header against what this worker owes, then copies
    /// and checks the payload.
    fn accept(&mut self, worker: usize, h: &RolloutHeader) -> Result<(), String> {
        let link = &self.links[worker];
        if !matches!(link.state, LinkState::Collecting { .. }) {
            return Err("a rollout nobody asked for".into());
        }
        if (h.worker, h.generation) != (worker as u32, link.generation) {
            return Err(format!(
                "a rollout from worker {} generation {} on the channel of worker {worker} generation {}",
                h.worker, h.generation, link.generation
            ));
        }
        let version = self.version.unwrap_or(u64::MAX);
        if self.is_async() {
            // Any weights from those it was asked for to the newest.
            if !(link.asked..=version).contains(&h.weights_version) {
                return Err(format!(
                    "a chunk collected with weights version {}, it was asked for {} to {version}",
                    h.weights_version, link.asked
                ));
            }
        } else if h.weights_version != version {
            return Err(format!(
                "a rollout collected with weights version {}, the round is for version {version}",
                h.weights_version
            ));
        }
        let s = &self.shape;
        let sizes = [h.num_steps, h.num_envs, h.obs_dim, h.action_dim].map(|v| v as usize);
        if sizes != [s.num_steps, s.envs_per_worker, s.obs_dim, s.action_dim] {
            return Err(format!(
                "a rollout of {} steps x {} envs (obs {}, action {}); this run uses {} x {} (obs {}, action {})",
                sizes[0], sizes[1], sizes[2], sizes[3],
                s.num_steps, s.envs_per_worker, s.obs_dim, s.action_dim
            ));
        }
        if h.final_obs != s.final_obs {
            return Err(format!(
                "a rollout {} final observations; this run's {}",
                if h.final_obs { "with" } else { "without" },
                if s.final_obs {
                    "need them"
                } else {
                    "have none"
                }
            ));
        }
        let slot = link.slot.as_ref().ok_or("a rollout before its slot")?;
        let part = &mut self.parts[worker];
        slot.read(h, &mut self.scratch, part, &mut self.incoming_snapshot)
            .map_err(|e| e.to_string())?;
        s.actions.check(&part.actions, s.action_dim)?;
        let first = (s.first_env + worker * s.envs_per_worker) as u32;
        let envs = first..first + s.envs_per_worker as u32;
        if let Some(e) = part.episodes.iter().find(|e| !envs.contains(&e.env)) {
            return Err(format!(
                "an episode of env {}, outside the worker's envs {envs:?}",
                e.env
            ));
        }
        Ok(())
    }

    /// Each worker's collector snapshot at the start of the round after the
    /// last committed one (empty where its envs do not support snapshots),
    /// by worker index: a rollout delivered for a round that was then
    /// abandoned, or whose update failed, does not count.
    pub fn snapshots(&self) -> Vec<Vec<u8>> {
        self.snapshots.clone()
    }

    /// The envs of `worker`, as global indices.
    pub fn env_range(&self, worker: u32) -> std::ops::Range<usize> {
        let first = worker as usize * self.shape.envs_per_worker;
        first..first + self.shape.envs_per_worker
    }

    /// Puts the round's rollouts together into `merged` (all envs, in
    /// global env order, episodes as one collector would list them).
    pub fn merge_into(&mut self, merged: &mut Rollout) -> Result<(), String> {
        let s = &self.shape;
        merged.reshape(
            s.num_steps,
            s.envs_per_worker * self.links.len(),
            s.obs_dim,
            s.action_dim,
        );
        if s.final_obs {
            merged.keep_final_obs();
        }
        for (worker, part) in self.parts.iter().enumerate() {
            merged.place_envs(part, worker * s.envs_per_worker)?;
        }
        merged.sort_episodes();
        Ok(())
    }

    /// The merged round was trained on: its snapshots are now what a
    /// checkpoint of the learner's state goes with. (Until then, an update
    /// that is abandoned or diverges leaves the learner at the state the
    /// previous snapshots belong to.)
    pub fn commit_round(&mut self) {
        match self.taken.take() {
            // Async: the taken chunk's worker only.
            Some((worker, _)) => {
                self.snapshots[worker].clone_from(&self.pending_snapshots[worker]);
            }
            None => self.snapshots.clone_from(&self.pending_snapshots),
        }
    }

    /// Asks every worker to exit.
    pub fn stop_all(&mut self) {
        for link in &mut self.links {
            if let Some(c) = link.channel.take() {
                let _ = c.send_within(&ToWorker::Stop.encode(), &[], Duration::from_millis(100));
            }
            link.slot = None;
            link.state = LinkState::Absent;
        }
    }
}
