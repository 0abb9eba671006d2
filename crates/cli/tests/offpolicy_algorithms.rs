//! SAC, TD3 and DQN on the runtime PPO uses: in sync mode the same seed
//! trains bit-identical weights and curves on 0, 1, 2 and 4 worker
//! processes; a run interrupted at a checkpoint resumes to exactly the run
//! that was not (replay buffer included); a worker killed mid-chunk loses
//! only its chunk; out-of-range actions are rejected; async collection
//! records each chunk's policy lag and keeps it under its limit; the policy
//! file plays with `evaluate`; configs that cannot work are refused before
//! anything starts.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

mod common;

use std::time::Duration;

use common::{deterministic_columns, run_to_end, shown, Run, Scratch, TRAIN};

const EVALUATE: &str = env!("CARGO_BIN_EXE_evaluate");

/// A small run of `algo` on `env` (4 envs, chunks of 2 steps, small
/// networks) of `steps` env steps, 64 of them random.
fn config(algo: &str, env: &str, steps: u64, extra: &str) -> String {
    format!(
        r#"[env]
id = "{env}"
num_envs = 4

[network]
actor_hidden = [32]
critic_hidden = [32]

[{algo}]
train_frequency = 2
gradient_steps = 3
batch_size = 32
learning_starts = 64
log_interval = 16
{extra}
[eval]
interval_steps = 1000000
episodes = 2

[run]
algo = "{algo}"
total_timesteps = {steps}
restart_backoff_s = 0.05
"#
    )
}

fn policy_and_rows(run: &Run) -> (Vec<u8>, Vec<Vec<String>>) {
    (
        std::fs::read(run.run_dir.join("policy.safetensors")).unwrap(),
        deterministic_columns(&run.train_rows()),
    )
}

#[test]
fn sync_training_is_bit_identical_on_0_1_2_and_4_workers() {
    for (algo, env, extra) in [
        ("sac", "Pendulum-v1", ""),
        ("td3", "Pendulum-v1", ""),
        ("dqn", "CartPole-v1", "target_network_frequency = 24\n"),
    ] {
        let text = config(algo, env, 256, extra);
        let mut reference = None;
        for workers in [0, 1, 2, 4] {
            let set = format!("run.num_workers={workers}");
            let mut run = Run::start(&format!("{algo}-{workers}"), &text, &["--set", &set], &[]);
            run.expect_exit(0, Duration::from_secs(180));
            let (policy, rows) = policy_and_rows(&run);
            // 32 chunks of 8 steps, a row every 2 chunks.
            assert_eq!(rows.len(), 16, "{algo}: {}", run.output());
            match &reference {
                None => reference = Some((policy, rows)),
                Some((p, r)) => {
                    assert_eq!(&rows, r, "{algo}: train.csv with {workers} workers");
                    assert!(&policy == p, "{algo}: policy with {workers} workers");
                }
            }
            run.assert_nothing_left();
        }
    }
}

