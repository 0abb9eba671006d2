//! Every wait on another process has a deadline and a message, on real
//! processes: a stopped evaluator cannot hold the end of a run, a stopped
//! learner is reported and the run stopped, a worker that fails the same
//! way each time does not burn through restarts, and a run suspended as a
//! whole (Ctrl-Z, `kill -STOP` of the job) blames nobody when it continues.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

mod common;

use std::time::{Duration, Instant};

use common::{cartpole_config, Run};

/// CartPole, 4 envs over 2 workers, 128 env steps per update.
fn config(updates: u64, settings: &[&str]) -> String {
    let mut all = vec!["run.num_workers = 2", "run.restart_backoff_s = 0.05"];
    all.extend_from_slice(settings);
    cartpole_config(updates, &all)
}

#[test]
fn a_stopped_evaluator_cannot_hold_the_end_of_the_run() {
    // Only the final evaluation is asked for; the evaluator is stopped
    // before it.
    let cfg = config(
        20,
        &[
            "eval.interval_steps = 1000000000",
            "eval.timeout_s = 3",
            "run.worker_timeout_s = 20",
        ],
    );
    let mut run = Run::start("stopped-evaluator", &cfg, &[], &[]);
    let evaluator = run.wait_for_pid("rl-evaluator");
    run.signal("STOP", evaluator);
    run.expect_exit(0, Duration::from_secs(120));
    assert!(
        run.stderr()
            .contains("the final evaluation did not finish within 3 s"),
        "{}",
        run.output()
    );
    assert!(run.stdout().contains("done:"), "{}", run.output());
    assert_eq!(run.train_rows().len(), 20);
    run.assert_nothing_left();
}

#[test]
fn a_stopped_learner_is_reported_and_the_run_ends_with_the_reason() {
    let cfg = config(
        100_000,
        &[
            "eval.interval_steps = 1024",
            "run.worker_timeout_s = 20",
            "run.learner_timeout_s = 3",
        ],
    );
    let mut run = Run::start("stopped-learner", &cfg, &[], &[]);
    run.wait_for_updates(3);
    let learner = run.wait_for_pid("rl-learner");
    run.signal("STOP", learner);
    run.expect_exit(1, Duration::from_secs(120));
    let err = run.stderr();
    assert!(
        err.contains("the learner made no progress for 3 s") && err.contains("stopped (SIGSTOP"),
        "{}",
        run.output()
    );
    // It could not save: the message says so, and where the run can
    // continue from.
    assert!(
        err.contains("nothing was saved at the stop"),
        "{}",
        run.output()
    );
    run.assert_nothing_left();
}

#[test]
fn a_run_suspended_as_a_whole_continues_without_blaming_anyone() {
    // Deadlines far shorter than the suspension: only time the processes
    // could run may count.
    let cfg = config(
        60,
        &[
            "eval.interval_steps = 1024",
            "run.worker_timeout_s = 1",
            "run.learner_timeout_s = 2",
        ],
    );
    let mut run = Run::start_in_own_group("suspended", &cfg, &[], &[]);
    run.wait_for_updates(5);
    run.signal_group("STOP");
    let stopped = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    run.signal_group("CONT");
    run.expect_exit(0, Duration::from_secs(120));
    assert!(stopped.elapsed() > Duration::from_secs(5));
    assert!(
        !run.stdout().contains("restarted") && !run.stderr().contains("replacing"),
        "{}",
        run.output()
    );
    assert_eq!(run.train_rows().len(), 60);
    run.assert_nothing_left();
}

#[test]
fn a_worker_that_fails_the_same_way_twice_stops_the_run_instead_of_a_crash_loop() {
    let cfg = config(
        1000,
        &[
            "eval.interval_steps = 1024",
            "run.worker_timeout_s = 20",
            "run.max_restarts = 100",
        ],
    );
    let mut run = Run::start(
        "same-failure",
        &cfg,
        &[],
        &[("FERRORL_FAULT", "worker=1 generation=* round=1 kind=fail")],
    );
    run.expect_exit(1, Duration::from_secs(120));
    let err = run.stderr();
    assert!(
        err.contains("worker 1 failed the same way twice in a row")
            && err.contains("an injected failure"),
        "{}",
        run.output()
    );
    assert!(err.contains("saved in"), "{}", run.output());
    run.assert_nothing_left();
}
