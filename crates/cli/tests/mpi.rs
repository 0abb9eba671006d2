//! `train` under a real `mpirun` (OpenMPI), K ranks on this machine
//! (`--oversubscribe`): K = 1 equals a run without `mpirun` bit for bit,
//! K = 2 and 3 learn CartPole to 475 while every update compares the
//! ranks' weight checksums (a mismatch fails the run), rank 0 alone writes
//! the run directory, each rank runs its own worker processes as one
//! process would (bit for bit), and nothing of any rank is left after a
//! rank or one of its workers is killed. Built only with the `mpi` feature (`scripts/test` runs it when
//! `scripts/setup --mpi`'s packages are there; CI makes sure they are).

#![cfg(feature = "mpi")]
#![allow(clippy::unwrap_used)] // Tests unwrap: a panic is the failure report.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{csv_rows, deterministic_columns, shown, Scratch, TRAIN};

/// `mpirun -np K train ARGS`, to its end within `limit`.
fn mpirun(k: usize, args: &[&str], limit: Duration) -> std::process::Output {
    let child = mpirun_command(k, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun (scripts/setup --mpi installs OpenMPI)");
    wait_with_limit(child, limit)
}

fn mpirun_command(k: usize, args: &[&str]) -> Command {
    let mut command = Command::new("mpirun");
    // Root in containers and CI; more ranks than cores on this machine; a
    // rank's workers are its children and run on its cores (mpirun binds
    // each of two ranks to one core by default).
    command
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "--bind-to",
            "none",
            "-np",
        ])
        .arg(k.to_string())
        .arg(TRAIN)
        .args(args)
        .env_remove("FERRORL_FAULT");
    command
}

