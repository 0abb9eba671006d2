//! `train --resume` on run directories a user, a tool or a full disk
//! damaged: it repairs what it can rebuild (a CSV file from the TensorBoard
//! files, a lost header line, `config.toml` from the settings in the
//! checkpoints), or refuses saying what is wrong and what to do; it never
//! leaves a run directory worse than it found it, nor a temporary file.

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{cartpole_config, run_to_end, shown, Run, TRAIN};

const CURVES: &str = env!("CARGO_BIN_EXE_curves");

/// CartPole in one process, 128 env steps per update, a checkpoint every 4.
fn config(updates: u64) -> String {
    cartpole_config(
        updates,
        &[
            "eval.interval_steps = 512",
            "checkpoint.interval_updates = 4",
        ],
    )
}

fn finished_run(name: &str, updates: u64) -> Run {
    let mut run = Run::start(name, &config(updates), &[], &[]);
    run.expect_exit(0, Duration::from_secs(120));
    run
}

fn resume(run_dir: &Path, set: &[&str]) -> std::process::Output {
    let mut args = vec!["--resume", run_dir.to_str().unwrap()];
    for s in set {
        args.extend(["--set", s]);
    }
    run_to_end(TRAIN, &args, Duration::from_secs(120))
}

/// Every file of a run directory (recursively) with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(contents(&path));
        } else {
            all.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    all
}

fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    contents(dir)
        .into_keys()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

/// The `updates` column of train.csv.
fn updates_column(run_dir: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(run_dir.join("train.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(rl_runtime::train_csv_header(&rl_algo::ppo::learner::STAT_NAMES).as_str()),
        "train.csv starts with its header"
    );
    lines
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn an_emptied_train_csv_is_rebuilt_from_the_tensorboard_files() {
    let run = finished_run("empty-csv", 8);
    std::fs::write(run.run_dir.join("train.csv"), "").unwrap();
    // Continue the finished run for 4 more updates.
    let out = resume(&run.run_dir, &["run.total_timesteps=1536"]);
    assert!(out.status.success(), "{}", shown(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("train.csv was empty") && err.contains("8 rows rebuilt"),
        "{}",
        shown(&out)
    );
    assert_eq!(updates_column(&run.run_dir), (1..=12).collect::<Vec<_>>());
    // Curves show the run again, and a later resume still works.
    let frame = run_to_end(
        CURVES,
        &[run.run_dir.to_str().unwrap(), "--snapshot", "100x30"],
        Duration::from_secs(30),
    );
    let frame_text = String::from_utf8_lossy(&frame.stdout);
    assert!(
        frame.status.success() && !frame_text.contains("waiting for the first rows"),
        "{}",
        shown(&frame)
    );
    let out = resume(&run.run_dir, &[]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("complete"),
        "{}",
        shown(&out)
    );
    assert!(temporary_files(&run.run_dir).is_empty());
}

#[test]
fn a_lost_header_line_comes_back_and_a_missing_eval_csv_is_rebuilt() {
    let run = finished_run("lost-header", 8);
    let train = run.run_dir.join("train.csv");
    let text = std::fs::read_to_string(&train).unwrap();
    let without_header: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&train, without_header).unwrap();
    let evals_before = std::fs::read_to_string(run.run_dir.join("eval.csv"))
        .unwrap()
        .lines()
        .count();
    std::fs::remove_file(run.run_dir.join("eval.csv")).unwrap();
    let out = resume(&run.run_dir, &["run.total_timesteps=1536"]);
    assert!(out.status.success(), "{}", shown(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("had lost its header line") && err.contains("eval.csv was missing"),
        "{}",
        shown(&out)
    );
    assert_eq!(updates_column(&run.run_dir), (1..=12).collect::<Vec<_>>());
    let evals = std::fs::read_to_string(run.run_dir.join("eval.csv")).unwrap();
    assert!(evals.starts_with(rl_runtime::EVAL_CSV_HEADER));
    assert!(
        evals.lines().count() > evals_before,
        "the old evaluations are back and new ones follow:\n{evals}"
    );
}

#[test]
fn a_foreign_first_line_is_refused_and_nothing_changes() {
    let run = finished_run("foreign", 8);
    std::fs::write(run.run_dir.join("train.csv"), "hello,world\n1,2\n").unwrap();
    let before = contents(&run.run_dir);
    let out = resume(&run.run_dir, &["run.total_timesteps=1536"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("its first line is not the header")
            && err.contains("mv ")
            && err.contains("nothing was changed"),
        "{}",
        shown(&out)
    );
    assert_eq!(contents(&run.run_dir), before, "the run directory changed");
    // Moved away as told, the run resumes with its rows rebuilt.
    std::fs::rename(
        run.run_dir.join("train.csv"),
        run.run_dir.join("train.csv.old"),
    )
    .unwrap();
    let out = resume(&run.run_dir, &["run.total_timesteps=1536"]);
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(updates_column(&run.run_dir), (1..=12).collect::<Vec<_>>());
}

#[test]
fn a_missing_or_damaged_config_is_rebuilt_from_the_checkpoints() {
    let run = finished_run("config", 8);
    let config = run.run_dir.join("config.toml");
    let original: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    std::fs::remove_file(&config).unwrap();
    let out = resume(&run.run_dir, &["run.total_timesteps=1280"]);
    assert!(out.status.success(), "{}", shown(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rebuilt it from the settings in"),
        "{}",
        shown(&out)
    );
    let rebuilt: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    assert_eq!(rebuilt["env"], original["env"]);
    assert_eq!(rebuilt["ppo"], original["ppo"]);
    let without_budget = |t: &toml::Table| {
        let mut run = t["run"].as_table().unwrap().clone();
        run.remove("total_timesteps");
        run
    };
    assert_eq!(without_budget(&rebuilt), without_budget(&original));
    assert_eq!(rebuilt["run"]["total_timesteps"].as_integer(), Some(1280));

    std::fs::write(&config, "[env\nid = garbage").unwrap();
    let out = resume(&run.run_dir, &["run.total_timesteps=1536"]);
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(
        std::fs::read_to_string(run.run_dir.join("config.toml.damaged")).unwrap(),
        "[env\nid = garbage",
        "the damaged file is kept"
    );
    assert_eq!(updates_column(&run.run_dir), (1..=12).collect::<Vec<_>>());
}

#[test]
fn a_resume_whose_writes_fail_leaves_no_temporary_file_and_a_readable_run() {
    let run = finished_run("fsize-resume", 8);
    let before = contents(&run.run_dir);
    // Every file write beyond 64 bytes fails (EFBIG): the repaired CSV
    // cannot be written.
    std::fs::write(run.run_dir.join("train.csv"), "").unwrap();
    let mut command = Command::new(TRAIN);
    command
        .args([
            "--resume",
            run.run_dir.to_str().unwrap(),
            "--set",
            "run.total_timesteps=1536",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, 64, 64)
                .map_err(std::io::Error::from)
        });
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert!(
        temporary_files(&run.run_dir).is_empty(),
        "{:?}",
        temporary_files(&run.run_dir)
    );
    // Everything that was whole is whole: the checkpoints and the event
    // files are as they were; config.toml too.
    let after = contents(&run.run_dir);
    for (path, bytes) in &before {
        if path.ends_with("train.csv") {
            continue;
        }
        assert_eq!(after.get(path), Some(bytes), "{} changed", path.display());
    }
    // And the run resumes once the disk has room again.
    let out = resume(&run.run_dir, &["run.total_timesteps=1536"]);
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(updates_column(&run.run_dir), (1..=12).collect::<Vec<_>>());
}
