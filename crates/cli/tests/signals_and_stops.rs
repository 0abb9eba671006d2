//! Signals as terminals, clusters and service managers send them, on real
//! processes: a SIGTERM to the whole process group (`timeout`, `kill --
//! -PGID`, systemd, Slurm) saves like a SIGTERM to `train`; SIGHUP stops
//! too; SIGUSR1 writes a checkpoint now; a stop abandons a long update; a
//! second interrupt never claims a save that did not happen.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

mod common;

use std::time::{Duration, Instant};

use common::{cartpole_config, Run};

/// CartPole, long enough to be stopped, with `workers` worker processes.
fn config(workers: usize, settings: &[&str]) -> String {
    let workers = format!("run.num_workers = {workers}");
    let mut all = vec![
        "eval.interval_steps = 512",
        "checkpoint.interval_updates = 1000000",
        &workers,
        "run.worker_timeout_s = 20",
        "run.restart_backoff_s = 0.05",
    ];
    all.extend_from_slice(settings);
    cartpole_config(1_000_000, &all)
}

/// The file a message names after `marker` (up to a comma or the end of
/// the line).
fn path_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let start = text.find(marker)? + marker.len();
    let rest = &text[start..];
    let end = rest.find([',', '\n']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Every file a stop message says it saved is there and reads back whole.
fn assert_saved_files_exist(run: &Run) {
    let out = run.stdout();
    if let Some(policy) = path_after(&out, "weights saved in ") {
        let bytes = std::fs::read(policy).unwrap_or_else(|e| panic!("{policy}: {e}\n{out}"));
        rl_runtime::storage::policy_file::decode_policy(&bytes).unwrap();
    }
    if let Some(state) = path_after(&out, "state in ") {
        let bytes = std::fs::read(state).unwrap_or_else(|e| panic!("{state}: {e}\n{out}"));
        rl_runtime::storage::checkpoint::Checkpoint::decode(&bytes).unwrap();
    }
}

#[test]
fn a_sigterm_to_the_whole_process_group_saves_and_exits_143() {
    for workers in [2, 0] {
        let mut run = Run::start_in_own_group(
            &format!("group-term-{workers}"),
            &config(workers, &[]),
            &[],
            &[],
        );
        run.wait_for_updates(3);
        if workers > 0 {
            run.wait_for_pid("rl-learner");
        }
        let sent = Instant::now();
        run.signal_group("TERM");
        run.expect_exit(143, Duration::from_secs(60));
        // Slurm and systemd give 30 s after SIGTERM before SIGKILL.
        assert!(
            sent.elapsed() < Duration::from_secs(25),
            "the stop took {:?}\n{}",
            sent.elapsed(),
            run.output()
        );
        let out = run.stdout();
        assert!(
            out.contains("interrupted after") && out.contains("weights saved in"),
            "{workers} workers: {}",
            run.output()
        );
        assert!(
            !run.stderr().contains("died unexpectedly"),
            "{}",
            run.output()
        );
        let updates = run.train_rows().len();
        assert!(
            out.contains(&format!("({updates} updates)")),
            "the saved state is the last update in train.csv\n{}",
            run.output()
        );
        assert_saved_files_exist(&run);
        run.assert_nothing_left();
    }
}

#[test]
fn sighup_stops_and_saves_with_exit_129() {
    for workers in [2, 0] {
        let mut run =
            Run::start_in_own_group(&format!("hup-{workers}"), &config(workers, &[]), &[], &[]);
        run.wait_for_updates(3);
        run.signal_group("HUP");
        run.expect_exit(129, Duration::from_secs(60));
        assert!(
            run.stdout().contains("weights saved in"),
            "{}",
            run.output()
        );
        assert_saved_files_exist(&run);
        run.assert_nothing_left();
    }
}

#[test]
fn sigusr1_writes_a_checkpoint_now_and_training_goes_on() {
    for workers in [2, 0] {
        let mut run =
            Run::start_in_own_group(&format!("usr1-{workers}"), &config(workers, &[]), &[], &[]);
        run.wait_for_updates(3);
        // To the whole group, as Slurm's --signal=USR1 sends it: no child
        // may die of it.
        run.signal_group("USR1");
        run.wait_for_stderr("checkpoint written: ", Duration::from_secs(60));
        let err = run.stderr();
        let path = path_after(&err, "checkpoint written: ")
            .unwrap()
            .to_string();
        let bytes = std::fs::read(&path).unwrap();
        let checkpoint = rl_runtime::storage::checkpoint::Checkpoint::decode(&bytes).unwrap();
        let at = checkpoint.learner.updates_done as usize;
        run.wait_for_updates(at + 3);
        run.signal("INT", run.child.id());
        run.expect_exit(130, Duration::from_secs(60));
        assert!(
            !run.stdout().contains("restarted"),
            "a child died of SIGUSR1\n{}",
            run.output()
        );
        run.assert_nothing_left();
    }
}

#[test]
fn a_stop_abandons_a_long_update_and_the_run_resumes_from_the_state_before_it() {
    // Each update takes many seconds: a stop must not wait for one.
    let slow = config(2, &["ppo.update_epochs = 20000"]);
    let mut run = Run::start("abandon", &slow, &[], &[]);
    run.wait_for_updates(1);
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    run.signal("INT", run.child.id());
    run.expect_exit(130, Duration::from_secs(60));
    assert!(
        sent.elapsed() < Duration::from_secs(8),
        "the stop waited {:?} for the update\n{}",
        sent.elapsed(),
        run.output()
    );
    let updates = run.train_rows().len();
    assert!(
        run.stdout().contains(&format!("({updates} updates)")),
        "{}",
        run.output()
    );
    assert_saved_files_exist(&run);
    run.assert_nothing_left();
}

#[test]
fn a_second_interrupt_never_claims_a_save_that_did_not_happen() {
    // The learner cannot save (it is stopped): the second interrupt ends
    // everything, and the message says nothing was saved.
    let mut run = Run::start("double-int-honest", &config(2, &[]), &[], &[]);
    run.wait_for_updates(3);
    let learner = run.wait_for_pid("rl-learner");
    run.signal("STOP", learner);
    run.signal("INT", run.child.id());
    std::thread::sleep(Duration::from_millis(100));
    run.signal("INT", run.child.id());
    run.expect_exit(130, Duration::from_secs(30));
    let out = run.stdout();
    assert!(
        !out.contains("saved in") && out.contains("nothing was saved"),
        "{}",
        run.output()
    );
    assert!(!run.run_dir.join("policy.safetensors").exists());
    run.assert_nothing_left();

    // In one process, with long updates: whatever the timing, what the
    // message says was saved is there.
    let slow = config(0, &["ppo.update_epochs = 5000"]);
    for pause in [0, 100] {
        let mut run = Run::start("double-int-single", &slow, &[], &[]);
        run.wait_for_updates(1);
        run.signal("INT", run.child.id());
        std::thread::sleep(Duration::from_millis(pause));
        let _ = std::process::Command::new("kill")
            .args(["-INT", &run.child.id().to_string()])
            .status();
        run.expect_exit(130, Duration::from_secs(30));
        let (out, err) = (run.stdout(), run.stderr());
        if err.contains("second interrupt") {
            assert!(!out.contains("saved in"), "{}", run.output());
        } else {
            assert!(out.contains("weights saved in"), "{}", run.output());
        }
        assert_saved_files_exist(&run);
        run.assert_nothing_left();
    }
}
