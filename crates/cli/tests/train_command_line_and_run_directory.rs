//! The `train` binary, run for real: configs, errors, exit codes, the run
//! directory contract, Ctrl-C.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TRAIN: &str = env!("CARGO_BIN_EXE_train");

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rl-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const SMALL_CARTPOLE: &str = r#"[env]
id = "CartPole-v1"
num_envs = 4

[ppo]
num_steps = 64
num_minibatches = 2
update_epochs = 2

[eval]
interval_steps = 1024
episodes = 2

[run]
total_timesteps = 2048
"#;

fn train(args: &[&str], cwd: &Path) -> Output {
    Command::new(TRAIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn bad_configs_exit_2_naming_the_key_and_line_and_create_nothing() {
    let scratch = Scratch::new("bad-config");
    let cases: Vec<(&str, String, Vec<&str>, Vec<&str>)> = vec![
        (
            "unknown key",
            SMALL_CARTPOLE.replace("update_epochs = 2", "update_epochs = 2\nlearnin_rate = 0.1"),
            vec![],
            vec!["cfg.toml:9", "learnin_rate", "unknown field"],
        ),
        (
            "wrong type",
            SMALL_CARTPOLE.replace("num_steps = 64", "num_steps = \"many\""),
            vec![],
            vec!["cfg.toml:6", "num_steps", "invalid type"],
        ),
        (
            "negative learning rate",
            SMALL_CARTPOLE.replace("num_steps = 64", "num_steps = 64\nlearning_rate = -1"),
            vec![],
            vec!["cfg.toml:7", "[ppo] learning_rate = -1", "a number > 0"],
        ),
        (
            "a key of a config written before it moved out of [ppo]",
            SMALL_CARTPOLE.replace("num_steps = 64", "num_steps = 64\nnormalize_obs = true"),
            vec!["--set", "ppo.total_timesteps=4096"],
            vec![
                "cfg.toml:7: [ppo] normalize_obs has moved to [env] normalize_obs",
                "(--set ppo.total_timesteps=4096): [ppo] total_timesteps has moved to [run] total_timesteps",
            ],
        ),
        (
            "zero envs",
            SMALL_CARTPOLE.replace("num_envs = 4", "num_envs = 0"),
            vec![],
            vec!["cfg.toml:3", "[env] num_envs = 0", "1..=65536"],
        ),
        (
            "unknown env id",
            SMALL_CARTPOLE.replace("CartPole-v1", "CartPole-v9"),
            vec![],
            vec!["cfg.toml:2", "CartPole-v9", "known ids", "Pendulum-v1"],
        ),
        (
            "bad override",
            SMALL_CARTPOLE.to_string(),
            vec!["--set", "ppo.clip_coef=0"],
            vec!["--set ppo.clip_coef=0", "clip_coef = 0", "a number > 0"],
        ),
        (
            "malformed override",
            SMALL_CARTPOLE.to_string(),
            vec!["--set", "learning_rate"],
            vec!["--set learning_rate", "table.key=value"],
        ),
        (
            "not TOML",
            "[env\nid = 3".to_string(),
            vec![],
            vec!["cfg.toml:1", "not valid TOML"],
        ),
    ];
    for (what, config, extra, needles) in cases {
        let cfg = scratch.write("cfg.toml", &config);
        let run_dir = scratch.0.join("run");
        let mut args = vec![
            "--config",
            cfg.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = train(&args, &scratch.0);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{what}: stderr lacks {needle:?}:\n{stderr}"
            );
        }
        assert!(!run_dir.exists(), "{what}: a run directory was created");
        assert!(
            !scratch.0.join("runs").exists(),
            "{what}: runs/ was created"
        );
    }

    let out = train(&["--config", "/nonexistent/cfg.toml"], &scratch.0);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read config file /nonexistent/cfg.toml"));
    let out = train(&["--frobnicate"], &scratch.0);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_short_run_leaves_a_run_directory_matching_the_contract() {
    let scratch = Scratch::new("contract");
    let cfg = scratch.write("small.toml", SMALL_CARTPOLE);
    let out = train(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--seed",
            "5",
            "--set",
            "ppo.learning_rate=5e-4",
        ],
        &scratch.0,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));

    // The run directory is printed first, named after the config.
    let first = stdout.lines().next().unwrap();
    assert!(first.starts_with("runs/small-20"), "{first}");
    let run = scratch.0.join(first);
    assert!(run.is_dir());

    let train_csv = std::fs::read_to_string(run.join("train.csv")).unwrap();
    let mut lines = train_csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "time_s,env_steps,updates,steps_per_s,policy_loss,value_loss,entropy,approx_kl,clip_frac,explained_variance,learning_rate,episode_return_mean"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 8, "2048 steps / (4 envs x 64 steps) updates");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 12);
        assert_eq!(row[1].parse::<u64>().unwrap(), 256 * (i as u64 + 1));
        assert_eq!(row[2].parse::<u64>().unwrap(), i as u64 + 1);
        assert!(row[3].parse::<f64>().unwrap() > 0.0);
    }
    let lr: f64 = rows[0][10].parse().unwrap();
    assert!((lr - 5e-4).abs() < 1e-12, "--set reached the learner: {lr}");

    let eval_csv = std::fs::read_to_string(run.join("eval.csv")).unwrap();
    let mut lines = eval_csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "time_s,env_steps,policy_version,return_mean,return_std,return_min,return_max,episodes"
    );
    let evals: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(evals.len(), 2, "{eval_csv}");
    assert_eq!(evals[0][1], "1024");
    assert_eq!(evals[1][1], "2048");
    assert_eq!(evals[1][2], "8");
    assert_eq!(evals[1][7], "2");

    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let resolved: toml::Table = toml::from_str(&config).unwrap();
    assert_eq!(resolved["run"]["seed"].as_integer(), Some(5));
    assert_eq!(resolved["ppo"]["learning_rate"].as_float(), Some(5e-4));
    assert_eq!(
        resolved["ppo"]["gae_lambda"].as_float(),
        Some(0.95),
        "defaults are written out"
    );

    // The policy file is safetensors: an 8-byte header length, a JSON header.
    let bytes = std::fs::read(run.join("policy.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(
        header["actor.0.weight"]["shape"],
        serde_json::json!([64, 4])
    );
    assert_eq!(
        header["actor.4.weight"]["shape"],
        serde_json::json!([2, 64])
    );
    assert_eq!(header["__metadata__"]["env_id"], "CartPole-v1");
    let end = header["critic.4.weight"]["data_offsets"][1]
        .as_u64()
        .unwrap() as usize;
    assert!(8 + header_len + end <= bytes.len());
}

