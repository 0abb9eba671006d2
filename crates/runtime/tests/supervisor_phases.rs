//! Guards the supervisor's phases without any child process: the test
//! starts the supervisor with a spawner whose children are socket pairs and
//! stand-in processes, and plays the learner, the workers and the evaluator
//! itself. Training -> finishing (the final evaluation) -> done; a stop;
//! a failed worker restarted and joined to the learner; a silent learner.

#![allow(clippy::unwrap_used)]

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rl_env::Registry;
use rl_ipc::messages::{
    recv_json, send_json, EvalReport, EvaluatorToSupervisor, LearnerToSupervisor, RunReport, Setup,
    SupervisorToEvaluator, SupervisorToLearner,
};
use rl_ipc::Channel;
use rl_runtime::processes::child::{ChildHandle, ChildProcess, Spawn};
use rl_runtime::processes::supervisor::train_with_spawner;
use rl_runtime::{
    Ending, EvalResult, Observer, Progress, Requests, RunDir, RuntimeError, TrainSettings,
    TrainSummary,
};

/// A stand-in process: exits when the test (or a kill) says so.
#[derive(Default)]
struct Fate {
    exit: Option<ExitStatus>,
    killed: bool,
    interrupted: bool,
}

struct StandIn {
    id: u32,
    fate: Arc<Mutex<Fate>>,
}

impl ChildProcess for StandIn {
    fn id(&self) -> u32 {
        self.id
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        Ok(self.fate.lock().unwrap().exit)
    }

    fn kill(&mut self) {
        let mut fate = self.fate.lock().unwrap();
        fate.killed = true;
        fate.exit.get_or_insert(ExitStatus::from_raw(9));
    }

    fn interrupt(&mut self) {
        self.fate.lock().unwrap().interrupted = true;
    }

    fn wait(&mut self) {}
}

/// A child the supervisor started: its role, its end of the control
/// channel, what it was sent, and its fate.
struct Played {
    role: String,
    channel: Channel,
    setup: Setup,
    fate: Arc<Mutex<Fate>>,
}

#[derive(Clone, Default)]
struct Children(Arc<Mutex<Vec<Arc<Played>>>>);

impl Spawn for Children {
    fn spawn(
        &mut self,
        role: &str,
        _run_dir: &Path,
        setup: &Setup,
        fds: &[BorrowedFd<'_>],
    ) -> Result<ChildHandle, RuntimeError> {
        let (supervisor_end, child_end) = Channel::pair()?;
        let _kept: Vec<OwnedFd> = fds
            .iter()
            .map(|fd| fd.try_clone_to_owned().unwrap())
            .collect();
        let fate = Arc::new(Mutex::new(Fate::default()));
        let mut all = self.0.lock().unwrap();
        all.push(Arc::new(Played {
            role: role.to_string(),
            channel: child_end,
            setup: setup.clone(),
            fate: Arc::clone(&fate),
        }));
        Ok(ChildHandle {
            process: Box::new(StandIn {
                id: u32::MAX - all.len() as u32,
                fate,
            }),
            control: supervisor_end,
        })
    }
}

impl Children {
    /// The `n`th child started with `role` (0: the first), waiting for it.
    fn get(&self, role: &str, n: usize) -> Arc<Played> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.role == role)
                .nth(n)
                .cloned();
            if let Some(child) = found {
                return child;
            }
            assert!(
                Instant::now() < deadline,
                "no {role} number {n} was started"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every child started so far exits with status 0.
    fn all_exit(&self) {
        for child in self.0.lock().unwrap().iter() {
            child.exit(0);
        }
    }

    fn count(&self, role: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.role == role)
            .count()
    }
}

impl Played {
    fn say<M: serde::Serialize>(&self, message: &M) {
        send_json(&self.channel, message, &[]).unwrap();
    }

    /// The next message the supervisor sent this child, within 10 s.
    fn heard<M: serde::de::DeserializeOwned>(&self) -> M {
        let mut buf = Vec::new();
        recv_json(&self.channel, &mut buf, Some(Duration::from_secs(10)))
            .map(|(m, _)| m)
            .unwrap_or_else(|e| panic!("{} heard nothing: {e}", self.role))
    }

