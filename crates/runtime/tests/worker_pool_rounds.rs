//! Guards the learner's side of the workers (`training::pool::WorkerPool`)
//! without any process: each worker is a socket pair and a rollout slot in
//! this test, playing the protocol right or wrong. A round completes only
//! with every worker's rollout for its version, merged in global env
//! order; anything else is rejected, counted and turned into a replacement;
//! snapshots count only once a round is committed.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rl_ipc::messages::{ToLearner, ToWorker};
use rl_ipc::{Channel, RolloutSlot};
use rl_policy::Rollout;
use rl_runtime::training::pool::{PoolEvent, RolloutShape, WorkerPool};

const SHAPE: RolloutShape = RolloutShape {
    actions: rl_runtime::training::pool::ActionRange::Any,
    num_steps: 3,
    envs_per_worker: 2,
    first_env: 0,
    obs_dim: 4,
    action_dim: 1,
    final_obs: false,
};

/// One worker played by the test: its end of the data channel and its slot.
struct FakeWorker {
    id: u32,
    generation: u32,
    channel: Channel,
    slot: RolloutSlot,
    buf: Vec<u8>,
}

impl FakeWorker {
    /// Joins `pool` as worker `id` of `generation` and says hello.
    fn join(pool: &mut WorkerPool, id: u32, generation: u32) -> FakeWorker {
        let (learner_end, worker_end) = Channel::pair().unwrap();
        pool.join(id, generation, learner_end.into_fd()).unwrap();
        let capacity = rl_ipc::frame::max_payload_len(3, 2, 4, 1).unwrap() as usize + 4096;
        let slot = RolloutSlot::create(capacity).unwrap();
        let hello = ToLearner::Hello {
            worker: id,
            generation,
            slot_capacity: capacity as u64,
        };
        worker_end.send(&hello.encode(), &[slot.fd()]).unwrap();
        FakeWorker {
            id,
            generation,
            channel: worker_end,
            slot,
            buf: Vec::new(),
        }
    }

    /// The next `Collect` the pool sent, if any within a second.
    fn asked_version(&mut self) -> Option<u64> {
        let received = self
            .channel
            .recv(&mut self.buf, Some(Duration::from_secs(1)))
            .ok()?;
        match ToWorker::decode(&self.buf[..received.len]).unwrap() {
            ToWorker::Collect { version } => Some(version),
            ToWorker::Stop => None,
        }
    }

    /// A rollout whose every observation is `fill`, written into the slot
    /// and announced with `version`.
    fn deliver(&mut self, version: u64, fill: f32, snapshot: &[u8]) {
        let mut r = Rollout::default();
        r.reshape(
            SHAPE.num_steps,
            SHAPE.envs_per_worker,
            SHAPE.obs_dim,
            SHAPE.action_dim,
        );
        r.obs.iter_mut().for_each(|o| *o = fill);
        r.last_obs.iter_mut().for_each(|o| *o = fill);
        r.rewards.iter_mut().for_each(|x| *x = fill);
        let header = self
            .slot
            .write(self.id, self.generation, version, &r, snapshot)
            .unwrap();
        self.channel
            .send(&ToLearner::Rollout(header).encode(), &[])
            .unwrap();
    }
}

/// Polls until the round is complete or `limit` passes; every event seen.
fn poll_until_complete(pool: &mut WorkerPool, limit: Duration) -> Vec<PoolEvent> {
    let deadline = Instant::now() + limit;
    let mut events = Vec::new();
    while !pool.round_complete() && Instant::now() < deadline {
        let (_, more) = pool.poll(None, Duration::from_millis(20)).unwrap();
        events.extend(more);
    }
    events
}

/// Polls until an event arrives or `limit` passes.
fn poll_for_event(pool: &mut WorkerPool, limit: Duration) -> Vec<PoolEvent> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let (_, events) = pool.poll(None, Duration::from_millis(20)).unwrap();
        if !events.is_empty() {
            return events;
        }
    }
    Vec::new()
}

fn replaced(events: &[PoolEvent]) -> Vec<(u32, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            PoolEvent::Replace { worker, reason, .. } => Some((*worker, reason.clone())),
            PoolEvent::Rejoined { .. } => None,
        })
        .collect()
}

fn pool() -> WorkerPool {
    WorkerPool::new(2, SHAPE, Duration::from_secs(30))
}

#[test]
fn a_round_completes_with_every_rollout_merged_in_global_env_order() {
    let mut pool = pool();
    let mut a = FakeWorker::join(&mut pool, 0, 0);
    let mut b = FakeWorker::join(&mut pool, 1, 0);
    assert!(pool.start_round(7).is_empty());
    // The hellos are read by the first polls; each is then asked.
    let _ = pool.poll(None, Duration::from_millis(50)).unwrap();
    assert_eq!(a.asked_version(), Some(7));
    assert_eq!(b.asked_version(), Some(7));
    b.deliver(7, 2.0, b"b-after-7");
    a.deliver(7, 1.0, b"a-after-7");
    let events = poll_until_complete(&mut pool, Duration::from_secs(5));
    assert!(pool.round_complete(), "{events:?}");
    assert!(replaced(&events).is_empty(), "{events:?}");

    let mut merged = Rollout::default();
    pool.merge_into(&mut merged).unwrap();
    assert_eq!((merged.num_steps, merged.num_envs), (3, 4));
    // Envs 0-1 are worker 0's (1.0), envs 2-3 worker 1's (2.0), every step.
    for t in 0..3 {
        let row: Vec<f32> = (0..4).map(|e| merged.rewards[t * 4 + e]).collect();
        assert_eq!(row, [1.0, 1.0, 2.0, 2.0]);
    }
    assert_eq!(pool.rejected, 0);

    // Snapshots go with the learner's state only once the round is trained on.
    assert_eq!(pool.snapshots(), vec![Vec::<u8>::new(), Vec::new()]);
    pool.commit_round();
    assert_eq!(
        pool.snapshots(),
        vec![b"a-after-7".to_vec(), b"b-after-7".to_vec()]
    );
}