#[test]
fn ctrl_c_finishes_the_update_saves_weights_and_exits_130() {
    let scratch = Scratch::new("sigint");
    let cfg = scratch.write(
        "long.toml",
        &SMALL_CARTPOLE.replace("total_timesteps = 2048", "total_timesteps = 100000000"),
    );
    let run = scratch.0.join("run");
    let mut child = Command::new(TRAIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = std::fs::read_to_string(run.join("train.csv")).map_or(0, |t| t.lines().count());
        if rows >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "training did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "train did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    assert_eq!(code, Some(130), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("interrupted after"));
    assert!(run.join("policy.safetensors").exists());
}

/// Started by an MPI launcher as one of K > 1 ranks, a train built without
/// MPI support refuses (each rank would train alone) and says how to build
/// one that can; one rank is an ordinary run.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_train_without_mpi_support_refuses_to_be_one_of_several_ranks() {
    let scratch = Scratch::new("no-mpi");
    let shown = |out: &Output| {
        format!(
            "exit {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let run = |size: &str, name: &str| {
        std::process::Command::new(TRAIN)
            .args(["--config", "../../configs/ppo.toml", "--run-dir"])
            .arg(scratch.0.join(name))
            .args([
                "--set",
                "run.total_timesteps=512",
                "--set",
                "run.num_workers=0",
            ])
            .env("OMPI_COMM_WORLD_SIZE", size)
            .env("OMPI_COMM_WORLD_RANK", "0")
            .env_remove("FERRORL_FAULT")
            .output()
            .unwrap()
    };
    let out = run("2", "two");
    let text = shown(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("rank 0 of 2")
            && text.contains("without MPI support")
            && text.contains("--features mpi"),
        "{text}"
    );
    assert!(!scratch.0.join("two").exists(), "nothing written: {text}");
    let out = run("1", "one");
    assert!(out.status.success(), "{}", shown(&out));
}
