//! Gymnasium envs (`gymnasium:<id>`) through the bridge, in real worker
//! processes with their own interpreters: bit-identical training on 0, 1
//! and 2 workers, config errors found before anything starts, Python
//! exceptions shown with their traceback without a crash loop, bad
//! observations rejected, and resume with new episodes. Needs the
//! project's Python (scripts/setup) with Gymnasium.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{deterministic_columns, run_to_end, shown, Run, Scratch, TRAIN};

/// The folder of the misbehaving test envs (ferrorl_test_envs.py).
fn test_envs() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .display()
        .to_string()
}

fn config(id: &str, num_envs: usize, updates: u64, extra: &str) -> String {
    format!(
        r#"[env]
id = "{id}"
num_envs = {num_envs}
{extra}
[ppo]
num_steps = 32
num_minibatches = 2
update_epochs = 2

[eval]
interval_steps = 1000000
episodes = 2

[run]
total_timesteps = {}
restart_backoff_s = 0.05
worker_timeout_s = 30
"#,
        num_envs as u64 * 32 * updates
    )
}

/// Gymnasium's CartPole is deterministic given its seeds, so the bridge
/// must keep the runtime's guarantee: the same weights and curves whether
/// the envs step in this process or in 1 or 2 worker processes (each
/// with its own interpreter). The kwargs reach every process: a 15-step
/// time limit truncates most episodes, which CartPole's own 500 would not; the
/// worker runs get it from `--set env.kwargs.max_episode_steps=15`, the
/// same as the table.
#[test]
fn gymnasium_cartpole_trains_bit_identically_on_0_1_and_2_workers() {
    let text = config(
        "gymnasium:CartPole-v1",
        4,
        10,
        "[env.kwargs]\nmax_episode_steps = 15\n",
    );
    let mut single = Run::start("gym-0", &text, &["--set", "run.num_workers=0"], &[]);
    single.expect_exit(0, Duration::from_secs(180));
    let expected_policy = std::fs::read(single.run_dir.join("policy.safetensors")).unwrap();
    let expected_rows = deterministic_columns(&single.train_rows());
    assert_eq!(expected_rows.len(), 10, "{}", single.output());
    // CartPole pays 1 a step: no episode returns more than the limit.
    let text_csv = std::fs::read_to_string(single.run_dir.join("train.csv")).unwrap();
    let header: Vec<&str> = text_csv.lines().next().unwrap().split(',').collect();
    let column = header
        .iter()
        .position(|c| *c == "episode_return_mean")
        .unwrap();
    let returns: Vec<f64> = text_csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(column).and_then(|v| v.parse().ok()))
        .collect();
    assert!(
        !returns.is_empty() && returns.iter().all(|r| *r <= 15.0),
        "{returns:?}"
    );
    let without_kwargs = config("gymnasium:CartPole-v1", 4, 10, "");
    for workers in [1, 2] {
        let mut multi = Run::start(
            "gym-n",
            &without_kwargs,
            &[
                "--set",
                &format!("run.num_workers={workers}"),
                "--set",
                "env.kwargs.max_episode_steps=15",
            ],
            &[],
        );
        multi.expect_exit(0, Duration::from_secs(180));
        let policy = std::fs::read(multi.run_dir.join("policy.safetensors")).unwrap();
        assert!(
            policy == expected_policy,
            "{workers} workers: the weights differ from the single-process run\n{}",
            multi.output()
        );
        assert_eq!(
            deterministic_columns(&multi.train_rows()),
            expected_rows,
            "{workers} workers: train.csv differs"
        );
        multi.assert_nothing_left();
    }
}

/// A config naming an env that cannot be made is refused before any
/// process starts or any file is written: exit 2, a message naming the id
/// and Python's own error.
#[test]
fn envs_that_cannot_be_made_are_config_errors_naming_the_id_and_the_python_error() {
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "gymnasium:NoSuchEnv-v9",
            "",
            &["NoSuchEnv", "doesn't exist"],
        ),
        (
            "gymnasium:no_such_module:Env-v0",
            "",
            &["no_such_module", "No module named 'no_such_module'"],
        ),
        (
            "gymnasium:Blackjack-v1",
            "",
            &[
                "Blackjack-v1",
                "Tuple",
                "is not supported",
                "supported: Box",
            ],
        ),
        (
            "gymnasium:ferrorl_test_envs:DictObs-v0",
            "",
            &["DictObs-v0", "Dict", "is not supported"],
        ),
        (
            "gymnasium:CartPole-v1",
            "[env.kwargs]\nno_such_argument = 3\n",
            &["CartPole-v1", "no_such_argument", "TypeError"],
        ),
        (
            "CartPole-v1",
            "[env.kwargs]\nlength = 3\n",
            &["CartPole-v1", "takes no keyword arguments", "length"],
        ),
    ];
    for (id, extra, wanted) in cases {
        let scratch = Scratch::new("gym-bad");
        let cfg = scratch.0.join("cfg.toml");
        std::fs::write(&cfg, config(id, 2, 2, extra)).unwrap();
        let run_dir = scratch.0.join("run");
        let out = std::process::Command::new(TRAIN)
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "--run-dir",
                run_dir.to_str().unwrap(),
            ])
            .env("PYTHONPATH", test_envs())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{id}: {}", shown(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cfg.toml:2: [env] id"), "{id}: {stderr}");
        for w in wanted {
            assert!(stderr.contains(w), "{id}: no {w:?} in\n{stderr}");
        }
        assert!(!run_dir.exists(), "{id}: a run directory was made");
    }
}