/// A run stopped after its checkpoint at 128 steps and resumed equals the
/// run that was not stopped: networks, targets, optimizers, alpha, the
/// generators and the replay buffer all come back.
#[test]
fn a_resumed_sac_run_is_bit_identical_to_an_uninterrupted_one() {
    let text = config("sac", "Pendulum-v1", 256, "");
    let mut whole = Run::start(
        "sac-whole",
        &text,
        &[
            "--set",
            "run.num_workers=2",
            "--set",
            "checkpoint.interval_steps=128",
        ],
        &[],
    );
    whole.expect_exit(0, Duration::from_secs(180));
    let expected = policy_and_rows(&whole);
    // The same run, cut back to its periodic checkpoint and resumed.
    let checkpoints = whole.run_dir.join("checkpoints");
    std::fs::remove_file(checkpoints.join("final.safetensors")).unwrap();
    let _ = std::fs::remove_file(checkpoints.join("best.safetensors"));
    assert!(checkpoints.join("ckpt-0000000016.safetensors").exists());
    let dir = whole.run_dir.display().to_string();
    let out = run_to_end(TRAIN, &["--resume", &dir], Duration::from_secs(180));
    assert!(out.status.success(), "{}", shown(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ckpt-0000000016"), "{}", shown(&out));
    assert!(!stdout.contains("no replay buffer"), "{}", shown(&out));
    assert!(policy_and_rows(&whole) == expected, "resumed run differs");

    // Without the replay buffer in the checkpoint, resume says so.
    let text = config("sac", "Pendulum-v1", 256, "save_replay = false\n");
    let mut lean = Run::start(
        "sac-lean",
        &text,
        &["--set", "checkpoint.interval_steps=128"],
        &[],
    );
    lean.expect_exit(0, Duration::from_secs(180));
    let checkpoints = lean.run_dir.join("checkpoints");
    std::fs::remove_file(checkpoints.join("final.safetensors")).unwrap();
    let _ = std::fs::remove_file(checkpoints.join("best.safetensors"));
    let dir = lean.run_dir.display().to_string();
    let out = run_to_end(TRAIN, &["--resume", &dir], Duration::from_secs(180));
    assert!(out.status.success(), "{}", shown(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("continues with an empty one"),
        "{}",
        shown(&out)
    );
}

#[test]
fn a_worker_killed_mid_chunk_loses_only_its_chunk() {
    let mut run = Run::start(
        "sac-die",
        &config("sac", "Pendulum-v1", 256, ""),
        &["--set", "run.num_workers=2"],
        &[("FERRORL_FAULT", "worker=1 generation=0 round=5 kind=die")],
    );
    run.expect_exit(0, Duration::from_secs(180));
    let rows = run.train_rows();
    assert_eq!(
        rows.last().map(|r| r[1].as_str()),
        Some("256"),
        "{}",
        run.output()
    );
    assert!(
        run.stdout().contains("1 process restarted"),
        "{}",
        run.output()
    );
    run.assert_nothing_left();
}

#[test]
fn out_of_range_and_non_finite_transitions_are_rejected_and_counted() {
    for (algo, env, fault, reason) in [
        ("sac", "Pendulum-v1", "bad_action", "outside [-2, 2]"),
        ("dqn", "CartPole-v1", "bad_action", "not an index in 0..2"),
        ("td3", "Pendulum-v1", "nan", "not finite"),
    ] {
        let spec = format!("worker=0 generation=0 round=3 kind={fault}");
        let mut run = Run::start(
            &format!("{algo}-{fault}"),
            &config(algo, env, 256, ""),
            &["--set", "run.num_workers=2"],
            &[("FERRORL_FAULT", &spec)],
        );
        run.expect_exit(0, Duration::from_secs(180));
        assert!(
            run.stdout().contains("1 worker message rejected"),
            "{algo}: {}",
            run.output()
        );
        assert!(run.stderr().contains(reason), "{algo}: {}", run.output());
        run.assert_nothing_left();
    }
}

/// Async collection: workers never wait for the learner; train.csv has
/// each row's mean policy lag and the chunks dropped as too stale, and no
/// chunk older than `max_policy_lag` is trained on.
#[test]
fn async_collection_records_policy_lag_and_enforces_its_limit() {
    for (max_lag, name) in [(16, "async"), (0, "async-lag-0")] {
        let set = format!("run.max_policy_lag={max_lag}");
        let mut run = Run::start(
            name,
            &config("sac", "Pendulum-v1", 512, ""),
            &[
                "--set",
                "run.num_workers=2",
                "--set",
                "run.collection=async",
                "--set",
                &set,
            ],
            &[],
        );
        run.expect_exit(0, Duration::from_secs(180));
        let text = std::fs::read_to_string(run.run_dir.join("train.csv")).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let at = |name: &str| header.iter().position(|c| *c == name).unwrap();
        let (lag, stale) = (at("policy_lag"), at("stale_chunks"));
        let rows = run.train_rows();
        // Chunks are one worker's: 2 envs x 2 steps.
        assert_eq!(rows.last().unwrap()[1], "512", "{}", run.output());
        assert_eq!(rows.last().unwrap()[2], "128", "{}", run.output());
        let lags: Vec<f64> = rows.iter().map(|r| r[lag].parse().unwrap()).collect();
        assert!(lags.iter().all(|l| *l <= max_lag as f64), "{lags:?}");
        if max_lag > 0 {
            // A worker is asked for its next chunk before the update of its
            // last one: it acts with weights one update old at least.
            assert!(lags.iter().any(|l| *l > 0.0), "{lags:?}");
        }
        let stale: Vec<f64> = rows.iter().map(|r| r[stale].parse().unwrap()).collect();
        assert!(stale.windows(2).all(|w| w[0] <= w[1]), "{stale:?}");
        run.assert_nothing_left();
    }
}

#[test]
fn evaluate_plays_the_off_policy_policies() {
    for (algo, env) in [
        ("sac", "Pendulum-v1"),
        ("td3", "Pendulum-v1"),
        ("dqn", "CartPole-v1"),
    ] {
        let mut run = Run::start(
            &format!("{algo}-eval"),
            &config(algo, env, 128, ""),
            &[],
            &[],
        );
        run.expect_exit(0, Duration::from_secs(180));
        let policy = run.run_dir.join("policy.safetensors").display().to_string();
        let out = run_to_end(
            EVALUATE,
            &[&policy, "--episodes", "2"],
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "{algo}: {}", shown(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(env), "{algo}: {}", shown(&out));
    }
}

#[test]
fn configs_that_cannot_work_are_refused_before_anything_starts() {
    let scratch = Scratch::new("offpolicy-config-errors");
    for (name, text, expected) in [
        (
            "sac-discrete",
            config("sac", "CartPole-v1", 256, ""),
            "sac needs a Box action space",
        ),
        (
            "dqn-box",
            config("dqn", "Pendulum-v1", 256, ""),
            "dqn needs a Discrete action space",
        ),
        (
            "table-of-another-algo",
            config("sac", "Pendulum-v1", 256, "").replace("algo = \"sac\"", "algo = \"ppo\""),
            "[run] algo = \"ppo\" is not allowed; expected \"sac\" for a config with a [sac] table",
        ),
        (
            "normalised",
            config("td3", "Pendulum-v1", 256, "")
                .replace("num_envs = 4", "num_envs = 4\nnormalize_obs = true"),
            "[env] normalize_obs = true is not allowed; expected false with an off-policy algo",
        ),
        (
            "async-in-one-process",
            config("sac", "Pendulum-v1", 256, "").replace("algo = \"sac\"", "algo = \"sac\"\ncollection = \"async\""),
            "[run] collection = \"async\" is not allowed; expected \"sync\" unless an off-policy algo",
        ),
        (
            "bad-tau",
            config("sac", "Pendulum-v1", 256, "tau = 0.0\n"),
            "[sac] tau = 0 is not allowed; expected a number in (0, 1]",
        ),
        (
            "huge-buffer",
            config("sac", "Pendulum-v1", 256, "buffer_size = 9000000000000\n"),
            "[sac] buffer_size = 9000000000000 is too large",
        ),
    ] {
        let path = scratch.0.join(format!("{name}.toml"));
        std::fs::write(&path, &text).unwrap();
        let run_dir = scratch.0.join(name);
        let out = run_to_end(
            TRAIN,
            &[
                "--config",
                &path.display().to_string(),
                "--run-dir",
                &run_dir.display().to_string(),
            ],
            Duration::from_secs(60),
        );
        assert_eq!(out.status.code(), Some(2), "{name}: {}", shown(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{name}: {}", shown(&out));
        assert!(!run_dir.exists(), "{name}: a run directory was made");
    }
}
