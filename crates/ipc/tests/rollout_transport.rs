//! Rollouts from a worker to the learner: the header as a message on a real
//! channel, the payload in a real shared-memory slot; exact round trips, and
//! every kind of malformed message rejected with a reason.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use rl_env::Registry;
use rl_ipc::frame::{decode_payload_from_bytes, encode_payload_to_vec, DecodeScratch};
use rl_ipc::messages::ToLearner;
use rl_ipc::{Channel, FrameError, RolloutHeader, RolloutSlot};
use rl_policy::{ActionHead, Activation, Policy, PolicySpec, Rollout, RolloutCollector};

fn rollout(env: &str, steps: usize) -> Rollout {
    let registry = Registry::with_builtins();
    let envs = registry.make_vec(env, 3).unwrap();
    let (obs_dim, head) = match env {
        "Pendulum-v1" => (3, ActionHead::Gaussian { dim: 1 }),
        _ => (4, ActionHead::Categorical { n: 2 }),
    };
    let spec = PolicySpec {
        obs_dim,
        head,
        actor_hidden: vec![8],
        critic_hidden: vec![8],
        activation: Activation::Tanh,
    };
    let mut policy = Policy::new(spec).unwrap();
    for (i, w) in policy.weights_mut().iter_mut().enumerate() {
        *w = ((i % 7) as f32 - 3.0) * 0.1;
    }
    let weights = policy.weights().to_vec();
    let mut collector = RolloutCollector::new(envs, policy, 5, 0).unwrap();
    collector.set_policy(&weights, None).unwrap();
    collector.collect(steps).unwrap()
}

fn max_capacity(r: &Rollout) -> usize {
    rl_ipc::frame::max_payload_len(r.num_steps, r.num_envs, r.obs_dim, r.action_dim).unwrap()
        as usize
}

#[test]
fn rollouts_cross_a_channel_and_a_slot_unchanged() {
    let sent = [rollout("CartPole-v1", 300), rollout("Pendulum-v1", 210)];
    assert!(!sent[0].episodes.is_empty() && sent[1].truncated.iter().any(|t| *t));
    for (i, expected) in sent.iter().enumerate() {
        let (worker_end, learner_end) = Channel::pair().unwrap();
        let mut slot = RolloutSlot::create(max_capacity(expected)).unwrap();
        // The worker announces its slot, then a rollout in it.
        let hello = ToLearner::Hello {
            worker: 2,
            generation: 1,
            slot_capacity: slot.capacity() as u64,
        };
        worker_end.send(&hello.encode(), &[slot.fd()]).unwrap();
        let snapshot: Vec<u8> = (0..100 + i as u8).collect();
        let header = slot
            .write(2, 1, 40 + i as u64, expected, &snapshot)
            .unwrap();
        worker_end
            .send(&ToLearner::Rollout(header).encode(), &[])
            .unwrap();

        let mut buf = Vec::new();
        let received = learner_end.recv(&mut buf, None).unwrap();
        let ToLearner::Hello { slot_capacity, .. } =
            ToLearner::decode(&buf[..received.len]).unwrap()
        else {
            panic!("expected a hello");
        };
        let [fd] = <[_; 1]>::try_from(received.fds).unwrap();
        let learner_slot = RolloutSlot::open(fd, slot_capacity as usize).unwrap();
        let received = learner_end.recv(&mut buf, None).unwrap();
        let ToLearner::Rollout(got_header) = ToLearner::decode(&buf[..received.len]).unwrap()
        else {
            panic!("expected a rollout");
        };
        assert_eq!(got_header, header);
        assert_eq!(
            (
                got_header.worker,
                got_header.generation,
                got_header.weights_version
            ),
            (2, 1, 40 + i as u64)
        );
        let mut got = Rollout::default();
        let mut got_snapshot = Vec::new();
        learner_slot
            .read(
                &got_header,
                &mut DecodeScratch::default(),
                &mut got,
                &mut got_snapshot,
            )
            .unwrap();
        assert_eq!(&got, expected);
        assert_eq!(
            got_snapshot, snapshot,
            "the snapshot travels after the payload"
        );
    }
}

fn reject_payload(header: &RolloutHeader, bytes: &[u8]) -> String {
    match decode_payload_from_bytes(
        header,
        bytes,
        &mut DecodeScratch::default(),
        &mut Rollout::default(),
    ) {
        Err(FrameError::Malformed(reason)) => reason,
        other => panic!("expected a malformed-message error, got {other:?}"),
    }
}

