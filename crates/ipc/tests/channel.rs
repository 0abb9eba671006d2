//! Message channels between processes: typed messages with descriptors
//! attached, a peer's exit seen as `Closed`, and no call that blocks without
//! a bound.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::process::Command;
use std::time::{Duration, Instant};

use rl_ipc::messages::{
    recv_json, send_json, Collective, FromRelay, LearnerToSupervisor, RunReport, ToLearner,
    ToRelay, ToWorker, UpdateReport,
};
use rl_ipc::{Channel, ChannelError};

#[test]
fn control_messages_arrive_whole_with_their_descriptors() {
    let (a, b) = Channel::pair().unwrap();
    let (mut read_end, write_end) = {
        let (r, w) = nix::unistd::pipe().unwrap();
        (std::fs::File::from(r), w)
    };
    let report = UpdateReport {
        elapsed_s: 1.5,
        env_steps: 2048,
        total_env_steps: 4096,
        updates: 8,
        // JSON has no NaN: it travels as null and comes back as NaN.
        steps_per_s: f64::NAN,
        episode_return_mean: None,
        // The algorithm's numbers; a non-finite one travels as null.
        stats: vec![Some(-0.01), Some(3.0), None, Some(3e-4)],
        rejected_messages: 2,
    };
    send_json(
        &a,
        &LearnerToSupervisor::Updated(report),
        &[write_end.as_fd()],
    )
    .unwrap();
    send_json(
        &a,
        &LearnerToSupervisor::Finished(RunReport {
            env_steps: 1,
            updates: 2,
            rejected_messages: 3,
            policy_file: "run/policy.safetensors".into(),
            checkpoint: None,
            update_s: 0.0,
            exchange: None,
        }),
        &[],
    )
    .unwrap();
    let mut buf = Vec::new();
    let (got, fds): (LearnerToSupervisor, _) = recv_json(&b, &mut buf, None).unwrap();
    let LearnerToSupervisor::Updated(got) = got else {
        panic!("{got:?}")
    };
    assert!(got.steps_per_s.is_nan());
    assert_eq!(got.env_steps, 2048);
    assert_eq!(got.stats, vec![Some(-0.01), Some(3.0), None, Some(3e-4)]);
    // The descriptor works in the receiver: write through it, read the pipe.
    let mut received = std::fs::File::from(fds.into_iter().next().unwrap());
    drop(write_end);
    received
        .write_all(b"through the passed descriptor")
        .unwrap();
    drop(received);
    let mut text = String::new();
    read_end.read_to_string(&mut text).unwrap();
    assert_eq!(text, "through the passed descriptor");
    let (got, fds): (LearnerToSupervisor, _) = recv_json(&b, &mut buf, None).unwrap();
    assert!(matches!(got, LearnerToSupervisor::Finished(r) if r.updates == 2) && fds.is_empty());
}

const CHILD_FD: &str = "RL_IPC_TEST_CHANNEL_FD";

