//! The multi-process runtime, run for real: a supervisor (`train`), a
//! learner, workers and an evaluator as separate processes, with real
//! sockets and shared memory. Faults are real too: signals sent to the real
//! processes, or a worker told (through `FERRORL_FAULT`) to break the
//! protocol at a chosen round. Every test ends by checking that nothing of
//! the run is left: no process, no zombie, no shared-memory segment, no
//! temporary file.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{column, deterministic_columns, process_state, Run};

/// CartPole, 4 envs over 2 workers, 128 env steps per update; a worker
/// deadline long enough that a loaded CI machine never trips it by itself.
fn config(total_timesteps: u64, extra: &str) -> String {
    let timeout = if extra.contains("worker_timeout_s") {
        ""
    } else {
        "worker_timeout_s = 10\n"
    };
    format!(
        r#"[env]
id = "CartPole-v1"
num_envs = 4

[ppo]
num_steps = 32
num_minibatches = 2
update_epochs = 2

[eval]
interval_steps = 512
episodes = 2

[run]
total_timesteps = {total_timesteps}
num_workers = 2
restart_backoff_s = 0.05
{timeout}{extra}
"#
    )
}

#[test]
fn learner_workers_and_evaluator_run_as_separate_named_processes() {
    let mut run = Run::start("ps", &config(100_000_000, ""), &[], &[]);
    run.wait_for_updates(3);
    // A child names itself first thing after it starts; on a loaded machine
    // the evaluator may still be loading when training is under way.
    let expected = ["rl-evaluator", "rl-learner", "rl-worker-0", "rl-worker-1"];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut names: Vec<String> = run.children().into_iter().map(|(_, n)| n).collect();
        names.sort();
        if names == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes {names:?}\n{}",
            run.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run.signal("INT", run.child.id());
    run.expect_exit(130, Duration::from_secs(60));
    run.assert_nothing_left();
}

/// The proof that no step is lost, duplicated or reordered: the same seed
/// gives bit-identical weights (and training curves) whether the envs are
/// stepped in this process or split over worker processes.
#[test]
fn multi_process_training_is_bit_identical_to_single_process_training() {
    let cases = [
        ("CartPole-v1", 4, vec![1, 2, 4], ""),
        (
            "Pendulum-v1",
            6,
            vec![3],
            "normalize_obs = true\nnormalize_reward = true\n",
        ),
    ];
    for (env, num_envs, worker_counts, env_extra) in cases {
        let text = format!(
            r#"[env]
id = "{env}"
num_envs = {num_envs}
{env_extra}
[ppo]
num_steps = 50
num_minibatches = 2
update_epochs = 3

[eval]
interval_steps = 1000000
episodes = 1

[run]
total_timesteps = {}
"#,
            num_envs * 50 * 12
        );
        let mut single = Run::start("same-0", &text, &["--set", "run.num_workers=0"], &[]);
        single.expect_exit(0, Duration::from_secs(120));
        let expected_policy = std::fs::read(single.run_dir.join("policy.safetensors")).unwrap();
        let expected_rows = deterministic_columns(&single.train_rows());
        assert_eq!(expected_rows.len(), 12);
        for workers in worker_counts {
            let mut multi = Run::start(
                "same-n",
                &text,
                &["--set", &format!("run.num_workers={workers}")],
                &[],
            );
            multi.expect_exit(0, Duration::from_secs(120));
            let policy = std::fs::read(multi.run_dir.join("policy.safetensors")).unwrap();
            assert!(
                policy == expected_policy,
                "{env} with {workers} workers: the weights differ from the single-process run"
            );
            assert_eq!(
                deterministic_columns(&multi.train_rows()),
                expected_rows,
                "{env} with {workers} workers: train.csv differs"
            );
            multi.assert_nothing_left();
        }
    }
}

#[test]
fn a_killed_worker_is_replaced_its_round_redone_and_training_finishes() {
    let mut run = Run::start("kill-worker", &config(128 * 40, ""), &[], &[]);
    run.wait_for_updates(3);
    let victim = run.wait_for_pid("rl-worker-1");
    run.signal("KILL", victim);
    run.expect_exit(0, Duration::from_secs(120));
    let rows = run.train_rows();
    // Every update trained on one full round; nothing partial was counted.
    assert_eq!(rows.len(), 40, "{}", run.output());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[1], (128 * (i + 1)).to_string());
    }
    assert!(
        run.stdout().contains("1 process restarted"),
        "{}",
        run.output()
    );
    assert!(run.stderr().contains("worker 1"), "{}", run.output());
    run.assert_nothing_left();
}

