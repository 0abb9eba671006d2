//! The benchmark binary prints parseable JSON lines and rejects bad usage.

use std::process::Command;

/// Runs `bench ARGS`, expects success, and parses every stdout line as JSON.
fn json_lines(args: &[&str]) -> Vec<serde_json::Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .output()
        .expect("bench starts");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn env_benchmark_prints_one_json_line_per_measurement() {
    let lines = json_lines(&[
        "envs",
        "--seconds",
        "0.01",
        "--env",
        "Pendulum-v1",
        "--num-envs",
        "4",
    ]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["mode"], "single");
    assert_eq!(lines[1]["mode"], "vector");
    assert_eq!(lines[1]["num_envs"], 4);
    for line in &lines {
        assert_eq!(line["env"], "Pendulum-v1");
        assert!(
            line["steps_per_s"].as_f64().is_some_and(|r| r > 0.0),
            "{line}"
        );
    }
}

#[test]
fn env_benchmark_rejects_unknown_envs_and_options_with_exit_2() {
    for args in [
        vec!["envs", "--env", "Nope-v0"],
        vec!["envs", "--seconds", "-1"],
        vec!["envs", "--frobnicate"],
        vec!["nothing"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_bench"))
            .args(&args)
            .output()
            .expect("bench starts");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("bench: "), "{args:?}: {stderr}");
    }
}

#[test]
fn rollout_benchmark_runs_real_worker_processes_and_prints_json_lines() {
    let lines = json_lines(&[
        "rollout",
        "--seconds",
        "0.2",
        "--workers",
        "2",
        "--envs-per-worker",
        "3",
        "--num-steps",
        "16",
    ]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["mode"], "in_process");
    assert_eq!(lines[1]["mode"], "processes");
    assert_eq!(lines[1]["workers"], 2);
    assert_eq!(lines[1]["envs_per_worker"], 3);
    // Whole rounds only: 2 workers x 3 envs x 16 steps each.
    let steps = lines[1]["env_steps"].as_u64().unwrap();
    assert!(steps > 0 && steps % 96 == 0, "{}", lines[1]);
}
