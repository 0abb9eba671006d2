//! Keeping and watching training, for real: checkpoints, `train --resume`
//! (bit-identical continuation, fallback past damaged checkpoints, SIGKILL
//! during writes, a write that fails), `evaluate`, `curves`, and the files
//! a run leaves (TensorBoard events, curve.png).

#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Run, Scratch, TRAIN};
use rl_runtime::storage::checkpoint::Checkpoint;
use rl_runtime::storage::safetensors::seal;

const EVALUATE: &str = env!("CARGO_BIN_EXE_evaluate");
const CURVES: &str = env!("CARGO_BIN_EXE_curves");

/// CartPole, 4 envs, 128 env steps per update, `updates` updates.
fn config(updates: u64, workers: usize, extra: &str) -> String {
    format!(
        r#"[env]
id = "CartPole-v1"
num_envs = 4
normalize_obs = true
normalize_reward = true

[ppo]
num_steps = 32
num_minibatches = 2
update_epochs = 2

[eval]
interval_steps = 512
episodes = 2

[run]
total_timesteps = {}
num_workers = {workers}
worker_timeout_s = 20
{extra}
"#,
        updates * 128
    )
}

/// Every column of train.csv but the timing ones, and of eval.csv but time.
fn curves_without_timing(run_dir: &Path) -> (Vec<String>, Vec<String>) {
    curves_of(run_dir)
}

/// Compares two runs' curves: train.csv row for row (timing aside); eval.csv
/// version by version: worker processes run the evaluator beside training,
/// and it may skip an evaluation point it was too busy for, so the rows of
/// versions both evaluated must be equal, and both evaluated the last one.
fn assert_same_curves(a: &Path, b: &Path, what: &str) {
    let ((train_a, eval_a), (train_b, eval_b)) = (curves_of(a), curves_of(b));
    assert_eq!(
        train_a, train_b,
        "{what}: train.csv differs (a gap or a duplicate row?)"
    );
    let version = |row: &str| row.split(',').nth(1).unwrap_or_default().to_string();
    for row in eval_a.iter().skip(1) {
        if let Some(other) = eval_b.iter().find(|r| version(r) == version(row)) {
            assert_eq!(
                row, other,
                "{what}: an evaluation of the same version differs"
            );
        }
    }
    for eval in [&eval_a, &eval_b] {
        let versions: Vec<u64> = eval
            .iter()
            .skip(1)
            .map(|r| version(r).parse().unwrap())
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{what}: {versions:?}"
        );
    }
    assert_eq!(
        eval_a.last(),
        eval_b.last(),
        "{what}: the final evaluations differ"
    );
}