#[test]
fn a_worker_that_dies_mid_round_has_its_partial_round_dropped() {
    // Worker 1's first process collects round 2, then SIGKILLs itself
    // before sending it.
    let mut run = Run::start(
        "die-mid-round",
        &config(128 * 10, ""),
        &[],
        &[("FERRORL_FAULT", "worker=1 generation=0 round=2 kind=die")],
    );
    run.expect_exit(0, Duration::from_secs(120));
    let rows = run.train_rows();
    assert_eq!(column(&rows, 1).last().map(String::as_str), Some("1280"));
    assert_eq!(rows.len(), 10);
    assert!(
        run.stdout().contains("1 process restarted"),
        "{}",
        run.output()
    );
    run.assert_nothing_left();
}

#[test]
fn children_that_die_before_connecting_do_not_hang_the_supervisor() {
    // A worker that exits before its hello is replaced.
    let mut run = Run::start(
        "exit-at-start",
        &config(128 * 6, ""),
        &[],
        &[("FERRORL_FAULT", "worker=1 generation=0 kind=exit_at_start")],
    );
    run.expect_exit(0, Duration::from_secs(120));
    assert!(
        run.stdout().contains("1 process restarted"),
        "{}",
        run.output()
    );
    assert_eq!(run.train_rows().len(), 6);
    run.assert_nothing_left();
    // A learner that cannot start (no CUDA here) ends the run with its reason.
    if Path::new("/dev/nvidia0").exists() {
        return;
    }
    let mut run = Run::start(
        "learner-fails",
        &config(128 * 6, ""),
        &["--set", "run.device=cuda"],
        &[],
    );
    run.expect_exit(1, Duration::from_secs(60));
    assert!(
        run.stderr().contains("the learner failed") && run.stderr().contains("CUDA"),
        "{}",
        run.output()
    );
    run.assert_nothing_left();
}

#[test]
fn a_hung_worker_is_killed_at_its_deadline_and_replaced() {
    let mut run = Run::start(
        "sigstop",
        &config(128 * 30, "worker_timeout_s = 1.5"),
        &[],
        &[],
    );
    run.wait_for_updates(3);
    let victim = run.wait_for_pid("rl-worker-0");
    run.signal("STOP", victim);
    run.expect_exit(0, Duration::from_secs(120));
    assert!(
        run.stderr().contains("delivered no rollout within 1.5 s"),
        "{}",
        run.output()
    );
    assert_eq!(run.train_rows().len(), 30);
    run.assert_nothing_left();
}

#[test]
fn malformed_worker_messages_are_rejected_counted_and_the_worker_replaced() {
    let cases = [
        ("nan", "rewards[0] is NaN"),
        ("wrong_size", "this run uses 32 x 2"),
        ("unknown_worker", "from worker 1000"),
        ("stale_version", "the round is for version 3"),
    ];
    for (kind, reason) in cases {
        let fault = format!("worker=0 generation=0 round=3 kind={kind}");
        let mut run = Run::start(
            &format!("reject-{kind}"),
            &config(128 * 8, ""),
            &[],
            &[("FERRORL_FAULT", &fault)],
        );
        run.expect_exit(0, Duration::from_secs(120));
        let stderr = run.stderr();
        assert!(
            stderr.contains("rejected its message") && stderr.contains(reason),
            "{kind}: {}",
            run.output()
        );
        assert!(
            run.stdout().contains("1 worker message rejected"),
            "{kind}: {}",
            run.output()
        );
        assert_eq!(run.train_rows().len(), 8, "{kind}");
        run.assert_nothing_left();
    }
}