#[test]
fn a_rollout_of_another_weights_version_is_rejected_counted_and_its_worker_replaced() {
    let mut pool = pool();
    let mut a = FakeWorker::join(&mut pool, 0, 0);
    let mut b = FakeWorker::join(&mut pool, 1, 0);
    pool.start_round(3);
    let _ = pool.poll(None, Duration::from_millis(50)).unwrap();
    assert_eq!(a.asked_version(), Some(3));
    assert_eq!(b.asked_version(), Some(3));
    a.deliver(3, 1.0, b"");
    b.deliver(2, 2.0, b"");
    let events = poll_until_complete(&mut pool, Duration::from_millis(500));
    assert!(!pool.round_complete());
    let replaced = replaced(&events);
    assert_eq!(replaced.len(), 1, "{events:?}");
    assert_eq!(replaced[0].0, 1);
    assert!(
        replaced[0].1.contains("weights version 2") && replaced[0].1.contains("version 3"),
        "{}",
        replaced[0].1
    );
    assert_eq!(pool.rejected, 1);

    // Its replacement (generation 1) rejoins, is asked, and completes the round.
    let mut b2 = FakeWorker::join(&mut pool, 1, 1);
    let events = poll_for_event(&mut pool, Duration::from_secs(2));
    assert!(
        events.contains(&PoolEvent::Rejoined {
            worker: 1,
            generation: 1
        }),
        "{events:?}"
    );
    assert_eq!(b2.asked_version(), Some(3));
    b2.deliver(3, 2.0, b"");
    poll_until_complete(&mut pool, Duration::from_secs(5));
    assert!(pool.round_complete());
    assert_eq!(pool.env_range(1), 2..4);
}

#[test]
fn a_silent_worker_is_replaced_at_its_deadline_and_a_closed_one_at_once() {
    let mut pool = WorkerPool::new(2, SHAPE, Duration::from_millis(200));
    let mut a = FakeWorker::join(&mut pool, 0, 0);
    let b = FakeWorker::join(&mut pool, 1, 0);
    pool.start_round(0);
    let _ = pool.poll(None, Duration::from_millis(50)).unwrap();
    assert_eq!(a.asked_version(), Some(0));
    // Worker 1's process "exits": its end of the channel closes.
    drop(b);
    let events = poll_for_event(&mut pool, Duration::from_secs(2));
    assert_eq!(replaced(&events).len(), 1, "{events:?}");
    assert!(replaced(&events)[0].1.contains("exited"), "{events:?}");
    // Worker 0 never delivers: replaced at its deadline, not before.
    let asked = Instant::now();
    let events = poll_for_event(&mut pool, Duration::from_secs(5));
    let replaced = replaced(&events);
    assert_eq!(replaced.len(), 1, "{events:?}");
    assert_eq!(replaced[0].0, 0);
    assert!(
        replaced[0].1.contains("delivered no rollout"),
        "{}",
        replaced[0].1
    );
    assert!(asked.elapsed() >= Duration::from_millis(100));
    assert_eq!(pool.rejected, 0, "a timeout is not a rejected message");
}

#[test]
fn garbage_and_unasked_rollouts_are_rejected_with_the_reason() {
    let mut pool = pool();
    let mut a = FakeWorker::join(&mut pool, 0, 0);
    let mut b = FakeWorker::join(&mut pool, 1, 0);
    let _ = pool.poll(None, Duration::from_millis(50)).unwrap();
    // No round yet: a rollout nobody asked for.
    a.deliver(0, 1.0, b"");
    let events = poll_for_event(&mut pool, Duration::from_secs(2));
    assert!(
        replaced(&events)[0].1.contains("nobody asked for"),
        "{events:?}"
    );
    // A stranger's bytes on a fresh worker's channel.
    let a2 = FakeWorker::join(&mut pool, 0, 1);
    a2.channel.send(b"\x07garbage", &[]).unwrap();
    let events = poll_for_event(&mut pool, Duration::from_secs(2));
    let events: Vec<PoolEvent> = events
        .into_iter()
        .chain(poll_for_event(&mut pool, Duration::from_millis(300)))
        .collect();
    assert_eq!(
        replaced(&events).len(),
        1,
        "the hello is accepted, the garbage rejected: {events:?}"
    );
    assert_eq!(pool.rejected, 2);
    // A stopped pool tells every worker it still holds so.
    pool.stop_all();
    let received = b
        .channel
        .recv(&mut b.buf, Some(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(
        ToWorker::decode(&b.buf[..received.len]).unwrap(),
        ToWorker::Stop
    );
}