fn wait_with_limit(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("mpirun did not finish within {limit:?}\n{}", shown(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn train_args<'a>(run_dir: &'a str, total: &'a str) -> Vec<&'a str> {
    vec![
        "--config",
        "../../configs/ppo.toml",
        "--run-dir",
        run_dir,
        "--set",
        "run.num_workers=0",
        "--set",
        total,
    ]
}

/// The same arguments with `workers` worker processes per rank.
fn with_workers<'a>(mut args: Vec<&'a str>, workers: &'a str) -> Vec<&'a str> {
    for a in &mut args {
        if *a == "run.num_workers=0" {
            *a = workers;
        }
    }
    args
}

/// The names (`/proc/PID/comm`) of the processes whose command line names
/// `dir`, with the MPI rank each was started under (`train` and its
/// children inherit the launcher's `OMPI_COMM_WORLD_RANK`).
fn roles_naming(dir: &Path) -> Vec<(String, String)> {
    processes_naming(dir)
        .into_iter()
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let rank = String::from_utf8_lossy(&environ)
                .split('\0')
                .find_map(|v| v.strip_prefix("OMPI_COMM_WORLD_RANK=").map(str::to_string))?;
            // A child is `exe` (it runs /proc/self/exe) until it names
            // itself.
            let comm = comm.trim();
            (comm != "exe").then(|| (rank, comm.to_string()))
        })
        .collect()
}

/// Waits up to 10 s until no process names `dir`; fails naming those left
/// (and `context`, the run's output).
fn assert_nothing_left(dir: &Path, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_naming(dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left running: {:?}\n{context}",
            processes_naming(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every process whose command line names `dir`.
fn processes_naming(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(pid)
        })
        .collect()
}

#[test]
fn one_rank_under_mpirun_is_bit_identical_to_no_mpirun() {
    let scratch = Scratch::new("mpi-k1");
    let (a, b) = (scratch.0.join("mpirun"), scratch.0.join("plain"));
    let (a_s, b_s) = (a.to_string_lossy(), b.to_string_lossy());
    let out = mpirun(
        1,
        &train_args(&a_s, "run.total_timesteps=4096"),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", shown(&out));
    let out = common::run_to_end(
        TRAIN,
        &train_args(&b_s, "run.total_timesteps=4096"),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(
        std::fs::read(a.join("policy.safetensors")).unwrap(),
        std::fs::read(b.join("policy.safetensors")).unwrap(),
        "policy.safetensors"
    );
    let rows = |dir: &Path| deterministic_columns(&csv_rows(&dir.join("train.csv")));
    assert_eq!(rows(&a), rows(&b), "train.csv but its timing columns");
}

#[test]
fn worker_processes_in_each_rank_train_as_one_process_per_rank_does() {
    // Two ranks with two worker processes each (the learner's collectives
    // relayed through its supervisor, the MPI process) against two ranks
    // that step their envs in the learner: the same weights and train.csv
    // bit for bit, as for one machine.
    let scratch = Scratch::new("mpi-workers");
    let (a, b) = (scratch.0.join("workers"), scratch.0.join("one"));
    let (a_s, b_s) = (a.to_string_lossy(), b.to_string_lossy());
    let args = with_workers(
        train_args(&a_s, "run.total_timesteps=16384"),
        "run.num_workers=2",
    );
    let child = mpirun_command(2, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Who runs, rank by rank, while it trains.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "not done within 180 s");
        seen.extend(roles_naming(&a));
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = shown(&out);
    assert!(out.status.success(), "{text}");
    let expected: std::collections::BTreeSet<(String, String)> = [
        ("0", "train"),
        ("0", "rl-learner"),
        ("0", "rl-worker-0"),
        ("0", "rl-worker-1"),
        ("0", "rl-evaluator"),
        ("1", "train"),
        ("1", "rl-learner"),
        ("1", "rl-worker-0"),
        ("1", "rl-worker-1"),
    ]
    .iter()
    .map(|(r, c)| (r.to_string(), c.to_string()))
    .collect();
    assert_eq!(seen, expected, "{text}");
    assert!(text.contains("mpi: per update"), "{text}");
    assert_eq!(text.matches("done: ").count(), 1, "{text}");
    assert!(
        roles_naming(&a).is_empty(),
        "left running: {:?}",
        roles_naming(&a)
    );
    let out = mpirun(
        2,
        &train_args(&b_s, "run.total_timesteps=16384"),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(
        std::fs::read(a.join("policy.safetensors")).unwrap(),
        std::fs::read(b.join("policy.safetensors")).unwrap(),
        "policy.safetensors"
    );
    let rows = |dir: &Path| deterministic_columns(&csv_rows(&dir.join("train.csv")));
    assert_eq!(rows(&a), rows(&b), "train.csv but its timing columns");
    // Rank 0's evaluator process evaluates the final version at the run's
    // global env steps with the same returns as the in-process evaluation
    // (earlier points it may skip when training outpaces it).
    let last_eval = |dir: &Path| -> Vec<String> {
        csv_rows(&dir.join("eval.csv")).pop().unwrap()[1..].to_vec()
    };
    assert_eq!(last_eval(&a), last_eval(&b), "eval.csv's last row");
    assert_eq!(last_eval(&a)[0], "16384");
}

#[test]
fn a_resumed_run_of_two_ranks_is_bit_identical_to_an_uninterrupted_one() {
    // Rank 0's checkpoints hold every rank's envs: a run cut back to its
    // periodic checkpoint and resumed on two ranks equals the run that was
    // not stopped, with each rank in one process and with workers.
    for workers in ["run.num_workers=0", "run.num_workers=2"] {
        let scratch = Scratch::new("mpi-resume");
        let dir = scratch.0.join("run");
        let dir_s = dir.to_string_lossy().into_owned();
        let mut args = with_workers(train_args(&dir_s, "run.total_timesteps=16384"), workers);
        args.extend(["--set", "checkpoint.interval_updates=8"]);
        let out = mpirun(2, &args, Duration::from_secs(180));
        assert!(out.status.success(), "{workers}: {}", shown(&out));
        let policy = || std::fs::read(dir.join("policy.safetensors")).unwrap();
        let rows = || deterministic_columns(&csv_rows(&dir.join("train.csv")));
        let expected = (policy(), rows());
        // 32 updates: back to the checkpoint after 16.
        let checkpoints = dir.join("checkpoints");
        for name in ["final", "best", "ckpt-0000000024"] {
            let _ = std::fs::remove_file(checkpoints.join(format!("{name}.safetensors")));
        }
        assert!(checkpoints.join("ckpt-0000000016.safetensors").exists());
        let out = mpirun(2, &["--resume", &dir_s], Duration::from_secs(180));
        let text = shown(&out);
        assert!(out.status.success(), "{workers}: {text}");
        assert!(text.contains("ckpt-0000000016"), "{workers}: {text}");
        assert!(!text.contains("start new episodes"), "{workers}: {text}");
        assert!(
            (policy(), rows()) == expected,
            "{workers}: the resumed run differs from the uninterrupted one"
        );
    }
}

/// The process named `comm` that rank `rank` started (or is) in the run
/// writing `dir`.
fn pid_of(dir: &Path, rank: &str, comm: &str) -> Option<u32> {
    processes_naming(dir).into_iter().find(|pid| {
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        name.trim() == comm
            && String::from_utf8_lossy(&environ).contains(&format!("OMPI_COMM_WORLD_RANK={rank}\0"))
    })
}

/// Starts a long two-rank run with `workers` and waits until it trains.
fn two_ranks_training(dir: &Path, workers: &str, extra: &[&str]) -> std::process::Child {
    let dir_s = dir.to_string_lossy().into_owned();
    let mut args = with_workers(train_args(&dir_s, "run.total_timesteps=100000000"), workers);
    args.extend(extra);
    let mut child = mpirun_command(2, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while csv_rows(&dir.join("train.csv")).len() < 3 {
        assert!(child.try_wait().unwrap().is_none(), "ended while starting");
        assert!(Instant::now() < deadline, "no training within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn a_stop_asked_of_one_rank_stops_every_rank_at_the_same_update() {
    // SIGTERM to rank 1's train alone (a user's kill, a node's shutdown):
    // its vote stops both ranks at the same minibatch, and rank 0 saves.
    for workers in ["run.num_workers=0", "run.num_workers=2"] {
        let scratch = Scratch::new("mpi-stop-one");
        let dir = scratch.0.join("run");
        let child = two_ranks_training(&dir, workers, &[]);
        let rank1 = pid_of(&dir, "1", "train").expect("rank 1's train");
        let _ = Command::new("kill")
            .args(["-TERM", &rank1.to_string()])
            .status();
        let out = wait_with_limit(child, Duration::from_secs(60));
        let text = shown(&out);
        assert!(text.contains("interrupted after"), "{workers}: {text}");
        // "interrupted after N env steps (U updates); weights saved in
        // ..., state in <the stop checkpoint>".
        assert!(text.contains(", state in "), "{workers}: {text}");
        assert_nothing_left(&dir, &format!("{workers}: {text}"));
    }
}

#[test]
fn a_learner_waiting_for_a_stuck_rank_is_not_the_one_blamed() {
    // Rank 1's learner stops (SIGSTOP); rank 0's learner waits for it in a
    // collective, sending heartbeats, so only rank 1's supervisor finds
    // its learner stuck ([run] learner_timeout_s = 4) and ends the job.
    let scratch = Scratch::new("mpi-stuck");
    let dir = scratch.0.join("run");
    let child = two_ranks_training(
        &dir,
        "run.num_workers=2",
        &["--set", "run.learner_timeout_s=4"],
    );
    let learner = pid_of(&dir, "1", "rl-learner").expect("rank 1's learner");
    let _ = Command::new("kill")
        .args(["-STOP", &learner.to_string()])
        .status();
    let out = wait_with_limit(child, Duration::from_secs(90));
    let text = shown(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("(rank 1) train: the learner made no progress for 4 s"),
        "{text}"
    );
    assert!(
        text.lines()
            .filter(|l| l.contains("made no progress"))
            .all(|l| l.contains("(rank 1)")),
        "only rank 1's learner is stuck: {text}"
    );
    assert_nothing_left(&dir, &text);
}

#[test]
fn a_killed_worker_of_one_rank_is_replaced_and_the_run_goes_on() {
    let scratch = Scratch::new("mpi-worker-kill");
    let dir = scratch.0.join("run");
    let dir_s = dir.to_string_lossy().into_owned();
    let args = with_workers(
        train_args(&dir_s, "run.total_timesteps=40960"),
        "run.num_workers=2",
    );
    let mut child = mpirun_command(2, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once it trains (a row in train.csv), SIGKILL rank 1's worker 1.
    let deadline = Instant::now() + Duration::from_secs(120);
    let victim = loop {
        assert!(child.try_wait().unwrap().is_none(), "ended before the kill");
        assert!(Instant::now() < deadline, "no training within 120 s");
        let trains = !csv_rows(&dir.join("train.csv")).is_empty();
        let found = processes_naming(&dir).into_iter().find(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            comm.trim() == "rl-worker-1"
                && String::from_utf8_lossy(&environ).contains("OMPI_COMM_WORLD_RANK=1\0")
        });
        match found {
            Some(pid) if trains => break pid,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let _ = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status();
    let out = wait_with_limit(child, Duration::from_secs(180));
    let text = shown(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("(rank 1) train: worker 1"), "{text}");
    assert!(text.contains("replacing it"), "{text}");
    assert_eq!(text.matches("done: ").count(), 1, "{text}");
    assert!(roles_naming(&dir).is_empty(), "{:?}", roles_naming(&dir));
}

/// K ranks (with `workers`) train CartPole with `total` global env steps;
/// returns the best evaluation and the run directory's entries.
fn learn(k: usize, total: u64, workers: &str) -> (f64, Vec<String>) {
    let scratch = Scratch::new(&format!("mpi-k{k}"));
    let dir = scratch.0.join("run");
    let dir_s = dir.to_string_lossy().into_owned();
    let total = format!("run.total_timesteps={total}");
    let mut args = with_workers(train_args(&dir_s, &total), workers);
    args.extend(["--set", "eval.interval_steps=6144"]);
    let out = mpirun(k, &args, Duration::from_secs(300));
    assert!(out.status.success(), "K = {k}: {}", shown(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Rank 0 alone prints the run (one "done" line, one run directory).
    assert_eq!(stdout.matches("done: ").count(), 1, "K = {k}: {stdout}");
    let best = csv_rows(&dir.join("eval.csv"))
        .iter()
        .map(|r| r[3].parse::<f64>().unwrap())
        .fold(f64::MIN, f64::max);
    let mut entries: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("events.out"))
        .collect();
    entries.sort();
    (best, entries)
}

#[test]
fn two_and_three_ranks_learn_cartpole_with_identical_weights() {
    // K ranks take one update per K * 256 env steps: 50k steps per rank's
    // worth of updates (195, as one rank in 50k) for K = 3, 50k for K = 2.
    // Every update compared the ranks' weight checksums: a run that
    // finishes had identical weights on every rank after every update.
    // K = 2 as configs/ppo.toml is shipped (two worker processes per
    // rank), K = 3 with each rank in one process (12 processes on this
    // 2-core machine would mostly measure its scheduler).
    for (k, total, workers) in [
        (2, 50_000, "run.num_workers=2"),
        (3, 150_000, "run.num_workers=0"),
    ] {
        let (best, entries) = learn(k, total, workers);
        assert!(best >= 475.0, "K = {k}: best evaluation {best}");
        assert_eq!(
            entries,
            [
                "best_policy.safetensors",
                "checkpoints",
                "config.toml",
                "curve.png",
                "eval.csv",
                "policy.safetensors",
                "train.csv"
            ],
            "K = {k}: only rank 0's files"
        );
    }
}

#[test]
fn a_killed_rank_ends_the_job_and_leaves_nothing() {
    // Ranks of one process, and ranks with worker processes (which die
    // with their rank's supervisor).
    for workers in ["run.num_workers=0", "run.num_workers=2"] {
        a_killed_rank_ends_the_job(workers);
    }
}

fn a_killed_rank_ends_the_job(workers: &str) {
    let scratch = Scratch::new("mpi-kill");
    let dir = scratch.0.join("run");
    let dir_s = dir.to_string_lossy().into_owned();
    let mut args = with_workers(train_args(&dir_s, "run.total_timesteps=100000000"), workers);
    args.extend(["--set", "checkpoint.interval_updates=5"]);
    let child = mpirun_command(2, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a periodic checkpoint, then kill rank 1.
    let deadline = Instant::now() + Duration::from_secs(60);
    let periodic = |d: std::fs::ReadDir| {
        d.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("ckpt-") && name.ends_with(".safetensors")
        })
    };
    while !std::fs::read_dir(dir.join("checkpoints"))
        .map(periodic)
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "no checkpoint within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ranks = processes_naming(&dir);
    let trains: Vec<u32> = ranks
        .iter()
        .copied()
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            comm.trim() == "train"
                && std::fs::read_to_string(format!("/proc/{pid}/environ"))
                    .map(|e| e.contains("OMPI_COMM_WORLD_RANK=1\0"))
                    .unwrap_or(false)
        })
        .collect();
    assert_eq!(trains.len(), 1, "rank 1 among {ranks:?}");
    let _ = Command::new("kill")
        .args(["-KILL", &trains[0].to_string()])
        .status();
    let out = wait_with_limit(child, Duration::from_secs(60));
    assert!(!out.status.success(), "{}", shown(&out));
    // Nothing of the job is left.
    assert_nothing_left(&dir, "");
    // The last periodic checkpoint still loads: one rank resumes from it.
    let out = mpirun(
        1,
        &["--resume", &dir_s, "--set", "run.total_timesteps=20000"],
        Duration::from_secs(120),
    );
    let text = shown(&out);
    assert!(
        out.status.success() && text.contains("resuming from"),
        "{text}"
    );
}

#[test]
fn ctrl_c_to_mpirun_stops_every_rank_with_a_final_checkpoint() {
    for workers in ["run.num_workers=0", "run.num_workers=2"] {
        ctrl_c_stops_every_rank(workers);
    }
}

fn ctrl_c_stops_every_rank(workers: &str) {
    let scratch = Scratch::new("mpi-int");
    let dir = scratch.0.join("run");
    let dir_s = dir.to_string_lossy().into_owned();
    let args = with_workers(train_args(&dir_s, "run.total_timesteps=100000000"), workers);
    let child = mpirun_command(2, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Training: the first evaluation is in eval.csv.
    let deadline = Instant::now() + Duration::from_secs(60);
    while csv_rows(&dir.join("eval.csv")).is_empty() {
        assert!(Instant::now() < deadline, "no evaluation within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Ctrl-C: the terminal sends SIGINT to mpirun, which sends SIGTERM to
    // every rank; the ranks vote to stop at the same minibatch.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = wait_with_limit(child, Duration::from_secs(60));
    let text = shown(&out);
    assert!(text.contains("interrupted after"), "{workers}: {text}");
    assert_nothing_left(&dir, &text);
    // The stop checkpoint continues the run, on two ranks again (rank 0
    // resolves the resume and hands the others its checkpoint).
    let out = mpirun(
        2,
        &["--resume", &dir_s, "--set", "run.total_timesteps=60000"],
        Duration::from_secs(120),
    );
    let text = shown(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("resuming from").count(), 1, "{text}");
    assert_eq!(text.matches("done: ").count(), 1, "{text}");
}

/// Two hosts on one machine (`scripts/mpi-netns`): a rank in each of two
/// network namespaces joined by a veth pair, MPI over TCP. The run equals
/// the same two ranks over shared memory bit for bit, and its gradients
/// crossed the veth.
#[test]
fn two_ranks_in_two_network_namespaces_train_over_tcp_as_over_shared_memory() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let scratch = Scratch::new("mpi-netns");
    let (tcp, shm) = (scratch.0.join("tcp"), scratch.0.join("shm"));
    let (tcp_s, shm_s) = (tcp.to_string_lossy(), shm.to_string_lossy());
    let out = Command::new("../../scripts/mpi-netns")
        .args(train_args(&tcp_s, "run.total_timesteps=4096"))
        .env("FERRORL_TRAIN", TRAIN)
        .env_remove("FERRORL_FAULT")
        .output()
        .unwrap();
    let text = shown(&out);
    if out.status.code() == Some(77) {
        eprintln!("skipped: {text}");
        return;
    }
    assert!(out.status.success(), "{text}");
    let sent: u64 = text
        .split("mpi-netns: ")
        .nth(1)
        .and_then(|t| t.split(" sent ").nth(1))
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count: {text}"));
    let per_update: u64 = text
        .split("collectives, ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no mpi: line: {text}"));
    // 4096 steps = 8 updates of 2 ranks x 256 steps.
    assert!(sent >= 8 * per_update, "{sent} bytes over the veth: {text}");
    let out = mpirun(
        2,
        &train_args(&shm_s, "run.total_timesteps=4096"),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(
        std::fs::read(tcp.join("policy.safetensors")).unwrap(),
        std::fs::read(shm.join("policy.safetensors")).unwrap(),
        "the same run over TCP and over shared memory"
    );
    let rows = |dir: &Path| deterministic_columns(&csv_rows(&dir.join("train.csv")));
    assert_eq!(rows(&tcp), rows(&shm));
}

#[test]
fn a_refused_config_ends_every_rank_at_once() {
    // Rank 0 refuses (an off-policy algorithm does not train on more than
    // one rank yet) and tells the others to exit with its code: nobody
    // waits.
    let scratch = Scratch::new("mpi-refused");
    let dir = scratch.0.join("run");
    let dir_s = dir.to_string_lossy().into_owned();
    let args = [
        "--config",
        "../../configs/dqn_cartpole.toml",
        "--run-dir",
        &dir_s,
    ];
    let out = mpirun(3, &args, Duration::from_secs(60));
    let text = shown(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(
        text.matches("only PPO trains on more than one rank")
            .count(),
        1,
        "rank 0 says why, once: {text}"
    );
    assert!(!dir.exists(), "no run directory: {text}");
}
