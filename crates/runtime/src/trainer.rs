//! The single-process training loop: collect, update, evaluate, record.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rl_algo::device::{resolve_device, set_torch_threads, DeviceChoice, DeviceError};
use rl_algo::divergence::Divergence;
use rl_algo::ppo::{Backend, PpoConfig, PpoLearner, UpdateError, UpdateStats};
use rl_env::{EnvError, Registry, Space};
use rl_policy::{ActionHead, CollectError, Policy, PolicyError, PolicySpec, RolloutCollector};

use crate::checkpoint::CheckpointKind;
use crate::eval::{evaluate, next_eval_after, EvalRecorder};
use crate::record::{Checkpointer, TrainRecorder};
use crate::run_dir::{PathError, RunDir, Value};
use crate::TrainSettings;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Channel(#[from] rl_ipc::ChannelError),
    #[error(transparent)]
    Ipc(#[from] rl_ipc::IpcError),
    #[error(transparent)]
    Frame(#[from] rl_ipc::FrameError),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Failed(String),
    /// Training diverged; the message says where, why, what was kept and
    /// how to continue.
    #[error("{0}")]
    Diverged(String),
}

impl From<CollectError> for RuntimeError {
    fn from(e: CollectError) -> Self {
        match e {
            CollectError::Env(e) => RuntimeError::Env(e),
            e @ CollectError::PolicyNotFinite { .. } => RuntimeError::Diverged(e.to_string()),
        }
    }
}

/// What the user, a terminal or a cluster asked of a running training, by
/// signal: counted by the command's signal handlers, read by the loops.
#[derive(Debug, Default)]
pub struct Requests {
    /// Stop requests (SIGINT, SIGTERM, SIGHUP): the first ends the run in
    /// order (the update in progress is abandoned, the state saved), a
    /// second at once.
    pub stops: AtomicUsize,
    /// Checkpoint-now requests (SIGUSR1).
    pub checkpoints: AtomicUsize,
}

impl Requests {
    pub fn stops(&self) -> usize {
        self.stops.load(Ordering::SeqCst)
    }

    pub fn checkpoints(&self) -> usize {
        self.checkpoints.load(Ordering::SeqCst)
    }
}

/// The message of a diverged run: what went non-finite, where the last
/// finite state is, and the command that continues with other settings.
pub(crate) fn divergence_message(
    divergence: &Divergence,
    run_dir: &Path,
    policy: &Path,
    checkpoint: Option<&Path>,
    updates_done: u64,
) -> String {
    let example = divergence.suspects.first().and_then(|(key, _)| {
        let (table, field) = key.split_once('.')?;
        let defaults = serde_json::to_value(PpoConfig::default()).ok()?;
        let value = (table == "ppo")
            .then(|| defaults.get(field).cloned())
            .flatten()?;
        Some(format!(" --set {key}={value}"))
    });
    format!(
        "{divergence}. Nothing non-finite was published or saved: the weights after update {updates_done} are in {}{}; to continue from there with other settings: train --resume {}{}",
        policy.display(),
        checkpoint.map_or(String::new(), |c| format!(" and {}", c.display())),
        run_dir.display(),
        example.unwrap_or_else(|| " --set ppo.KEY=VALUE".to_string())
    )
}

/// Where a run stands, for status lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub env_steps: u64,
    pub total_env_steps: u64,
    pub updates: u64,
    /// Env steps per second of training (evaluation excluded).
    pub steps_per_s: f64,
    pub episode_return_mean: Option<f64>,
    pub last_eval_return: Option<f64>,
}

/// One evaluation's results.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    pub env_steps: u64,
    pub policy_version: u64,
    pub returns: Vec<f64>,
}

impl EvalResult {
    pub fn mean(&self) -> f64 {
        self.returns.iter().sum::<f64>() / self.returns.len().max(1) as f64
    }

