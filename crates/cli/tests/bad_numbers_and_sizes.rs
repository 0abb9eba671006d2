//! Numbers that cannot be trusted, on the real binaries: settings that make
//! training diverge (stopped with the cause, the last finite state kept,
//! resumable with other settings), sizes that cannot fit (refused before
//! anything starts, with the bytes), values that must read back from the
//! files a run writes, policy files that are damaged or describe
//! impossible networks, and CSV values `curves` cannot draw.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{cartpole_config, run_to_end, shown, Run, Scratch, TRAIN};
use rl_runtime::storage::checkpoint::Checkpoint;
use rl_runtime::storage::safetensors::seal;

const EVALUATE: &str = env!("CARGO_BIN_EXE_evaluate");
const CURVES: &str = env!("CARGO_BIN_EXE_curves");

/// CartPole, 128 env steps per update, `workers` worker processes.
fn config(updates: u64, workers: usize) -> String {
    let workers = format!("run.num_workers = {workers}");
    cartpole_config(
        updates,
        &[
            "eval.interval_steps = 512",
            &workers,
            "run.worker_timeout_s = 20",
        ],
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_diverging_run_stops_keeps_its_last_finite_state_and_resumes_with_new_settings() {
    for workers in [0, 2] {
        let mut run = Run::start(
            &format!("diverge-{workers}"),
            &config(20, workers),
            &["--set", "ppo.ent_coef=1e300"],
            &[],
        );
        run.expect_exit(1, Duration::from_secs(60));
        let err = run.stderr();
        assert!(
            err.contains("training diverged in update 1")
                && err.contains("the gradient")
                && err.contains("[ppo] ent_coef = 1e300"),
            "{}",
            run.output()
        );
        assert!(
            err.contains(&format!(
                "train --resume {} --set ppo.ent_coef=0.01",
                run.run_dir.display()
            )),
            "{}",
            run.output()
        );
        // No worker is blamed, nothing is restarted or rejected.
        assert!(
            !err.contains("replacing") && !err.contains("rejected"),
            "{}",
            run.output()
        );
        // The saved weights and checkpoint are finite (decoding checks).
        let policy = std::fs::read(run.run_dir.join("policy.safetensors")).unwrap();
        rl_runtime::storage::policy_file::decode_policy(&policy).unwrap();
        let checkpoint = run.run_dir.join("checkpoints/ckpt-0000000000.safetensors");
        Checkpoint::decode(&std::fs::read(checkpoint).unwrap()).unwrap();
        run.assert_nothing_left();
        let out = run_to_end(
            TRAIN,
            &[
                "--resume",
                run.run_dir.to_str().unwrap(),
                "--set",
                "ppo.ent_coef=0.01",
            ],
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "{}", shown(&out));
        assert!(text(&out.stderr).contains("ppo.ent_coef: 1e+300 -> 0.01"));
        assert_eq!(run.train_rows().len(), 20);
    }
}

#[test]
fn settings_that_cannot_fit_are_refused_before_anything_starts() {
    let scratch = Scratch::new("sizes");
    let cfg = scratch.0.join("cfg.toml");
    std::fs::write(&cfg, config(10, 2)).unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["ppo.num_steps=1000000000000", "run.num_workers=0"],
            "[ppo] num_steps = 1000000000000 is too large: the run needs",
        ),
        (
            &["ppo.num_steps=1000000000000"],
            "more than the 1073741824 bytes one rollout message may hold",
        ),
        (
            &["ppo.num_steps=9223372036854775807", "run.num_workers=0"],
            "[ppo] num_steps = 9223372036854775807 is too large",
        ),
        (
            &["network.actor_hidden=[65536,65536,65536,65536]"],
            "[network] actor_hidden = [65536,65536,65536,65536] is too large",
        ),
        (
            &["env.num_envs=65536", "ppo.num_steps=100000000"],
            "[ppo] num_steps = 100000000 is too large",
        ),
    ];
    for (sets, expected) in cases {
        let run_dir = scratch.0.join("run");
        let mut args = vec![
            "--config",
            cfg.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = run_to_end(TRAIN, &args, Duration::from_secs(60));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sets:?}: {}", shown(&out));
        assert!(err.contains(expected), "{sets:?}: {err}");
        assert!(
            err.contains("bytes") && (err.contains("available") || err.contains("message")),
            "{sets:?}: {err}"
        );
        assert!(!run_dir.exists(), "{sets:?}: a run directory was created");
    }
}