#[test]
fn restarts_past_the_bound_save_the_weights_and_exit_1() {
    let mut run = Run::start(
        "restart-bound",
        &config(128 * 1000, "max_restarts = 2"),
        &[],
        &[("FERRORL_FAULT", "worker=1 generation=* round=1 kind=die")],
    );
    run.expect_exit(1, Duration::from_secs(120));
    let stderr = run.stderr();
    assert!(stderr.contains("max_restarts = 2"), "{}", run.output());
    assert!(stderr.contains("saved in"), "{}", run.output());
    let bytes = std::fs::read(run.run_dir.join("policy.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header["__metadata__"]["env_id"], "CartPole-v1");
    run.assert_nothing_left();
}

#[test]
fn a_killed_evaluator_is_restarted_and_its_missing_evaluation_is_not_faked() {
    let mut run = Run::start("kill-evaluator", &config(128 * 60, ""), &[], &[]);
    run.wait_for_updates(5);
    let first = run.wait_for_pid("rl-evaluator");
    run.signal("KILL", first);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if run.pid_of("rl-evaluator").is_some_and(|p| p != first) {
            break;
        }
        if run.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new evaluator\n{}",
            run.output()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    run.expect_exit(0, Duration::from_secs(120));
    let evals = run.eval_rows();
    assert!(!evals.is_empty());
    let versions: Vec<u64> = column(&evals, 2)
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "evaluations repeat or go back: {versions:?}"
    );
    assert_eq!(versions.last(), Some(&60), "the final version is evaluated");
    for row in &evals {
        assert_eq!(row[7], "2", "every row holds a real evaluation: {row:?}");
        let mean: f64 = row[3].parse().unwrap();
        assert!(mean >= 8.0, "CartPole returns are at least 8: {row:?}");
    }
    assert!(
        run.stdout().contains("1 process restarted"),
        "{}",
        run.output()
    );
    run.assert_nothing_left();
}

#[test]
fn when_the_learner_dies_every_process_stops_and_train_exits_1() {
    let mut run = Run::start("kill-learner", &config(100_000_000, ""), &[], &[]);
    run.wait_for_updates(3);
    let learner = run.wait_for_pid("rl-learner");
    run.signal("KILL", learner);
    run.expect_exit(1, Duration::from_secs(30));
    assert!(
        run.stderr()
            .contains("the learner process died unexpectedly"),
        "{}",
        run.output()
    );
    run.assert_nothing_left();
}

#[test]
fn sigint_and_sigterm_stop_in_order_save_and_exit_130_and_143() {
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let mut run = Run::start(
            &format!("stop-{signal}"),
            &config(100_000_000, ""),
            &[],
            &[],
        );
        run.wait_for_updates(3);
        run.signal(signal, run.child.id());
        run.expect_exit(code, Duration::from_secs(60));
        assert!(
            run.stdout().contains("interrupted after"),
            "{}",
            run.output()
        );
        let updates = run.train_rows().len();
        assert!(
            run.stdout().contains(&format!("({updates} updates)")),
            "the saved weights are those of the last update in train.csv\n{}",
            run.output()
        );
        assert!(run.run_dir.join("policy.safetensors").exists());
        run.assert_nothing_left();
    }
}

#[test]
fn a_second_interrupt_stops_every_process_at_once() {
    // Long updates: the first Ctrl-C waits for one, the second does not.
    let slow = config(100_000_000, "").replace("update_epochs = 2", "update_epochs = 3000");
    let mut run = Run::start("double-int", &slow, &[], &[]);
    run.wait_for_updates(1);
    run.signal("INT", run.child.id());
    std::thread::sleep(Duration::from_millis(200));
    let second = Instant::now();
    run.signal("INT", run.child.id());
    run.expect_exit(130, Duration::from_secs(30));
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "took {:?} after the second interrupt",
        second.elapsed()
    );
    run.assert_nothing_left();
}

#[test]
fn sigkill_of_train_takes_every_child_down_within_2_s() {
    // Orphans are re-parented to the nearest subreaper: make that this test
    // process, so that it can check they are reaped and not left as zombies.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let mut run = Run::start("sigkill-train", &config(100_000_000, ""), &[], &[]);
    run.wait_for_updates(3);
    let children: Vec<u32> = run.children().into_iter().map(|(pid, _)| pid).collect();
    assert_eq!(children.len(), 4, "{}", run.output());
    // A stopped worker reads no channel: only the parent-death signal can
    // take it down.
    let stopped = run.wait_for_pid("rl-worker-1");
    run.signal("STOP", stopped);
    run.signal("KILL", run.child.id());
    let killed = Instant::now();
    let _ = run.child.wait();
    let mut gone = BTreeSet::new();
    while gone.len() < children.len() {
        for pid in &children {
            let state = process_state(*pid);
            if state.is_none() || state == Some('Z') {
                gone.insert(*pid);
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "children still running 2 s after SIGKILL of train: {:?}",
            children
                .iter()
                .filter(|p| !gone.contains(p))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for pid in &children {
        let pid = nix::unistd::Pid::from_raw(*pid as i32);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    run.assert_nothing_left();
}