#[test]
fn a_child_that_exits_shows_up_as_closed() {
    let (parent_end, child_end) = Channel::pair().unwrap();
    let inherited = child_end.inheritable().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_sends_one_message_and_exits", "--ignored"])
        .env(CHILD_FD, inherited.as_raw_fd().to_string())
        .spawn()
        .unwrap();
    drop(inherited);
    drop(child_end);
    let mut buf = Vec::new();
    let received = parent_end
        .recv(&mut buf, Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(
        ToWorker::decode(&buf[..received.len]).unwrap(),
        ToWorker::Collect { version: 9 }
    );
    // The child exits after the message: the next receive says so, well
    // before the timeout.
    let start = Instant::now();
    let err = parent_end
        .recv(&mut buf, Some(Duration::from_secs(20)))
        .unwrap_err();
    assert!(matches!(err, ChannelError::Closed), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(child.wait().unwrap().success());
}

/// Run by `a_child_that_exits_shows_up_as_closed` in a child.
#[test]
#[ignore = "runs as the child of another test"]
fn child_sends_one_message_and_exits() {
    let fd: i32 = std::env::var(CHILD_FD).unwrap().parse().unwrap();
    // SAFETY: the parent passed this inherited descriptor for us to own.
    let channel = unsafe { Channel::from_inherited(fd) }.unwrap();
    channel
        .send(&ToWorker::Collect { version: 9 }.encode(), &[])
        .unwrap();
}

#[test]
fn receives_time_out_and_sends_to_a_peer_that_never_reads_give_up() {
    let (a, b) = Channel::pair().unwrap();
    let mut buf = Vec::new();
    let err = b
        .recv(&mut buf, Some(Duration::from_millis(50)))
        .unwrap_err();
    assert!(matches!(err, ChannelError::Timeout(_)), "{err:?}");

    // Fill the peer's buffer; the send after that waits its deadline, no more.
    let message = vec![7u8; 16 * 1024];
    let start = Instant::now();
    let err = loop {
        if let Err(e) = a.send_within(&message, &[], Duration::from_millis(200)) {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the buffer never filled"
        );
    };
    assert!(matches!(err, ChannelError::SendBlocked(_)), "{err:?}");
    drop(b);
    let err = a.send(&message, &[]).unwrap_err();
    assert!(matches!(err, ChannelError::Closed), "{err:?}");
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    let (a, b) = Channel::pair().unwrap();
    let mut buf = Vec::new();
    a.send(b"{not json", &[]).unwrap();
    let err = recv_json::<LearnerToSupervisor>(&b, &mut buf, None).unwrap_err();
    assert!(matches!(err, ChannelError::Malformed(_)), "{err:?}");
    for bytes in [
        &[1u8, 0][..],
        &[1, 0, 0, 0, 5],
        &[9, 0, 0, 0],
        &[4, 0, 0, 0, 1, 2, 3],
    ] {
        assert!(ToWorker::decode(bytes).is_err(), "{bytes:?}");
        assert!(ToLearner::decode(bytes).is_err(), "{bytes:?}");
        assert!(ToRelay::decode(bytes).is_err(), "{bytes:?}");
        assert!(FromRelay::decode(bytes).is_err(), "{bytes:?}");
    }
    // The exchange messages round-trip; an unknown collective is refused.
    for op in [
        Collective::SumF32,
        Collective::SumF64,
        Collective::GatherF64,
        Collective::GatherU64,
    ] {
        let m = ToRelay { op, len: 9155 };
        assert_eq!(ToRelay::decode(&m.encode()).unwrap(), m);
    }
    let mut bad = ToRelay {
        op: Collective::SumF32,
        len: 1,
    }
    .encode();
    bad[4] = 7;
    assert!(ToRelay::decode(&bad).is_err());
    assert_eq!(
        FromRelay::decode(&FromRelay::Done.encode()).unwrap(),
        FromRelay::Done
    );
    assert!(a
        .send(&vec![0u8; rl_ipc::channel::MAX_MESSAGE + 1], &[])
        .is_err());
    // A descriptor that is not a socket is not taken for a channel.
    let (r, _w) = nix::unistd::pipe().unwrap();
    let raw = std::os::fd::IntoRawFd::into_raw_fd(r);
    // SAFETY: `raw` is ours; from_inherited closes it on failure.
    assert!(unsafe { Channel::from_inherited(raw) }.is_err());
}

/// A peer that exits with a message of ours still unread: the kernel
/// reports ECONNRESET on our next receive, ahead of the messages the peer
/// sent before it exited. Those last words must still arrive (the
/// learner's `Stopped`, with a `SaveBest` it never read left behind), and
/// only then the channel reads as closed.
#[test]
fn a_peers_last_messages_arrive_even_when_it_exits_with_ours_unread() {
    let (ours, theirs) = Channel::pair().unwrap();
    ours.send(b"never read", &[]).unwrap();
    theirs.send(b"last words", &[]).unwrap();
    drop(theirs);
    let mut buf = Vec::new();
    let got = ours.recv(&mut buf, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(&buf[..got.len], b"last words");
    assert!(matches!(
        ours.recv(&mut buf, Some(Duration::from_secs(5))),
        Err(ChannelError::Closed)
    ));
}