fn curves_of(run_dir: &Path) -> (Vec<String>, Vec<String>) {
    let strip = |file: &str, skip: &[usize]| -> Vec<String> {
        std::fs::read_to_string(run_dir.join(file))
            .unwrap()
            .lines()
            .map(|l| {
                l.split(',')
                    .enumerate()
                    .filter(|(i, _)| !skip.contains(i))
                    .map(|(_, v)| v)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    };
    (strip("train.csv", &[0, 3]), strip("eval.csv", &[0]))
}

fn resume(run_dir: &Path, limit: Duration) -> std::process::Output {
    let mut child = Command::new(TRAIN)
        .args(["--resume", run_dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "resume did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn straight_run(name: &str, cfg: &str) -> Run {
    let mut run = Run::start(name, cfg, &[], &[]);
    run.expect_exit(0, Duration::from_secs(300));
    run
}

/// The issue's test: N updates, stop, resume for M more gives, bit for bit,
/// the weights (and curves) of N + M updates straight through; in one
/// process and with one worker process, after Ctrl-C and after SIGKILL.
#[test]
fn resuming_gives_the_weights_and_curves_of_an_uninterrupted_run() {
    for (workers, signal) in [(0, "INT"), (1, "INT"), (1, "KILL")] {
        let cfg =
            config(40, workers, "").replace("[run]", "[checkpoint]\ninterval_updates = 5\n\n[run]");
        let straight = straight_run(&format!("straight-{workers}-{signal}"), &cfg);
        let mut stopped = Run::start(&format!("stopped-{workers}-{signal}"), &cfg, &[], &[]);
        stopped.wait_for_updates(13);
        stopped.signal(signal, stopped.child.id());
        let code = stopped.wait(Duration::from_secs(60));
        assert_eq!(
            code,
            if signal == "INT" { Some(130) } else { None },
            "{}",
            stopped.output()
        );
        stopped.assert_nothing_left();
        let out = resume(&stopped.run_dir, Duration::from_secs(300));
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        assert!(stdout.contains("resuming from"), "{stdout}");
        assert!(stdout.contains("of 40 updates"), "{stdout}");
        let policy = |r: &Path| std::fs::read(r.join("policy.safetensors")).unwrap();
        assert!(
            policy(&stopped.run_dir) == policy(&straight.run_dir),
            "{workers} workers, SIG{signal}: the resumed weights differ from the uninterrupted run's"
        );
        let what = format!("{workers} workers, SIG{signal}");
        if workers == 0 {
            // One process evaluates at every point: the curves are equal.
            assert_eq!(
                curves_without_timing(&stopped.run_dir),
                curves_without_timing(&straight.run_dir),
                "{what}: the curves differ (a gap or a duplicate row?)"
            );
        } else {
            assert_same_curves(&stopped.run_dir, &straight.run_dir, &what);
        }
        // Resuming a complete run changes nothing.
        let out = resume(&stopped.run_dir, Duration::from_secs(60));
        assert!(out.status.success());
        assert!(
            text(&out.stdout).contains("the run is complete"),
            "{}",
            text(&out.stdout)
        );
    }
}

/// The byte range of a tensor's data in a safetensors file.
fn tensor_bytes(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let offsets = &header[name]["data_offsets"];
    let start = 8 + header_len + offsets[0].as_u64().unwrap() as usize;
    start..8 + header_len + offsets[1].as_u64().unwrap() as usize
}

fn replace_once(bytes: &mut [u8], from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from} not found"));
    bytes[at..at + from.len()].copy_from_slice(to.as_bytes());
}

#[test]
fn damaged_checkpoints_are_named_and_resume_falls_back_to_the_newest_valid_one() {
    let cfg = config(40, 1, "").replace(
        "[run]",
        "[checkpoint]\ninterval_updates = 5\nkeep_last = 10\n\n[run]",
    );
    let straight = straight_run("damage-straight", &cfg);
    let run = straight_run("damage", &cfg);
    let ckpt = |n: u64| {
        run.run_dir
            .join(format!("checkpoints/ckpt-{n:010}.safetensors"))
    };
    // As if the run had died before its last checkpoint, then disk damage.
    std::fs::remove_file(run.run_dir.join("checkpoints/final.safetensors")).unwrap();
    let edit = |n: u64, f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = std::fs::read(ckpt(n)).unwrap();
        f(&mut bytes);
        std::fs::write(ckpt(n), bytes).unwrap();
    };
    edit(35, &|b| b.truncate(b.len() / 2));
    edit(30, &|b| {
        let i = b.len() - 1000;
        b[i] ^= 0x04;
    });
    edit(25, &|b| {
        replace_once(b, "ferrorl-checkpoint-v3", "ferrorl-checkpoint-v7");
        seal(b);
    });
    edit(20, &|b| {
        replace_once(b, "\"shape\":[64,4]", "\"shape\":[4,64]");
        seal(b);
    });
    edit(15, &|b| {
        let r = tensor_bytes(b, "optimizer.exp_avg");
        b[r.start + 8..r.start + 12].copy_from_slice(&f32::NAN.to_le_bytes());
        seal(b);
    });
    let out = resume(&run.run_dir, Duration::from_secs(300));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    for (n, reason) in [
        (35, "damaged"),
        (30, "checksum mismatch"),
        (25, "\"ferrorl-checkpoint-v7\" is not supported"),
        (20, "actor.0.weight has shape [4, 64]"),
        (15, "optimizer.exp_avg holds NaN at index 2"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("ckpt-{n:010}")))
            .unwrap_or_else(|| panic!("checkpoint {n} is not named:\n{stderr}"));
        assert!(line.contains("skipping") && line.contains(reason), "{line}");
    }
    assert!(
        stdout.contains("ckpt-0000000010.safetensors (10 of 40 updates"),
        "{stdout}"
    );
    assert!(
        std::fs::read(run.run_dir.join("policy.safetensors")).unwrap()
            == std::fs::read(straight.run_dir.join("policy.safetensors")).unwrap(),
        "continuing from an older valid checkpoint still gives the same weights"
    );

    // With no valid checkpoint at all: an error, and the run left as it was.
    std::fs::remove_file(run.run_dir.join("checkpoints/final.safetensors")).unwrap();
    for entry in std::fs::read_dir(run.run_dir.join("checkpoints")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let i = bytes.len() / 3;
        bytes[i] ^= 0xFF;
        std::fs::write(&path, bytes).unwrap();
    }
    let train_before = std::fs::read(run.run_dir.join("train.csv")).unwrap();
    let out = resume(&run.run_dir, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no valid checkpoint") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(run.run_dir.join("train.csv")).unwrap(),
        train_before
    );
}

#[test]
fn sigkill_during_checkpoint_writes_never_loses_the_previous_checkpoint() {
    // Large networks and a checkpoint after every update: kills land while
    // files are being written. Enough updates that a resumed run on a fast
    // machine (and disk) is still running when the next kill comes.
    let cfg = config(64, 1, "")
        .replace(
            "[eval]",
            "[network]\nactor_hidden = [400, 400]\ncritic_hidden = [400, 400]\n\n[eval]",
        )
        .replace(
            "[run]",
            "[checkpoint]\ninterval_updates = 1\nkeep_last = 2\n\n[run]",
        );
    let straight = straight_run("kill-writes-straight", &cfg);
    let mut run = Run::start("kill-writes", &cfg, &[], &[]);
    run.wait_for_updates(2);
    let run_dir = run.run_dir.clone();
    let mut rng = 7u64;
    let mut kills = 0;
    let mut stale: Vec<PathBuf> = Vec::new();
    for round in 0..8 {
        if round > 0 {
            run.child = Command::new(TRAIN)
                .args(["--resume", run_dir.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
        }
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(300 + (rng >> 33) % 700));
        if run.child.try_wait().unwrap().is_some() {
            break; // Finished before the kill.
        }
        run.signal("KILL", run.child.id());
        let _ = run.child.wait();
        kills += 1;
        run.assert_nothing_left();
        // Every checkpoint on disk reads back whole. A kill between the
        // link and the rename of a replaced file (best.safetensors) can
        // leave its complete `.tmp`; the next resume removes it.
        for entry in std::fs::read_dir(run_dir.join("checkpoints")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                stale.push(path);
                continue;
            }
            Checkpoint::decode(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name} after kill {kills}: {e}"));
        }
    }
    assert!(kills >= 3, "only {kills} kills landed");
    let left_by_kills = stale.len();
    loop {
        let out = resume(&run_dir, Duration::from_secs(300));
        assert!(
            out.status.success(),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        if text(&out.stdout).contains("the run is complete") {
            break;
        }
    }
    for path in &stale {
        assert!(
            !path.exists(),
            "{} was not removed on resume",
            path.display()
        );
    }
    eprintln!("{kills} kills, {left_by_kills} temporary files left by them and removed");
    assert!(
        std::fs::read(run_dir.join("policy.safetensors")).unwrap()
            == std::fs::read(straight.run_dir.join("policy.safetensors")).unwrap(),
        "after {kills} kills the run still ends with the uninterrupted run's weights"
    );
}

#[test]
fn a_checkpoint_that_cannot_be_written_fails_the_run_and_loses_nothing() {
    let cfg = config(40, 1, "").replace("[run]", "[checkpoint]\ninterval_updates = 10\n\n[run]");
    let straight = straight_run("fsize-straight", &cfg);
    let mut run = Run::start("fsize", &cfg, &[], &[]);
    run.wait_for_updates(12);
    run.signal("INT", run.child.id());
    assert_eq!(run.wait(Duration::from_secs(60)), Some(130));
    let stopped_at = run.train_rows().len() as u64;
    let saved: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(run.run_dir.join("checkpoints"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    // A file-size limit below a checkpoint's size: its write fails.
    let limit = saved.iter().map(|(_, b)| b.len()).min().unwrap() as u64 - 1;
    let mut child = Command::new(TRAIN);
    child
        .args(["--resume", run.run_dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        child.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, limit, limit)
                .map_err(std::io::Error::from)
        });
    }
    let out = child.output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}{stderr}", text(&out.stdout));
    // The first checkpoint the resumed run writes: the next multiple of 10
    // after the update the stop left off at, or the best one, if the
    // evaluator reports a new best first.
    let first = format!(
        "checkpoints/ckpt-{:010}.safetensors",
        (stopped_at / 10 + 1) * 10
    );
    assert!(
        (stderr.contains(&first) || stderr.contains("checkpoints/best.safetensors"))
            && stderr.contains("too large"),
        "{first}: {stderr}"
    );
    for (path, bytes) in &saved {
        assert_eq!(
            &std::fs::read(path).unwrap(),
            bytes,
            "{} changed",
            path.display()
        );
    }
    run.assert_nothing_left();
    // Without the limit the run continues and ends as if nothing happened.
    let out = resume(&run.run_dir, Duration::from_secs(300));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        std::fs::read(run.run_dir.join("policy.safetensors")).unwrap()
            == std::fs::read(straight.run_dir.join("policy.safetensors")).unwrap()
    );
}