    pub fn std(&self) -> f64 {
        let m = self.mean();
        (self.returns.iter().map(|r| (r - m).powi(2)).sum::<f64>()
            / self.returns.len().max(1) as f64)
            .sqrt()
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Completed,
    Interrupted,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    pub ending: Ending,
    pub env_steps: u64,
    pub updates: u64,
    pub last_eval: Option<EvalResult>,
    /// Worker and evaluator processes restarted.
    pub restarts: u32,
    /// Worker messages the learner rejected.
    pub rejected_messages: u64,
    /// The policy file the end of the run wrote, once written and synced
    /// (`None`: the run stopped without saving, at a second interrupt).
    pub policy_file: Option<PathBuf>,
    /// The checkpoint the end of the run wrote, once written and synced.
    pub checkpoint: Option<PathBuf>,
}

/// The policy architecture for an env's spaces and the network settings.
pub fn policy_spec(
    settings: &TrainSettings,
    observation: &Space,
    action: &Space,
) -> Result<PolicySpec, RuntimeError> {
    let head = match action {
        Space::Discrete { n } => ActionHead::Categorical { n: *n },
        Space::Box(b) => ActionHead::Gaussian { dim: b.flat_dim() },
    };
    if !matches!(observation, Space::Box(_)) {
        return Err(RuntimeError::Setup(format!(
            "{}: observation space {observation} is not a Box",
            settings.env.id
        )));
    }
    Ok(PolicySpec {
        obs_dim: observation.flat_dim(),
        head,
        actor_hidden: settings.network.actor_hidden.clone(),
        critic_hidden: settings.network.critic_hidden.clone(),
        activation: settings.network.activation,
    })
}

/// The policy architecture of a run: its env's spaces and the network
/// settings.
pub fn spec_for(registry: &Registry, settings: &TrainSettings) -> Result<PolicySpec, RuntimeError> {
    let envs = registry.make_vec(&settings.env.id, 1)?;
    policy_spec(settings, envs.observation_space(), envs.action_space())
}

/// The run's PPO learner, on the configured device and gradient path, with
/// the configured libtorch threads.
pub(crate) fn new_learner(
    settings: &TrainSettings,
    spec: &PolicySpec,
) -> Result<PpoLearner, RuntimeError> {
    let device = resolve_device(
        settings
            .run
            .device
            .parse::<DeviceChoice>()
            .map_err(|e| RuntimeError::Setup(e.to_string()))?,
    )?;
    set_torch_threads(settings.run.torch_threads);
    let backend = match settings.run.learner.as_str() {
        "torch" => Backend::Torch(device),
        _ => Backend::for_device(device),
    };
    Ok(PpoLearner::new(
        spec.clone(),
        settings.ppo.clone(),
        settings.env.num_envs,
        settings.run.seed,
        backend,
    ))
}

/// Receives progress while a run trains.
pub trait Observer {
    fn on_update(&mut self, progress: &Progress, stats: &UpdateStats);
    fn on_eval(&mut self, progress: &Progress, eval: &EvalResult);
    /// Something the user should know (a process replaced, say).
    fn on_message(&mut self, message: &str) {
        eprintln!("{message}");
    }
}

/// Where a resumed run continues from.
#[derive(Debug, Clone)]
pub struct ResumeFrom {
    pub path: std::path::PathBuf,
    pub checkpoint: crate::checkpoint::Checkpoint,
}

/// Keeps the envs of a resumed run apart from the first ones, when they
/// could not be restored from a snapshot.
const RESUME_SALT: u64 = 0x2E5E_3E00_0000_0001;

/// The seed a collector starts from on resume when its envs had no
/// snapshot: fresh episodes, reproducible from the checkpoint.
pub(crate) fn resume_seed(seed: u64, updates: u64) -> u64 {
    rl_env::rng::derive_seed(seed ^ RESUME_SALT, updates)
}

/// Trains PPO in this process with the settings, writing the run directory,
/// until the step budget is spent or a stop is requested (the update in
/// progress is then abandoned, see [`PpoLearner::update`]); from a
/// checkpoint when `resume` is given. A checkpoint is written at each
/// checkpoint-now request.
pub fn train_in_process(
    registry: &Registry,
    settings: &TrainSettings,
    run_dir: &RunDir,
    resume: Option<&ResumeFrom>,
    requests: &Requests,
    observer: &mut dyn Observer,
) -> Result<TrainSummary, RuntimeError> {
    let seed = settings.run.seed;
    let num_envs = settings.env.num_envs;
    let envs = registry.make_vec(&settings.env.id, num_envs)?;
    let spec = policy_spec(settings, envs.observation_space(), envs.action_space())?;
    let mut learner = new_learner(settings, &spec)?;
    let (elapsed0, train0) = resume.map_or((0.0, 0.0), |r| {
        (r.checkpoint.elapsed_s, r.checkpoint.train_s)
    });
    let start = Instant::now() - Duration::from_secs_f64(elapsed0);
    let start_unix_s = crate::child::unix_now() - elapsed0;
    let mut recent_returns = RecentReturns::default();
    let mut collector = match resume {
        None => {
            run_dir.create_csv_files()?;
            RolloutCollector::new(envs, Policy::new(spec.clone())?, seed, 0)?
        }
        Some(from) => {
            let c = &from.checkpoint;
            learner
                .restore(&c.learner)
                .map_err(|e| RuntimeError::Setup(format!("{}: {e}", from.path.display())))?;
            recent_returns = RecentReturns::from_returns(&c.recent_returns);
            match c.collectors.first().filter(|s| !s.is_empty()) {
                Some(snapshot) => {
                    let mut collector =
                        RolloutCollector::new(envs, Policy::new(spec.clone())?, seed, 0)?;
                    collector.restore(snapshot)?;
                    collector
                }
                None => {
                    observer.on_message(&format!(
                        "train: {} does not support snapshots: the resumed run starts new episodes",
                        settings.env.id
                    ));
                    let fresh = resume_seed(seed, c.learner.updates_done);
                    RolloutCollector::new(envs, Policy::new(spec.clone())?, fresh, 0)?
                }
            }
        }
    };
    let mut eval_policy = Policy::new(spec.clone())?;

    let mut train = TrainRecorder::new(run_dir, run_dir.append_train_csv()?, start_unix_s)?;
    let mut recorder = EvalRecorder::new(
        run_dir,
        run_dir.append_eval_csv()?,
        spec.clone(),
        &settings.env.id,
        start_unix_s,
    )?;
    let checkpointer = Checkpointer::new(run_dir, settings, &spec);
    let num_steps = settings.ppo.num_steps;
    let steps_per_update = settings.steps_per_update();
    let num_updates = learner.num_updates;
    let total_env_steps = num_updates * steps_per_update;
    let interval = settings.eval.interval_steps;

    let mut env_steps = learner.updates_done * steps_per_update;
    let mut train_time = Duration::from_secs_f64(train0);
    let mut next_eval = next_eval_after(env_steps, interval);
    let mut last_eval: Option<EvalResult> = None;
    let mut ending = Ending::Completed;
    let mut progress = Progress {
        elapsed: start.elapsed(),
        env_steps,
        total_env_steps,
        updates: learner.updates_done,
        steps_per_s: 0.0,
        episode_return_mean: recent_returns.mean(),
        last_eval_return: None,
    };
    // `snapshot`: the collector's state at the start of the round after the
    // learner's last update (the two belong together in a checkpoint).
    let checkpoint = |kind: CheckpointKind,
                      learner: &PpoLearner,
                      snapshot: &[u8],
                      recent: &RecentReturns,
                      train_time: Duration|
     -> Result<PathBuf, RuntimeError> {
        let c = checkpointer.build(
            kind,
            learner,
            vec![snapshot.to_vec()],
            (start.elapsed().as_secs_f64(), train_time.as_secs_f64()),
            recent.to_vec(),
        );
        checkpointer.write(&c)
    };

    let mut evaluate_now = |learner: &PpoLearner,
                            env_steps: u64,
                            progress: &mut Progress,
                            observer: &mut dyn Observer|
     -> Result<(EvalResult, bool), RuntimeError> {
        let weights = learner.policy_weights();
        eval_policy.set_weights(&weights)?;
        let result = evaluate(
            registry,
            settings,
            &mut eval_policy,
            learner.obs_norm.as_ref(),
            env_steps,
            learner.updates_done,
        )?;
        let best = recorder.record(
            start.elapsed().as_secs_f64(),
            &result,
            &weights,
            learner.obs_norm.as_ref(),
        )?;
        progress.last_eval_return = Some(result.mean());
        progress.elapsed = start.elapsed();
        observer.on_eval(progress, &result);
        Ok((result, best))
    };

    let mut checkpoints_handled = requests.checkpoints();
    let mut last_checkpoint = None;
    let mut round_start = collector.snapshot().unwrap_or_default();
    let abandon = || requests.stops() > 0;
    let mut diverged = None;
    while learner.updates_done < num_updates {
        if abandon() {
            ending = Ending::Interrupted;
            break;
        }
        let requested = requests.checkpoints();
        if requested > checkpoints_handled {
            checkpoints_handled = requested;
            let path = checkpoint(
                CheckpointKind::Periodic,
                &learner,
                &round_start,
                &recent_returns,
                train_time,
            )?;
            observer.on_message(&format!("train: checkpoint written: {}", path.display()));
        }
        let update_start = Instant::now();
        collector.set_policy(&learner.policy_weights(), learner.obs_norm.clone())?;
        let rollout = collector.collect(num_steps)?;
        let stats = match learner.update(&rollout, &abandon) {
            Ok(stats) => stats,
            Err(UpdateError::Abandoned) => {
                ending = Ending::Interrupted;
                break;
            }
            Err(UpdateError::Diverged(divergence)) => {
                // The learner is back at its state before this update, which
                // the envs' state before this round goes with: saved below.
                diverged = Some(divergence);
                break;
            }
        };
        round_start = collector.snapshot().unwrap_or_default();
        train_time += update_start.elapsed();
        env_steps += steps_per_update;

        recent_returns.extend(&rollout.episodes);
        progress.elapsed = start.elapsed();
        progress.env_steps = env_steps;
        progress.updates = learner.updates_done;
        progress.steps_per_s = env_steps as f64 / train_time.as_secs_f64().max(1e-9);
        progress.episode_return_mean = recent_returns.mean();
        train.record(&progress, &stats)?;
        observer.on_update(&progress, &stats);

        if env_steps >= next_eval || learner.updates_done == num_updates {
            let (result, best) = evaluate_now(&learner, env_steps, &mut progress, observer)?;
            last_eval = Some(result);
            next_eval = next_eval_after(env_steps, interval);
            if best {
                checkpoint(
                    CheckpointKind::Best,
                    &learner,
                    &round_start,
                    &recent_returns,
                    train_time,
                )?;
            }
        }
        if learner.updates_done == num_updates {
            last_checkpoint = Some(checkpoint(
                CheckpointKind::Final,
                &learner,
                &round_start,
                &recent_returns,
                train_time,
            )?);
        } else if checkpointer.due(learner.updates_done) {
            checkpoint(
                CheckpointKind::Periodic,
                &learner,
                &round_start,
                &recent_returns,
                train_time,
            )?;
        }
    }
    if ending == Ending::Interrupted || diverged.is_some() {
        last_checkpoint = Some(checkpoint(
            CheckpointKind::Stop,
            &learner,
            &round_start,
            &recent_returns,
            train_time,
        )?);
    }
    let policy_file = run_dir.write_policy(
        &spec,
        &settings.env.id,
        &learner.policy_weights(),
        learner.obs_norm.as_ref(),
    )?;
    crate::run_dir::remove_stale_temporaries(run_dir.path());
    if let Some(divergence) = diverged {
        return Err(RuntimeError::Diverged(divergence_message(
            &divergence,
            run_dir.path(),
            &policy_file,
            last_checkpoint.as_deref(),
            learner.updates_done,
        )));
    }
    Ok(TrainSummary {
        ending,
        env_steps,
        updates: learner.updates_done,
        last_eval,
        restarts: 0,
        rejected_messages: 0,
        policy_file: Some(policy_file),
        checkpoint: last_checkpoint,
    })
}

/// The returns of the last 100 finished training episodes.
#[derive(Debug, Default)]
pub(crate) struct RecentReturns(VecDeque<f64>);

impl RecentReturns {
    pub fn from_returns(returns: &[f64]) -> Self {
        RecentReturns(returns.iter().rev().take(100).rev().copied().collect())
    }

    pub fn to_vec(&self) -> Vec<f64> {
        self.0.iter().copied().collect()
    }

    pub fn extend(&mut self, episodes: &[rl_policy::EpisodeRecord]) {
        for episode in episodes {
            if self.0.len() == 100 {
                self.0.pop_front();
            }
            self.0.push_back(episode.episode_return);
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.iter().sum::<f64>() / self.0.len() as f64)
    }
}

/// One `train.csv` row.
pub(crate) fn train_row(progress: &Progress, stats: &UpdateStats) -> [Value; 12] {
    [
        Value::Float(progress.elapsed.as_secs_f64()),
        Value::Int(progress.env_steps),
        Value::Int(progress.updates),
        Value::Float(progress.steps_per_s),
        Value::Float(stats.policy_loss),
        Value::Float(stats.value_loss),
        Value::Float(stats.entropy),
        Value::Float(stats.approx_kl),
        Value::Float(stats.clip_frac),
        Value::Float(stats.explained_variance),
        Value::Float(stats.learning_rate),
        Value::Float(progress.episode_return_mean.unwrap_or(f64::NAN)),
    ]
}