fn reject_header(bytes: &[u8]) -> String {
    match RolloutHeader::decode(bytes) {
        Err(FrameError::Malformed(reason)) => reason,
        other => panic!("expected a malformed-header error, got {other:?}"),
    }
}

#[test]
fn malformed_headers_and_payloads_are_rejected_with_a_reason() {
    let r = rollout("CartPole-v1", 20);
    let header = RolloutHeader::for_rollout(1, 0, 2, &r).unwrap();
    let good = encode_payload_to_vec(&r, &header);
    let h = header.encode();
    let te = 20 * 3;

    let mut bad = h;
    bad[0] ^= 0xFF;
    assert!(reject_header(&bad).contains("magic"));
    let mut bad = h;
    bad[4] = 9;
    assert!(reject_header(&bad).contains("kind 9"));
    let mut bad = h;
    bad[48..56].copy_from_slice(&(good.len() as u64 + 4).to_le_bytes());
    assert!(
        reject_header(&bad).contains("need"),
        "a payload length that disagrees with the sizes"
    );
    let mut bad = h;
    bad[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    bad[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
    let reason = reject_header(&bad);
    assert!(
        reason.contains("need") || reason.contains("overflow") || reason.contains("limit"),
        "{reason}"
    );
    assert!(reject_header(&h[..10]).contains("64 bytes"));

    // A NaN reward: rewards follow obs, actions, log_probs and values.
    let rewards_at = 4 * (te * 4 + te + te + te);
    let mut bad = good.clone();
    bad[rewards_at..rewards_at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(reject_payload(&header, &bad).contains("rewards[0]"));
    let mut bad = good.clone();
    bad[0..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    assert!(reject_payload(&header, &bad).contains("obs[0] is inf"));

    // A flag that is neither 0 nor 1: flags follow the float arrays
    // (obs [te*4], actions, log_probs, values, rewards, final_values [te each],
    // last_obs [3*4], last_values [3]).
    let terminated_at = 4 * (te * 4 + te + te * 4 + 3 * 4 + 3);
    let mut bad = good.clone();
    bad[terminated_at] = 2;
    assert!(reject_payload(&header, &bad).contains("terminated[0] is 2"));

    // An episode that ended after the rollout's last step.
    assert!(!r.episodes.is_empty());
    let episode_at = terminated_at + 2 * te;
    let mut bad = good.clone();
    bad[episode_at + 12..episode_at + 16].copy_from_slice(&20u32.to_le_bytes());
    assert!(reject_payload(&header, &bad).contains("step 20"));

    // A payload that is not as long as its header says.
    assert!(reject_payload(&header, &good[..good.len() - 1]).contains("says"));
}

#[test]
fn a_header_that_does_not_fit_the_slot_is_refused() {
    let small = rollout("CartPole-v1", 4);
    let big = rollout("CartPole-v1", 40);
    let mut slot = RolloutSlot::create(max_capacity(&small)).unwrap();
    assert!(slot.write(0, 0, 0, &big, &[]).is_err());
    let room = slot.capacity()
        - RolloutHeader::for_rollout(0, 0, 0, &small)
            .unwrap()
            .payload_len as usize;
    assert!(
        slot.write(0, 0, 0, &small, &vec![0; room + 1]).is_err(),
        "a snapshot too big"
    );
    assert!(slot.write(0, 0, 0, &small, &vec![0; room]).is_ok());
    let header = RolloutHeader::for_rollout(0, 0, 0, &big).unwrap();
    let err = slot
        .read(
            &header,
            &mut DecodeScratch::default(),
            &mut Rollout::default(),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("the slot holds"), "{err}");
    // A slot whose size is not what the reader expects is not opened.
    let fd = slot.fd().try_clone_to_owned().unwrap();
    assert!(RolloutSlot::open(fd, slot.capacity() + 8).is_err());
}

#[test]
fn inconsistent_rollouts_are_not_encoded() {
    let mut r = rollout("CartPole-v1", 5);
    r.rewards.pop();
    assert!(RolloutHeader::for_rollout(0, 0, 1, &r).is_err());
    let mut slot = RolloutSlot::create(1 << 16).unwrap();
    assert!(slot.write(0, 0, 1, &r, &[]).is_err());
}
