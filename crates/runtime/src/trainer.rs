//! The single-process training loop: collect, update, evaluate, record.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rl_algo::device::{resolve_device, set_torch_threads, DeviceChoice, DeviceError};
use rl_algo::ppo::{Backend, PpoLearner, UpdateStats};
use rl_env::rng::derive_seed;
use rl_env::{EnvError, Registry, Space};
use rl_policy::{evaluate_episodes, ActionHead, Policy, PolicyError, PolicySpec, RolloutCollector};

use crate::run_dir::{PathError, RunDir, Value};
use crate::TrainSettings;

/// Keeps evaluation episodes apart from training envs.
const EVAL_SALT: u64 = 0xE7A1_0000_0000_0001;

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
    #[error("{0}")]
    Setup(String),
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

/// Receives progress while a run trains.
pub trait Observer {
    fn on_update(&mut self, progress: &Progress, stats: &UpdateStats);
    fn on_eval(&mut self, progress: &Progress, eval: &EvalResult);
}

/// Trains PPO in this process with the settings, writing the run directory,
/// until the step budget is spent or `stop` is set (checked between updates).
pub fn train_in_process(
    registry: &Registry,
    settings: &TrainSettings,
    run_dir: &RunDir,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<TrainSummary, RuntimeError> {
    let start = Instant::now();
    let seed = settings.run.seed;
    let device = resolve_device(
        settings
            .run
            .device
            .parse::<DeviceChoice>()
            .map_err(|e| RuntimeError::Setup(e.to_string()))?,
    )?;
    set_torch_threads(settings.run.torch_threads);

    let num_envs = settings.env.num_envs;
    let envs = registry.make_vec(&settings.env.id, num_envs)?;
    let spec = policy_spec(settings, envs.observation_space(), envs.action_space())?;
    let backend = match settings.run.learner.as_str() {
        "torch" => Backend::Torch(device),
        _ => Backend::for_device(device),
    };
    let mut learner = PpoLearner::new(spec.clone(), settings.ppo.clone(), num_envs, seed, backend);
    let mut collector = RolloutCollector::new(envs, Policy::new(spec.clone())?, seed, 0)?;
    let mut eval_policy = Policy::new(spec.clone())?;

    let mut train_csv = run_dir.train_csv()?;
    let mut eval_csv = run_dir.eval_csv()?;
    let num_steps = settings.ppo.num_steps;
    let steps_per_update = (num_steps * num_envs) as u64;
    let num_updates = learner.num_updates;
    let total_env_steps = num_updates * steps_per_update;
    let interval = settings.eval.interval_steps;

    let mut env_steps = 0u64;
    let mut train_time = Duration::ZERO;
    let mut recent_returns: VecDeque<f64> = VecDeque::with_capacity(100);
    let mut next_eval = interval;
    let mut last_eval: Option<EvalResult> = None;
    let mut ending = Ending::Completed;
    let mut progress = Progress {
        elapsed: Duration::ZERO,
        env_steps: 0,
        total_env_steps,
        updates: 0,
        steps_per_s: 0.0,
        episode_return_mean: None,
        last_eval_return: None,
    };

    let mut evaluate = |learner: &PpoLearner,
                        env_steps: u64,
                        progress: &mut Progress,
                        observer: &mut dyn Observer|
     -> Result<EvalResult, RuntimeError> {
        eval_policy.set_weights(&learner.policy_weights())?;
        let returns = evaluate_episodes(
            registry,
            &settings.env.id,
            &mut eval_policy,
            learner.obs_norm.as_ref(),
            settings.eval.episodes,
            derive_seed(seed, EVAL_SALT),
        )?;
        let result = EvalResult {
            env_steps,
            policy_version: learner.updates_done,
            returns,
        };
        let (min, max) = result
            .returns
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                (lo.min(*r), hi.max(*r))
            });
        eval_csv.row(&[
            Value::Float(start.elapsed().as_secs_f64()),
            Value::Int(env_steps),
            Value::Int(result.policy_version),
            Value::Float(result.mean()),
            Value::Float(result.std()),
            Value::Float(min),
            Value::Float(max),
            Value::Int(result.returns.len() as u64),
        ])?;
        progress.last_eval_return = Some(result.mean());
        progress.elapsed = start.elapsed();
        observer.on_eval(progress, &result);
        Ok(result)
    };

    for _ in 0..num_updates {
        if stop.load(Ordering::SeqCst) {
            ending = Ending::Interrupted;
            break;
        }
        let update_start = Instant::now();
        collector.set_policy(&learner.policy_weights(), learner.obs_norm.clone())?;
        let rollout = collector.collect(num_steps)?;
        let stats = learner.update(&rollout);
        train_time += update_start.elapsed();
        env_steps += steps_per_update;

        for episode in &rollout.episodes {
            if recent_returns.len() == 100 {
                recent_returns.pop_front();
            }
            recent_returns.push_back(episode.episode_return);
        }
        let episode_return_mean = (!recent_returns.is_empty())
            .then(|| recent_returns.iter().sum::<f64>() / recent_returns.len() as f64);
        progress.elapsed = start.elapsed();
        progress.env_steps = env_steps;
        progress.updates = learner.updates_done;
        progress.steps_per_s = env_steps as f64 / train_time.as_secs_f64().max(1e-9);
        progress.episode_return_mean = episode_return_mean;
        train_csv.row(&[
            Value::Float(progress.elapsed.as_secs_f64()),
            Value::Int(env_steps),
            Value::Int(learner.updates_done),
            Value::Float(progress.steps_per_s),
            Value::Float(stats.policy_loss),
            Value::Float(stats.value_loss),
            Value::Float(stats.entropy),
            Value::Float(stats.approx_kl),
            Value::Float(stats.clip_frac),
            Value::Float(stats.explained_variance),
            Value::Float(stats.learning_rate),
            Value::Float(episode_return_mean.unwrap_or(f64::NAN)),
        ])?;
        observer.on_update(&progress, &stats);

        if env_steps >= next_eval {
            last_eval = Some(evaluate(&learner, env_steps, &mut progress, observer)?);
            while next_eval <= env_steps {
                next_eval += interval;
            }
        }
    }
    let evaluated_last = last_eval.as_ref().is_some_and(|e| e.env_steps == env_steps);
    if ending == Ending::Completed && env_steps > 0 && !evaluated_last {
        last_eval = Some(evaluate(&learner, env_steps, &mut progress, observer)?);
    }
    run_dir.write_policy(
        &spec,
        &settings.env.id,
        &learner.policy_weights(),
        learner.obs_norm.as_ref(),
    )?;
    Ok(TrainSummary {
        ending,
        env_steps,
        updates: learner.updates_done,
        last_eval,
    })
}
