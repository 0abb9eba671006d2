//! The benchmark binary prints parseable JSON lines and rejects bad usage.

use std::process::Command;

#[test]
fn env_benchmark_prints_one_json_line_per_measurement() {
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "envs",
            "--seconds",
            "0.01",
            "--env",
            "Pendulum-v1",
            "--num-envs",
            "4",
        ])
        .output()
        .expect("bench starts");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
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
