//! Rollouts through a real pipe: exact round trips, and every kind of
//! malformed message rejected with a reason.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use std::fs::File;
use std::io::Write;

use rl_env::Registry;
use rl_ipc::frame::{encode_rollout, HEADER_LEN};
use rl_ipc::{read_rollout, write_rollout, FrameError, RolloutMeta};
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

fn pipe() -> (File, File) {
    let (read, write) = nix::unistd::pipe().unwrap();
    (File::from(read), File::from(write))
}

#[test]
fn rollouts_cross_a_pipe_unchanged() {
    let (mut reader, mut writer) = pipe();
    let sent = vec![rollout("CartPole-v1", 300), rollout("Pendulum-v1", 210)];
    assert!(!sent[0].episodes.is_empty() && sent[1].truncated.iter().any(|t| *t));
    let to_send = sent.clone();
    let writer_thread = std::thread::spawn(move || {
        for (i, r) in to_send.iter().enumerate() {
            let meta = RolloutMeta {
                worker_id: i as u32,
                weights_version: 40 + i as u64,
            };
            write_rollout(&mut writer, meta, r).unwrap();
        }
    });
    for (i, expected) in sent.iter().enumerate() {
        let (meta, got) = read_rollout(&mut reader).unwrap().unwrap();
        assert_eq!(
            meta,
            RolloutMeta {
                worker_id: i as u32,
                weights_version: 40 + i as u64
            }
        );
        assert_eq!(&got, expected);
    }
    writer_thread.join().unwrap();
    assert!(
        read_rollout(&mut reader).unwrap().is_none(),
        "clean end of stream"
    );
}

fn reject(bytes: &[u8]) -> String {
    match read_rollout(&mut &bytes[..]) {
        Err(FrameError::Malformed(reason)) => reason,
        other => panic!("expected a malformed-message error, got {other:?}"),
    }
}

#[test]
fn malformed_messages_are_rejected_with_a_reason() {
    let meta = RolloutMeta {
        worker_id: 1,
        weights_version: 2,
    };
    let good = encode_rollout(meta, &rollout("CartPole-v1", 20)).unwrap();
    let te = 20 * 3;

    let mut bad = good.clone();
    bad[0] ^= 0xFF;
    assert!(reject(&bad).contains("magic"));

    let mut bad = good.clone();
    bad[48..56].copy_from_slice(&(good.len() as u64).to_le_bytes());
    assert!(
        reject(&bad).contains("need"),
        "a payload length that disagrees with the sizes"
    );

    let mut bad = good.clone();
    bad[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
    bad[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    let reason = reject(&bad);
    assert!(
        reason.contains("need") || reason.contains("overflow") || reason.contains("limit"),
        "{reason}"
    );

    // A NaN reward: rewards follow obs, actions, log_probs and values.
    let rewards_at = HEADER_LEN + 4 * (te * 4 + te + te + te);
    let mut bad = good.clone();
    bad[rewards_at..rewards_at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(reject(&bad).contains("rewards[0]"));

    // A flag that is neither 0 nor 1: flags follow the float arrays
    // (obs [te*4], actions, log_probs, values, rewards, final_values [te each],
    // last_obs [3*4], last_values [3]).
    let terminated_at = HEADER_LEN + 4 * (te * 4 + te + te * 4 + 3 * 4 + 3);
    let mut bad = good.clone();
    bad[terminated_at] = 2;
    assert!(reject(&bad).contains("terminated[0] is 2"));

    // Cut short in the header and in the payload.
    assert!(reject(&good[..10]).contains("header"));
    assert!(matches!(
        read_rollout(&mut &good[..good.len() - 1]),
        Err(FrameError::Io(_))
    ));

    let mut bad = good;
    bad[4] = 9;
    assert!(reject(&bad).contains("kind 9"));
}

#[test]
fn inconsistent_rollouts_are_not_encoded() {
    let mut r = rollout("CartPole-v1", 5);
    r.rewards.pop();
    assert!(encode_rollout(
        RolloutMeta {
            worker_id: 0,
            weights_version: 1
        },
        &r
    )
    .is_err());
    let mut sink = Vec::new();
    assert!(write_rollout(
        &mut sink,
        RolloutMeta {
            worker_id: 0,
            weights_version: 1
        },
        &r
    )
    .is_err());
    sink.flush().unwrap();
    assert!(sink.is_empty());
}
