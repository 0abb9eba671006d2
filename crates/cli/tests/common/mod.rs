//! Helpers of the integration tests that run `train` for real: a scratch
//! directory, a running `train` with its output in files, the processes of
//! a run found through `/proc`, and the check that nothing of a run is left.

#![allow(dead_code, clippy::unwrap_used)] // Each test file uses what it needs.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub const TRAIN: &str = env!("CARGO_BIN_EXE_train");

/// A scratch directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rl-mp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `train` process writing into a scratch directory.
pub struct Run {
    pub scratch: Scratch,
    pub run_dir: PathBuf,
    pub child: Child,
    pub shm_before: BTreeSet<String>,
    /// Every process of the run seen so far.
    pub seen: BTreeSet<u32>,
}

pub fn shm_entries() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Run {
    pub fn start(name: &str, config_text: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        Run::spawn(name, config_text, args, env, false)
    }

    /// `train` as the leader of its own process group, as a shell job,
    /// `timeout`, systemd or Slurm start it: signals can go to the group.
    pub fn start_in_own_group(
        name: &str,
        config_text: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Run {
        Run::spawn(name, config_text, args, env, true)
    }

    fn spawn(
        name: &str,
        config_text: &str,
        args: &[&str],
        env: &[(&str, &str)],
        own_group: bool,
    ) -> Run {
        let scratch = Scratch::new(name);
        let cfg = scratch.0.join("cfg.toml");
        std::fs::write(&cfg, config_text).unwrap();
        let run_dir = scratch.0.join("run");
        let shm_before = shm_entries();
        let mut command = Command::new(TRAIN);
        command
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "--run-dir",
                run_dir.to_str().unwrap(),
            ])
            .args(args)
            .env_remove("FERRORL_FAULT")
            .stdout(File::create(scratch.0.join("stdout")).unwrap())
            .stderr(File::create(scratch.0.join("stderr")).unwrap());
        for (k, v) in env {
            command.env(k, v);
        }
        if own_group {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        let child = command.spawn().unwrap();
        let mut seen = BTreeSet::new();
        seen.insert(child.id());
        Run {
            scratch,
            run_dir,
            child,
            shm_before,
            seen,
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.scratch.0.join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.scratch.0.join("stderr")).unwrap_or_default()
    }

    pub fn output(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr())
    }

    /// The processes a run started, by role name (`rl-worker-0`, ...):
    /// every process whose command line names this run directory.
    pub fn children(&mut self) -> Vec<(u32, String)> {
        let found = processes_naming(&self.run_dir);
        self.seen.extend(found.iter().map(|(pid, _)| *pid));
        found
    }

    pub fn pid_of(&mut self, role: &str) -> Option<u32> {
        self.children()
            .into_iter()
            .find(|(_, name)| name == role)
            .map(|(pid, _)| pid)
    }

    pub fn wait_for_pid(&mut self, role: &str) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(pid) = self.pid_of(role) {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "no {role} process\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn train_rows(&self) -> Vec<Vec<String>> {
        csv_rows(&self.run_dir.join("train.csv"))
    }

    pub fn eval_rows(&self) -> Vec<Vec<String>> {
        csv_rows(&self.run_dir.join("eval.csv"))
    }

    pub fn wait_for_updates(&mut self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.train_rows().len() < n {
            self.children();
            assert!(
                Instant::now() < deadline,
                "fewer than {n} updates\n{}",
                self.output()
            );
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "train exited early\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `train` to exit with `code`.
    pub fn expect_exit(&mut self, code: i32, limit: Duration) {
        let got = self.wait(limit);
        assert_eq!(got, Some(code), "{}", self.output());
    }

    /// Waits for `train` to exit and returns its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            self.children();
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "train did not exit within {limit:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str, pid: u32) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// `kill -SIGNAL -- -PGID`: every process of the run at once (see
    /// [`Run::start_in_own_group`]).
    pub fn signal_group(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let status = Command::new("kill")
            .args([&format!("-{signal}"), "--", &group])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} -- {group}");
    }

    /// Waits until `stderr` contains `text`.
    pub fn wait_for_stderr(&mut self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stderr().contains(text) {
            self.children();
            assert!(
                Instant::now() < deadline,
                "no {text:?} within {limit:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// No process of the run is left (running or zombie), no shared-memory
    /// segment appeared, no temporary file is in the run directory.
    pub fn assert_nothing_left(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let running = processes_naming(&self.run_dir);
            let alive: Vec<(u32, char)> = self
                .seen
                .iter()
                .filter_map(|pid| process_state(*pid).map(|s| (*pid, s)))
                .collect();
            if running.is_empty() && alive.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "left behind: {running:?}, pids (state) {alive:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(shm_entries(), self.shm_before, "a /dev/shm entry appeared");
        if let Ok(entries) = std::fs::read_dir(&self.run_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                assert!(!name.ends_with(".tmp"), "temporary file {name} left behind");
            }
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// `(pid, name)` of every process whose command line contains `dir`.
pub fn processes_naming(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.contains(&needle) && args.iter().any(|a| a == "--ferrorl-child") {
            let name = std::fs::read_to_string(entry.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            found.push((pid, name));
        }
    }
    found
}

/// The state letter of a process (`R`, `S`, `T`, `Z`, ...), if it exists.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    after_name.trim_start().chars().next()
}

/// Column `i` of every row.
pub fn column(rows: &[Vec<String>], i: usize) -> Vec<String> {
    rows.iter().map(|r| r[i].clone()).collect()
}

/// Runs `train` (or another of our binaries) with `args` to its end, within
/// `limit`.
pub fn run_to_end(binary: &str, args: &[&str], limit: Duration) -> std::process::Output {
    let mut child = Command::new(binary)
        .args(args)
        .env_remove("FERRORL_FAULT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{binary} {args:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Standard output and error of a finished command, for messages.
pub fn shown(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A small CartPole config: 4 envs, 32 steps each, 2 minibatches, 2 epochs
/// (128 env steps an update), `updates` updates, evaluations of 2 episodes.
/// Each of `settings` (`"run.num_workers = 2"`) sets a value, replacing the
/// base's own.
pub fn cartpole_config(updates: u64, settings: &[&str]) -> String {
    let total = format!("run.total_timesteps = {}", updates * 128);
    let base = [
        "env.id = \"CartPole-v1\"",
        "env.num_envs = 4",
        &total,
        "ppo.num_steps = 32",
        "ppo.num_minibatches = 2",
        "ppo.update_epochs = 2",
        "eval.episodes = 2",
    ];
    let mut values: Vec<(String, String, String)> = Vec::new();
    for line in base.iter().copied().chain(settings.iter().copied()) {
        let (path, value) = line.split_once('=').unwrap();
        let (table, key) = path.trim().split_once('.').unwrap();
        let (table, key, value) = (table.to_string(), key.to_string(), value.trim().to_string());
        match values.iter_mut().find(|(t, k, _)| *t == table && *k == key) {
            Some(existing) => existing.2 = value,
            None => values.push((table, key, value)),
        }
    }
    let mut text = String::new();
    for table in ["env", "network", "ppo", "eval", "checkpoint", "run"] {
        let lines: Vec<String> = values
            .iter()
            .filter(|(t, _, _)| t == table)
            .map(|(_, k, v)| format!("{k} = {v}\n"))
            .collect();
        if !lines.is_empty() {
            text += &format!("[{table}]\n{}\n", lines.concat());
        }
    }
    text
}

/// Every column of `train.csv` rows but the timing ones (`time_s`,
/// `steps_per_s`).
pub fn deterministic_columns(rows: &[Vec<String>]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .filter(|(i, _)| *i != 0 && *i != 3)
                .map(|(_, v)| v.clone())
                .collect()
        })
        .collect()
}