    fn exit(&self, code: i32) {
        self.fate.lock().unwrap().exit = Some(ExitStatus::from_raw(code << 8));
    }
}

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Observer for Seen {
    fn on_update(&mut self, progress: &Progress, _: &rl_algo::algorithm::Stats) {
        self.0
            .lock()
            .unwrap()
            .push(format!("update {}", progress.updates));
    }

    fn on_eval(&mut self, _: &Progress, eval: &EvalResult) {
        self.0
            .lock()
            .unwrap()
            .push(format!("eval {}", eval.policy_version));
    }

    fn on_message(&mut self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

struct Supervised {
    children: Children,
    requests: Arc<Requests>,
    seen: Seen,
    result: std::thread::JoinHandle<Result<TrainSummary, RuntimeError>>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The supervisor of a 2-worker CartPole run with `run_settings` added to
/// `[run]`, in a thread.
fn supervise(name: &str, run_settings: &str) -> Supervised {
    let dir = std::env::temp_dir().join(format!("rl-supervisor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let settings: TrainSettings = toml::from_str(&format!(
        "[env]\nid = \"CartPole-v1\"\nnum_envs = 4\n[run]\ntotal_timesteps = 4096\nnum_workers = 2\nrestart_backoff_s = 0.01\n{run_settings}\n"
    ))
    .unwrap();
    let children = Children::default();
    let requests = Arc::new(Requests::default());
    let seen = Seen::default();
    let (mut spawner, mut observer, asked) =
        (children.clone(), seen.clone(), Arc::clone(&requests));
    let run_dir_path = dir.join("run");
    let result = std::thread::spawn(move || {
        let run_dir = RunDir::create(&run_dir_path).unwrap();
        train_with_spawner(
            &Registry::with_builtins(),
            &settings,
            &run_dir,
            None,
            &asked,
            &mut observer,
            &mut spawner,
        )
    });
    Supervised {
        children,
        requests,
        seen,
        result,
        _dir: TempDir(dir),
    }
}

impl Supervised {
    fn finish(self) -> (Result<TrainSummary, RuntimeError>, Vec<String>) {
        let result = self.result.join().unwrap();
        let seen = self.seen.0.lock().unwrap().clone();
        (result, seen)
    }
}

fn report(updates: u64) -> RunReport {
    RunReport {
        env_steps: updates * 128,
        updates,
        rejected_messages: 0,
        policy_file: "run/policy.safetensors".into(),
        checkpoint: Some("run/checkpoints/final.safetensors".into()),
        update_s: 0.0,
        exchange: None,
    }
}

/// The learner hears of both workers' data channels first.
fn learner_ready(s: &Supervised) -> Arc<Played> {
    let learner = s.children.get("learner", 0);
    assert!(matches!(
        learner.setup.role,
        rl_ipc::messages::RoleSetup::Learner {
            rank: 0,
            ranks: 1,
            local_rank: 0
        }
    ));
    for k in 0..2 {
        let joined: SupervisorToLearner = learner.heard();
        assert_eq!(
            joined,
            SupervisorToLearner::WorkerJoined {
                worker: k,
                generation: 0
            }
        );
    }
    learner.say(&LearnerToSupervisor::Ready);
    learner
}

#[test]
fn a_finished_run_waits_for_the_final_evaluation_then_stops_the_learner() {
    let s = supervise("finish", "");
    let learner = learner_ready(&s);
    let evaluator = s.children.get("evaluator", 0);
    evaluator.say(&EvaluatorToSupervisor::Ready);
    learner.say(&LearnerToSupervisor::Finished(report(32)));
    // Finishing: the evaluator is asked for the final version; the learner
    // is kept (best-checkpoint requests may still come).
    let asked: SupervisorToEvaluator = evaluator.heard();
    assert_eq!(asked, SupervisorToEvaluator::Finish { final_version: 32 });
    evaluator.say(&EvaluatorToSupervisor::Evaluated(EvalReport {
        elapsed_s: 1.0,
        env_steps: 4096,
        policy_version: 32,
        returns: vec![500.0],
        new_best: true,
    }));
    let best: SupervisorToLearner = learner.heard();
    assert_eq!(best, SupervisorToLearner::SaveBest { version: 32 });
    evaluator.say(&EvaluatorToSupervisor::Done);
    let stop: SupervisorToLearner = learner.heard();
    assert_eq!(stop, SupervisorToLearner::Stop);
    s.children.all_exit();
    let (result, seen) = s.finish();
    let summary = result.unwrap();
    assert_eq!(summary.ending, Ending::Completed);
    assert_eq!(summary.updates, 32);
    assert_eq!(summary.restarts, 0);
    assert_eq!(
        summary.policy_file.as_deref(),
        Some(Path::new("run/policy.safetensors"))
    );
    assert_eq!(summary.last_eval.map(|e| e.policy_version), Some(32));
    assert!(seen.contains(&"eval 32".to_string()), "{seen:?}");
}

#[test]
fn a_stop_request_tells_and_interrupts_the_learner_and_ends_interrupted() {
    let s = supervise("stop", "");
    let learner = learner_ready(&s);
    let evaluator = s.children.get("evaluator", 0);
    s.requests.stops.fetch_add(1, Ordering::SeqCst);
    let stop: SupervisorToLearner = learner.heard();
    assert_eq!(stop, SupervisorToLearner::Stop);
    let stop: SupervisorToEvaluator = evaluator.heard();
    assert_eq!(stop, SupervisorToEvaluator::Stop);
    assert!(learner.fate.lock().unwrap().interrupted, "no SIGUSR2");
    learner.say(&LearnerToSupervisor::Stopped(report(5)));
    let _: SupervisorToLearner = learner.heard();
    s.children.all_exit();
    let (result, _) = s.finish();
    let summary = result.unwrap();
    assert_eq!(summary.ending, Ending::Interrupted);
    assert_eq!(summary.updates, 5);
}

#[test]
fn a_failed_worker_is_restarted_and_joined_to_the_learner_as_a_new_generation() {
    let s = supervise("restart", "");
    let learner = learner_ready(&s);
    let worker = s.children.get("worker-1", 0);
    worker.exit(1);
    let replacement = s.children.get("worker-1", 1);
    assert!(matches!(
        replacement.setup.role,
        rl_ipc::messages::RoleSetup::Worker {
            worker: 1,
            generation: 1,
            ..
        }
    ));
    let joined: SupervisorToLearner = learner.heard();
    assert_eq!(
        joined,
        SupervisorToLearner::WorkerJoined {
            worker: 1,
            generation: 1
        }
    );
    // The learner's own verdict on the dead process comes after: nothing
    // more is started for it.
    learner.say(&LearnerToSupervisor::ReplaceWorker {
        worker: 1,
        generation: 0,
        reason: "its process exited".into(),
    });
    s.requests.stops.fetch_add(1, Ordering::SeqCst);
    let stop: SupervisorToLearner = learner.heard();
    assert_eq!(stop, SupervisorToLearner::Stop);
    learner.say(&LearnerToSupervisor::Stopped(report(3)));
    s.children.all_exit();
    let children = s.children.clone();
    let (result, _) = s.finish();
    assert_eq!(result.unwrap().restarts, 1);
    assert_eq!(children.count("worker-1"), 2);
}

#[test]
fn a_learner_silent_past_its_timeout_is_stopped_and_the_run_fails_saying_so() {
    let s = supervise("silent", "learner_timeout_s = 1\n");
    let learner = learner_ready(&s);
    let started = Instant::now();
    let stop: SupervisorToLearner = learner.heard();
    assert_eq!(stop, SupervisorToLearner::Stop);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(learner.fate.lock().unwrap().interrupted);
    s.children.all_exit();
    let (result, seen) = s.finish();
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("made no progress for 1 s") && message.contains("nothing was saved"),
        "{message}"
    );
    assert!(
        seen.iter().any(|m| m.contains("made no progress")),
        "{seen:?}"
    );
}