#[test]
fn every_accepted_seed_reads_back_from_the_config_a_run_writes() {
    let scratch = Scratch::new("seeds");
    let cfg = scratch.0.join("cfg.toml");
    std::fs::write(&cfg, config(2, 0)).unwrap();
    let run_dir = scratch.0.join("too-large");
    let out = run_to_end(
        TRAIN,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--seed",
            "9223372036854775808",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(
        text(&out.stderr).contains("(--seed 9223372036854775808): [run] seed"),
        "{}",
        shown(&out)
    );
    for seed in ["0", "9223372036854775807"] {
        let run_dir = scratch.0.join(format!("seed-{seed}"));
        let out = run_to_end(
            TRAIN,
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--run-dir",
                run_dir.to_str().unwrap(),
                "--seed",
                seed,
            ],
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{}", shown(&out));
        let written: toml::Table = std::fs::read_to_string(run_dir.join("config.toml"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            written["run"]["seed"].as_integer().unwrap().to_string(),
            seed
        );
        let out = run_to_end(
            TRAIN,
            &["--resume", run_dir.to_str().unwrap()],
            Duration::from_secs(60),
        );
        assert!(
            out.status.success() && text(&out.stdout).contains("complete"),
            "{}",
            shown(&out)
        );
    }
}

/// A policy file's bytes with one metadata value replaced, resealed.
fn with_metadata(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    header["__metadata__"][key] = serde_json::Value::String(value.to_string());
    let mut header_bytes = header.to_string().into_bytes();
    while header_bytes.len() % 8 != 0 {
        header_bytes.push(b' ');
    }
    let mut out = (header_bytes.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&bytes[8 + header_len..]);
    seal(&mut out);
    out
}

#[test]
fn policy_files_refuse_damage_and_impossible_sizes_and_evaluate_always_answers() {
    let mut run = Run::start("policy-files", &config(4, 0), &[], &[]);
    run.expect_exit(0, Duration::from_secs(60));
    let policy = run.run_dir.join("policy.safetensors");
    let bytes = std::fs::read(&policy).unwrap();
    let evaluate = |file: &Path, extra: &[&str]| {
        let mut args = vec![file.to_str().unwrap(), "--episodes", "2"];
        args.extend(extra);
        run_to_end(EVALUATE, &args, Duration::from_secs(60))
    };
    assert!(evaluate(&policy, &[]).status.success());
    let damaged = run.scratch.0.join("damaged.safetensors");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            {
                let mut b = bytes.clone();
                let at = b.len() - 7;
                b[at] ^= 0x04;
                b
            },
            "checksum mismatch",
        ),
        (
            with_metadata(&bytes, "obs_dim", "1000000000000"),
            "the metadata describes a network of",
        ),
        (
            with_metadata(&bytes, "actor_hidden", "[4294967296, 4294967296]"),
            "the metadata describes a network of",
        ),
        (
            with_metadata(&bytes, "obs_dim", "18446744073709551615"),
            "the metadata describes a network of",
        ),
    ];
    for (file, expected) in cases {
        std::fs::write(&damaged, &file).unwrap();
        let out = evaluate(&damaged, &[]);
        assert_eq!(out.status.code(), Some(2), "{expected}: {}", shown(&out));
        assert!(text(&out.stderr).contains(expected), "{}", shown(&out));
    }
    for (flag, value) in [
        ("--episodes", "1000000000000"),
        ("--max-episode-steps", "0"),
    ] {
        let out = evaluate(&policy, &[flag, value]);
        assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
        assert!(text(&out.stderr).contains(flag), "{}", shown(&out));
    }
    // Weights whose actions overflow: evaluate still answers.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut huge = bytes.clone();
    for chunk in huge[8 + header_len..].chunks_exact_mut(4) {
        chunk.copy_from_slice(&3e38f32.to_le_bytes());
    }
    seal(&mut huge);
    std::fs::write(&damaged, &huge).unwrap();
    let out = evaluate(&damaged, &["--obs", "/dev/null"]);
    assert!(out.status.code().is_some_and(|c| c <= 2), "{}", shown(&out));
    let out = evaluate(&damaged, &[]);
    assert!(
        out.status.code().is_some_and(|c| c <= 2) && !text(&out.stderr).contains("panicked"),
        "{}",
        shown(&out)
    );
}

#[test]
fn curves_answers_at_once_on_values_it_cannot_draw() {
    let scratch = Scratch::new("curves-extreme");
    let dir = scratch.0.join("run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), config(10, 0)).unwrap();
    let mut train = format!(
        "{}\n",
        rl_runtime::train_csv_header(&rl_algo::ppo::learner::STAT_NAMES)
    );
    for (steps, ret) in [
        ("128", "10"),
        ("1.7976931348623157e308", "20"),
        ("256", "-1.7976931348623157e308"),
        ("-1e300", "5"),
        ("384", "1e300"),
        ("512", "30"),
    ] {
        train += &format!("1,{steps},1,1,0,0,0,0,0,0,0,{ret}\n");
    }
    std::fs::write(dir.join("train.csv"), train).unwrap();
    let mut eval = format!("{}\n", rl_runtime::EVAL_CSV_HEADER);
    eval += "1,1e308,1,1e308,0,-1e308,1e308,2\n1,512,2,40,0,30,50,2\n";
    std::fs::write(dir.join("eval.csv"), eval).unwrap();
    let start = Instant::now();
    let out = run_to_end(
        CURVES,
        &[dir.to_str().unwrap(), "--snapshot", "120x40"],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", shown(&out));
    assert!(start.elapsed() < Duration::from_secs(30));
    let frame = text(&out.stdout);
    assert!(frame.contains("rows not drawn"), "{frame}");
}
