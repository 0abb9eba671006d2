//! The example is documentation that must keep working: run the real binary.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use std::process::Command;

const EXAMPLE: &str = env!("CARGO_BIN_EXE_custom-env-example");

#[test]
fn custom_env_example_registers_and_steps_its_env() {
    let output = Command::new(EXAMPLE).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("Corridor-v0:") && stdout.contains("episodes over 16 envs"),
        "{stdout}"
    );
    assert!(stdout.contains("CartPole-v1, Corridor-v0"), "{stdout}");
}

/// The user's own binary is what the run's worker, learner and evaluator
/// processes execute, so its env is known to all of them; single-process
/// training gives the same result.
#[test]
fn custom_env_trains_through_the_library_entry_point_and_learns() {
    for workers in ["2", "0"] {
        trains_and_learns(workers);
    }
}

fn trains_and_learns(workers: &str) {
    let dir = std::env::temp_dir().join(format!("corridor-train-{}-{workers}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/corridor.toml");
    let output = Command::new(EXAMPLE)
        .args([
            "--config",
            config,
            "--run-dir",
            dir.to_str().unwrap(),
            "--seed",
            "3",
            "--set",
            &format!("run.num_workers={workers}"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let eval = std::fs::read_to_string(dir.join("eval.csv")).unwrap();
    let last: Vec<f64> = eval
        .lines()
        .last()
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    // Walking straight right from at most 4 cells in: at least 6 steps of
    // -0.01 and the +1 exit; a policy that never exits gets -1.
    assert!(
        last[3] > 0.9,
        "{workers} workers: mean eval return {} after training:\n{eval}",
        last[3]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
