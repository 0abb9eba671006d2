//! Guards that only a process that computes with libtorch loads it: with
//! the libtorch engine, the learner maps libtorch and no other process of
//! the run does (the supervisor, the workers, the evaluator); with the
//! host engine, no process does; and the commands do not link it.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cartpole_config, Run};

fn maps_libtorch(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|maps| maps.contains("libtorch_cpu"))
        .unwrap_or(false)
}

/// Every process of a run in mid-training, by role, and whether it maps
/// libtorch.
fn who_maps_libtorch(run: &mut Run) -> Vec<(String, bool)> {
    run.wait_for_updates(3);
    for role in ["rl-learner", "rl-worker-0", "rl-worker-1", "rl-evaluator"] {
        run.wait_for_pid(role);
    }
    let mut found: Vec<(String, bool)> = run
        .children()
        .into_iter()
        .map(|(pid, name)| (name, maps_libtorch(pid)))
        .collect();
    found.push(("train".to_string(), maps_libtorch(run.child.id())));
    found.sort();
    found
}

#[test]
fn with_the_libtorch_engine_only_the_learner_loads_libtorch() {
    let config = cartpole_config(
        100_000,
        &[
            "run.num_workers = 2",
            "run.learner = \"torch\"",
            "run.device = \"cpu\"",
        ],
    );
    let mut run = Run::start("torch-learner", &config, &[], &[]);
    let found = who_maps_libtorch(&mut run);
    run.signal("TERM", run.child.id());
    run.expect_exit(143, Duration::from_secs(60));
    run.assert_nothing_left();
    for (role, maps) in &found {
        assert_eq!(
            *maps,
            role == "rl-learner",
            "{role} maps libtorch: {maps} ({found:?})"
        );
    }
}

#[test]
fn with_the_host_engine_no_process_loads_libtorch() {
    let config = cartpole_config(100_000, &["run.num_workers = 2"]);
    let mut run = Run::start("host-learner", &config, &[], &[]);
    let found = who_maps_libtorch(&mut run);
    run.signal("TERM", run.child.id());
    run.expect_exit(143, Duration::from_secs(60));
    run.assert_nothing_left();
    assert!(found.len() >= 5, "{found:?}");
    assert!(found.iter().all(|(_, maps)| !maps), "{found:?}");
}

#[test]
fn the_commands_link_neither_libtorch_nor_libpython() {
    for binary in [
        env!("CARGO_BIN_EXE_train"),
        env!("CARGO_BIN_EXE_evaluate"),
        env!("CARGO_BIN_EXE_curves"),
    ] {
        let out = std::process::Command::new("ldd")
            .arg(binary)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ldd {binary}: {text}");
        assert!(
            !text.contains("libtorch"),
            "{binary} links libtorch:\n{text}"
        );
        // Nor libpython: only processes that step Gymnasium envs load it,
        // through the plugin librl_gym_python.so.
        assert!(
            !text.contains("libpython"),
            "{binary} links libpython:\n{text}"
        );
    }
}