#[test]
fn a_run_leaves_tensorboard_files_with_every_csv_value_and_a_curve_png() {
    let run = straight_run("files", &config(20, 2, ""));
    let mut scalars = Vec::new();
    for entry in std::fs::read_dir(&run.run_dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains("tfevents")
        {
            scalars.extend(rl_metrics::tensorboard::read_scalars(&path).unwrap());
        }
    }
    let mut expected = 0;
    for (file, prefix) in [("train.csv", "train"), ("eval.csv", "eval")] {
        let table = rl_metrics::csv::read_table(&run.run_dir.join(file)).unwrap();
        let steps = table.column("env_steps").unwrap();
        for row in &table.rows {
            for (name, value) in table.header.iter().zip(row) {
                if name == "env_steps" || !value.is_finite() {
                    continue;
                }
                expected += 1;
                let tag = format!("{prefix}/{name}");
                let found = scalars
                    .iter()
                    .any(|(s, t, v)| *s == row[steps] as i64 && *t == tag && *v == *value as f32);
                assert!(
                    found,
                    "{tag} = {value} at step {} is not in the event files",
                    row[steps]
                );
            }
        }
    }
    assert_eq!(scalars.len(), expected, "nothing but the CSV values");
    let png = std::fs::read(run.run_dir.join("curve.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        960,
        "width"
    );
    assert_eq!(
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
        540,
        "height"
    );
}

#[test]
fn evaluate_plays_policies_and_checkpoints_and_names_a_bad_file() {
    let run = straight_run("evaluate", &config(12, 0, ""));
    let eval = |args: &[&str]| Command::new(EVALUATE).args(args).output().unwrap();
    let policy = run.run_dir.join("policy.safetensors");
    let out = eval(&[policy.to_str().unwrap(), "--episodes", "3", "--seed", "5"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("episode ")).count(),
        3,
        "{stdout}"
    );
    assert!(
        stdout.contains("mean return") && stdout.contains("over 3 episodes"),
        "{stdout}"
    );
    let final_ckpt = run.run_dir.join("checkpoints/final.safetensors");
    let from_ckpt = text(
        &eval(&[
            final_ckpt.to_str().unwrap(),
            "--episodes",
            "3",
            "--seed",
            "5",
        ])
        .stdout,
    );
    let returns = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with("episode "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        returns(&from_ckpt),
        returns(&stdout),
        "the final checkpoint holds the final policy"
    );
    let render = text(&eval(&[policy.to_str().unwrap(), "--episodes", "1", "--render"]).stdout);
    assert!(
        render.contains("#####") && render.contains("angle"),
        "{render}"
    );

    let mut bytes = std::fs::read(&final_ckpt).unwrap();
    let i = bytes.len() - 100;
    bytes[i] ^= 1;
    let bad = run.scratch.0.join("bad.safetensors");
    std::fs::write(&bad, bytes).unwrap();
    let out = eval(&[bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.safetensors") && stderr.contains("checksum"),
        "{stderr}"
    );
    let out = eval(&[policy.to_str().unwrap(), "--env", "Pendulum-v1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Pendulum-v1 has observations of 3 values"));
}

#[test]
fn curves_follows_runs_and_never_crashes_on_missing_or_partial_files() {
    let snapshot = |dirs: &[&Path]| {
        let mut args: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        args.extend(["--snapshot".into(), "100x30".into()]);
        Command::new(CURVES).args(&args).output().unwrap()
    };
    let missing = Path::new("/nonexistent/run");
    let out = snapshot(&[missing]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/run: no such run directory"));

    let scratch = Scratch::new("curves-empty");
    let out = snapshot(&[&scratch.0]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("waiting for the first rows"),
        "{}",
        text(&out.stdout)
    );

    let run = straight_run("curves", &config(12, 0, ""));
    // A row being written: no newline yet.
    let mut eval = std::fs::OpenOptions::new()
        .append(true)
        .open(run.run_dir.join("eval.csv"))
        .unwrap();
    eval.write_all(b"9.5,99999,7").unwrap();
    drop(eval);
    let other = straight_run("curves-2", &config(8, 0, ""));
    let out = snapshot(&[&run.run_dir, &other.run_dir]);
    let frame = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for needle in [
        "CartPole-v1",
        "eval return",
        "train episode return",
        "[finished]",
        "steps 1536/1536 (100%)",
        "envs 4, workers 0",
    ] {
        assert!(frame.contains(needle), "{needle:?} not in\n{frame}");
    }
    assert!(
        !frame.contains("99999") && !frame.contains("100k"),
        "the partial row is ignored:\n{frame}"
    );

    // The live view in a terminal: it draws, switches axis on `t`, quits on `q`.
    let size = nix::pty::Winsize {
        ws_row: 30,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    // Killed and reaped however the test ends, a failed assertion included.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new(CURVES)
            .arg(&run.run_dir)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap(),
    );
    let mut master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&output);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let seen = |needle: &str| String::from_utf8_lossy(&output.lock().unwrap()).contains(needle);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen("latest") {
        assert!(Instant::now() < deadline, "the live view drew nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Ratatui redraws only the cells that change: look for the new footer
    // text in what came after the key.
    let before_t = output.lock().unwrap().len();
    master.write_all(b"t").unwrap();
    let seen_after = |needle: &str| {
        String::from_utf8_lossy(&output.lock().unwrap()[before_t..]).contains(needle)
    };
    while !seen_after("tim") {
        assert!(Instant::now() < deadline, "t did not switch the axis");
        std::thread::sleep(Duration::from_millis(50));
    }
    master.write_all(b"q").unwrap();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(Instant::now() < deadline, "q did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
}
