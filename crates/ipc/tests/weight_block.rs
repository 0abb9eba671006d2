//! The shared-memory weight block: round trips, refusals, no torn reads
//! under a racing writer, and a real second process reading it.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

use rl_ipc::WeightBlock;

#[test]
fn published_weights_read_back_with_their_version() {
    // An odd length exercises the last, half-used word.
    let mut block = WeightBlock::create(1001).unwrap();
    let mut out = vec![0.0_f32; 1001];
    assert_eq!(block.read_into(&mut out).unwrap(), None);
    assert_eq!(block.latest_version(), None);
    for version in 0..=5_u64 {
        let weights: Vec<f32> = (0..1001).map(|i| i as f32 * version as f32 - 0.5).collect();
        block.publish(&weights, version).unwrap();
        assert_eq!(block.read_into(&mut out).unwrap(), Some(version));
        assert_eq!(out, weights);
    }
    assert_eq!(block.latest_version(), Some(5));
}

#[test]
fn statistics_travel_with_their_weights() {
    let mut block = WeightBlock::create_with_stats(5, 3).unwrap();
    let (mut w, mut s) = (vec![0.0_f32; 5], vec![0.0_f64; 3]);
    for version in [0_u64, 1, 7] {
        let weights: Vec<f32> = (0..5).map(|i| i as f32 + version as f32).collect();
        // Values whose f32 rounding would show: the statistics stay f64.
        let stats = [1.0 / 3.0 + version as f64, -1e-300, f64::MAX];
        block.publish_with_stats(&weights, &stats, version).unwrap();
        assert_eq!(
            block.read_with_stats_into(&mut w, &mut s).unwrap(),
            Some(version)
        );
        assert_eq!((&w[..], &s[..]), (&weights[..], &stats[..]));
    }
    assert!(block.publish_with_stats(&[0.0; 5], &[0.0; 2], 8).is_err());
    assert!(block.read_with_stats_into(&mut w, &mut [0.0; 4]).is_err());
    let reopened = WeightBlock::open(block.share().unwrap()).unwrap();
    assert_eq!((reopened.len(), reopened.stats_len()), (5, 3));
}

#[test]
fn wrong_lengths_and_stale_versions_are_refused() {
    let mut block = WeightBlock::create(8).unwrap();
    assert!(block.publish(&[0.0; 7], 1).is_err());
    block.publish(&[1.0; 8], 3).unwrap();
    let err = block.publish(&[1.0; 8], 3).unwrap_err().to_string();
    assert!(err.contains("version 3"), "{err}");
    assert!(block.publish(&[1.0; 8], 2).is_err());
    assert!(block.read_into(&mut [0.0; 9]).is_err());
    assert!(WeightBlock::create(0).is_err());
}

const READER_FD: &str = "RL_IPC_TEST_READER_FD";
const LEN: usize = 50_000;

/// Readers are other processes, as in a run: two children read the block as
/// fast as they can while this process publishes 3000 versions, each a
/// different constant; every set a reader gets must be all one value, the
/// version's, and versions must never go back.
#[test]
fn readers_never_see_a_half_written_set_while_the_writer_races() {
    let mut writer = WeightBlock::create(LEN).unwrap();
    writer.publish(&vec![0.0; LEN], 0).unwrap();
    let fd = writer.share().unwrap();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_reads_while_the_parent_writes",
                    "--ignored",
                    "--nocapture",
                ])
                .env(READER_FD, fd.as_raw_fd().to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    drop(fd);
    // Let both readers start before the writes begin.
    std::thread::sleep(std::time::Duration::from_millis(300));
    for version in 1..=3000_u64 {
        writer.publish(&vec![version as f32; LEN], version).unwrap();
    }
    writer
        .publish(&vec![f32::MAX; LEN], u64::from(u32::MAX))
        .unwrap();
    for reader in readers {
        let output = reader.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        let reads: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("reads="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(reads > 10, "{stdout}");
    }
}

/// Run by `readers_never_see_a_half_written_set_while_the_writer_races`.
#[test]
#[ignore = "runs as the child of another test"]
fn child_reads_while_the_parent_writes() {
    let fd: i32 = std::env::var(READER_FD).unwrap().parse().unwrap();
    // SAFETY: the parent passed this inherited descriptor for us to own.
    let block = WeightBlock::open(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    let mut out = vec![0.0_f32; LEN];
    let (mut reads, mut last) = (0u64, 0u64);
    loop {
        let version = block.read_into(&mut out).unwrap().unwrap();
        assert!(version >= last, "versions went back: {last} -> {version}");
        if version == u64::from(u32::MAX) {
            break;
        }
        let expected = version as f32;
        assert!(
            out.iter().all(|v| *v == expected),
            "torn read at version {version}"
        );
        last = version;
        reads += 1;
    }
    println!("reads={reads}");
}

const CHILD_FD: &str = "RL_IPC_TEST_BLOCK_FD";

#[test]
fn a_child_process_reads_what_the_parent_published() {
    let mut block = WeightBlock::create(1024).unwrap();
    let weights: Vec<f32> = (0..1024).map(|i| (i as f32).sin()).collect();
    block.publish(&weights, 7).unwrap();
    // A duplicate without close-on-exec is inherited by the child.
    let fd = block.share().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_reads_the_block",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_FD, fd.as_raw_fd().to_string())
        .output()
        .unwrap();
    drop(fd);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sum: f64 = weights.iter().map(|w| *w as f64).sum();
    assert!(
        stdout.contains(&format!("version=7 sum={sum:.6}")),
        "{stdout}"
    );
}

/// Run by `a_child_process_reads_what_the_parent_published` in a child.
#[test]
#[ignore = "runs as the child of another test"]
fn child_reads_the_block() {
    let fd: i32 = std::env::var(CHILD_FD).unwrap().parse().unwrap();
    // SAFETY: the parent passed this inherited descriptor for us to own.
    let block = WeightBlock::open(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    let mut out = vec![0.0_f32; block.len()];
    let version = block.read_into(&mut out).unwrap().unwrap();
    let sum: f64 = out.iter().map(|w| *w as f64).sum();
    println!("version={version} sum={sum:.6}");
}