/// An exception in `step` during training names the env and shows the
/// Python traceback; the env fails the same way in the replacement worker,
/// so the run stops with exit 1 instead of replacing workers for ever.
/// Nothing of the run is left behind.
#[test]
fn a_python_exception_shows_its_traceback_and_stops_the_run_without_a_crash_loop() {
    let id = "gymnasium:ferrorl_test_envs:Flaky-v0";
    for workers in [0, 2] {
        let text = config(id, 2, 20, "");
        let mut run = Run::start(
            "gym-flaky",
            &text,
            &["--set", &format!("run.num_workers={workers}")],
            &[("PYTHONPATH", &test_envs())],
        );
        run.expect_exit(1, Duration::from_secs(120));
        let stderr = run.stderr();
        for w in [
            id,
            "step() raised an exception",
            "Traceback (most recent call last)",
            "ferrorl_test_envs.py",
            "ValueError: the flaky env broke at step 40",
        ] {
            assert!(
                stderr.contains(w),
                "{workers} workers: no {w:?} in\n{stderr}"
            );
        }
        if workers > 0 {
            let replaced = stderr.matches("replacing").count() + stderr.matches("restart").count();
            assert!(
                replaced <= 4,
                "{workers} workers: {replaced} restarts\n{stderr}"
            );
        }
        run.assert_nothing_left();
    }
}

/// NaN observations and observations of the wrong size are refused with a
/// message naming the env.
#[test]
fn nan_and_misshapen_observations_are_rejected_naming_the_env() {
    for (name, wanted) in [
        (
            "NanObs-v0",
            "returned an observation with the value NaN at index 1",
        ),
        (
            "WrongShape-v0",
            "returned an observation with 4 value(s), but the observation space has 3",
        ),
    ] {
        let id = format!("gymnasium:ferrorl_test_envs:{name}");
        let text = config(&id, 2, 5, "");
        let out = {
            let mut run = Run::start(
                "gym-obs",
                &text,
                &["--set", "run.num_workers=0"],
                &[("PYTHONPATH", &test_envs())],
            );
            run.expect_exit(1, Duration::from_secs(60));
            run.stderr()
        };
        assert!(out.contains(&id) && out.contains(wanted), "{name}:\n{out}");
    }
}

/// A Python env cannot be snapshotted: resume restores the learner (the
/// run continues from the checkpoint's update) and says that the envs
/// start new episodes.
#[test]
fn resuming_a_gymnasium_run_continues_the_learner_with_new_episodes() {
    let text = config("gymnasium:CartPole-v1", 4, 6, "");
    let mut run = Run::start("gym-resume", &text, &["--set", "run.num_workers=2"], &[]);
    run.expect_exit(0, Duration::from_secs(120));
    let run_dir = run.run_dir.to_str().unwrap().to_string();
    let out = run_to_end(
        TRAIN,
        &["--resume", &run_dir, "--set", "run.total_timesteps=1280"],
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("resuming from"), "{}", shown(&out));
    assert!(
        stdout.contains("gymnasium:CartPole-v1 cannot be snapshotted")
            && stdout.contains("new episodes"),
        "{}",
        shown(&out)
    );
    assert_eq!(run.train_rows().len(), 10, "6 updates, then 4 more");
    run.assert_nothing_left();
}

/// `evaluate --video` records every step of the episodes as an animated
/// GIF, from a Gymnasium env (render_mode="rgb_array") and from a built-in
/// env (drawn as Gymnasium draws it); any other file type is bad usage.
#[test]
fn evaluate_records_videos_of_gymnasium_and_built_in_envs() {
    let text = config("gymnasium:CartPole-v1", 2, 2, "");
    let mut run = Run::start("gym-video", &text, &["--set", "run.num_workers=0"], &[]);
    run.expect_exit(0, Duration::from_secs(120));
    let policy = run.run_dir.join("policy.safetensors");
    let evaluate = env!("CARGO_BIN_EXE_evaluate");
    for env in [None, Some("CartPole-v1")] {
        let gif = run.scratch.0.join("episode.gif");
        let mut args = vec![
            policy.to_str().unwrap(),
            "--episodes",
            "1",
            "--max-episode-steps",
            "40",
            "--video",
            gif.to_str().unwrap(),
        ];
        if let Some(id) = env {
            args.extend(["--env", id]);
        }
        let out = run_to_end(evaluate, &args, Duration::from_secs(120));
        assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let steps: usize = stdout
            .split("episode 0: return ")
            .nth(1)
            .and_then(|rest| rest.split(" (").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no episode line in\n{stdout}"));
        assert!(
            stdout.contains(&format!("({} frames)", steps + 1)),
            "{env:?}: one frame after the reset and one a step\n{stdout}"
        );
        let bytes = std::fs::read(&gif).unwrap();
        assert_eq!(&bytes[..6], b"GIF89a");
        // The logical screen is Gymnasium's CartPole frame, 600x400.
        assert_eq!(
            (
                u16::from_le_bytes([bytes[6], bytes[7]]),
                u16::from_le_bytes([bytes[8], bytes[9]])
            ),
            (600, 400)
        );
        std::fs::remove_file(&gif).unwrap();
    }
    let out = run_to_end(
        evaluate,
        &[policy.to_str().unwrap(), "--video", "out.mp4"],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only GIF"));
}
