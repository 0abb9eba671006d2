//! The settings of a training run, one struct per component, each with the
//! checks that run before anything starts.

use rl_algo::algorithm::RunSpec;
use rl_algo::device::DeviceChoice;
use rl_algo::engine::agent::{AgentAlgo, SAC_STATS, TD3_STATS};
use rl_algo::offpolicy::config::{Common, DqnConfig, SacConfig, Td3Config};
use rl_algo::offpolicy::learner::DQN_COLUMNS;
use rl_algo::ppo::config::PpoConfig;
use rl_algo::ppo::learner::STAT_NAMES;
use rl_algo::validate::MAX_CONFIG_INT;
use rl_algo::FieldError;
use rl_env::Kwargs;
use rl_policy::Activation;
use serde::{Deserialize, Serialize};

fn check(
    errors: &mut Vec<(&'static str, FieldError)>,
    table: &'static str,
    ok: bool,
    field: &'static str,
    value: String,
    allowed: &'static str,
) {
    if !ok {
        errors.push((
            table,
            FieldError {
                field,
                value,
                allowed,
            },
        ));
    }
}

/// A value as JSON text (for comparing and hashing settings).
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `[env]`: which environment, how many copies, and the normalisation of
/// what they return (SB3's `VecNormalize`; the learner keeps the
/// statistics, the collectors act with them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSettings {
    /// Registered environment id, e.g. "CartPole-v1".
    pub id: String,
    /// Envs stepped together (over all workers).
    #[serde(default = "default_num_envs")]
    pub num_envs: usize,
    /// Normalise observations by running mean and variance.
    #[serde(default)]
    pub normalize_obs: bool,
    /// Clip normalised observations to [-obs_clip, obs_clip].
    #[serde(default = "default_clip")]
    pub obs_clip: f64,
    /// Scale rewards by the running std of discounted returns.
    #[serde(default)]
    pub normalize_reward: bool,
    /// Clip scaled rewards to [-reward_clip, reward_clip].
    #[serde(default = "default_clip")]
    pub reward_clip: f64,
    /// Keyword arguments for the env (`[env.kwargs]`): a `gymnasium:` id
    /// is made with `gymnasium.make(id, **kwargs)`.
    #[serde(default, skip_serializing_if = "Kwargs::is_empty")]
    pub kwargs: Kwargs,
}

fn default_num_envs() -> usize {
    8
}

fn default_clip() -> f64 {
    10.0
}

/// The algorithms `[run] algo` can name.
pub const ALGORITHMS: [&str; 4] = ["ppo", "sac", "td3", "dqn"];

/// The off-policy columns with async collection: the algorithm's, then the
/// chunk's policy lag and the stale chunks dropped so far.
const SAC_ASYNC: [&str; 10] = [
    "qf1_values",
    "qf2_values",
    "qf1_loss",
    "qf2_loss",
    "qf_loss",
    "actor_loss",
    "alpha",
    "alpha_loss",
    "policy_lag",
    "stale_chunks",
];
const TD3_ASYNC: [&str; 8] = [
    "qf1_values",
    "qf2_values",
    "qf1_loss",
    "qf2_loss",
    "qf_loss",
    "actor_loss",
    "policy_lag",
    "stale_chunks",
];
const DQN_ASYNC: [&str; 5] = [
    "td_loss",
    "q_values",
    "epsilon",
    "policy_lag",
    "stale_chunks",
];

/// `[network]`: the actor and critic MLPs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSettings {
    /// Hidden layer sizes of the actor.
    pub actor_hidden: Vec<usize>,
    /// Hidden layer sizes of the critic.
    pub critic_hidden: Vec<usize>,
    /// Hidden activation: "tanh" or "relu".
    pub activation: Activation,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            actor_hidden: vec![64, 64],
            critic_hidden: vec![64, 64],
            activation: Activation::Tanh,
        }
    }
}

impl NetworkSettings {
    /// The networks `algo` uses when the config does not say: CleanRL's
    /// (PPO: 64-64 tanh; SAC and TD3: 256-256 ReLU actor and Q-networks;
    /// DQN: a 120-84 ReLU Q-network).
    pub fn for_algo(algo: &str) -> Self {
        match algo {
            "sac" | "td3" => NetworkSettings {
                actor_hidden: vec![256, 256],
                critic_hidden: vec![256, 256],
                activation: Activation::Relu,
            },
            "dqn" => NetworkSettings {
                actor_hidden: vec![120, 84],
                critic_hidden: vec![120, 84],
                activation: Activation::Relu,
            },
            _ => NetworkSettings::default(),
        }
    }
}

/// `[eval]`: deterministic evaluation on separate, separately seeded envs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSettings {
    /// Evaluate every this many env steps (and once at the end).
    pub interval_steps: u64,
    /// Episodes per evaluation.
    pub episodes: usize,
    /// Seconds one evaluation may take: past it the evaluator is replaced
    /// (the final evaluation is given up with a warning).
    pub timeout_s: f64,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            interval_steps: 10_000,
            episodes: 10,
            timeout_s: 300.0,
        }
    }
}

/// `[checkpoint]`: when the run saves everything it needs to continue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSettings {
    /// Save a checkpoint every this many updates (and when the run stops
    /// early, and at the end)...
    pub interval_updates: u64,
    /// ...or, when set, every this many env steps instead. The off-policy
    /// algorithms, whose updates are chunks of a few steps, use 100000 when
    /// it is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_steps: Option<u64>,
    /// Periodic checkpoints kept (the newest); the final and best ones are
    /// always kept.
    pub keep_last: usize,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            interval_updates: 50,
            interval_steps: None,
            keep_last: 3,
        }
    }
}

/// `[run]`: how the run executes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSettings {
    /// The learning algorithm; its hyperparameters are the table of its
    /// name (`[ppo]`).
    pub algo: String,
    /// Env steps to train for, over all envs.
    pub total_timesteps: u64,
    /// Base seed of everything random in the run.
    pub seed: u64,
    /// Learner device: "auto" (CUDA when available), "cpu" or "cuda".
    pub device: String,
    /// libtorch threads of the learner.
    pub torch_threads: usize,
    /// Worker processes that step the envs (each steps num_envs /
    /// num_workers of them); 0 runs everything in this process.
    pub num_workers: usize,
    /// Gradient implementation: "auto" (hand-written on the CPU, libtorch on
    /// CUDA) or "torch" (libtorch on any device).
    pub learner: String,
    /// Seconds a worker may take to start or to deliver a rollout before it
    /// is killed and replaced.
    pub worker_timeout_s: f64,
    /// Worker and evaluator processes that may be restarted over the run;
    /// one more failure saves the weights and ends the run with an error.
    pub max_restarts: u32,
    /// Seconds before a failed process is restarted, doubled for each
    /// further restart of the same process (at most 30).
    pub restart_backoff_s: f64,
    /// Seconds the learner may go without progress (a minibatch, an update,
    /// a worker's rollout) before the run is stopped as stuck.
    pub learner_timeout_s: f64,
    /// "sync": every round is collected with the newest weights and the
    /// learner trains in lockstep (the same seed gives the same run);
    /// "async" (off-policy algorithms with workers): workers never wait
    /// for the learner, each chunk is trained on as it arrives.
    pub collection: String,
    /// Async collection: chunks collected with weights more than this many
    /// updates old are dropped (counted in train.csv's `stale_chunks`).
    pub max_policy_lag: u64,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            algo: "ppo".to_string(),
            total_timesteps: 500_000,
            seed: 1,
            device: "auto".to_string(),
            torch_threads: 1,
            num_workers: 0,
            learner: "auto".to_string(),
            worker_timeout_s: 60.0,
            max_restarts: 10,
            restart_backoff_s: 0.5,
            learner_timeout_s: 300.0,
            collection: "sync".to_string(),
            max_policy_lag: 16,
        }
    }
}

/// Everything a training run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    pub env: EnvSettings,
    #[serde(default)]
    pub network: NetworkSettings,
    #[serde(default)]
    pub ppo: PpoConfig,
    /// The off-policy tables: present in a run's `config.toml` when its
    /// algorithm is theirs (see [`TrainSettings::complete`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sac: Option<SacConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub td3: Option<Td3Config>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dqn: Option<DqnConfig>,
    #[serde(default)]
    pub eval: EvalSettings,
    #[serde(default)]
    pub checkpoint: CheckpointSettings,
    #[serde(default)]
    pub run: RunSettings,
}

impl TrainSettings {
    /// Gives the run's off-policy algorithm its table (its defaults when the
    /// file has none), so that the `config.toml` a run writes holds it.
    pub fn complete(&mut self) {
        match self.run.algo.as_str() {
            "sac" => {
                self.sac.get_or_insert_with(SacConfig::default);
            }
            "td3" => {
                self.td3.get_or_insert_with(Td3Config::default);
            }
            "dqn" => {
                self.dqn.get_or_insert_with(DqnConfig::default);
            }
            _ => {}
        }
    }

    /// The run's off-policy algorithm and its table, unless it is PPO.
    pub fn off_policy(&self) -> Option<AgentAlgo> {
        Some(match self.run.algo.as_str() {
            "sac" => AgentAlgo::Sac(self.sac.clone().unwrap_or_default()),
            "td3" => AgentAlgo::Td3(self.td3.clone().unwrap_or_default()),
            "dqn" => AgentAlgo::Dqn(self.dqn.clone().unwrap_or_default()),
            _ => return None,
        })
    }

    /// The settings the off-policy tables share, unless the run is PPO's.
    pub fn off_policy_common(&self) -> Option<Common> {
        self.off_policy().map(|a| match a {
            AgentAlgo::Sac(c) => c.common(),
            AgentAlgo::Td3(c) => c.common(),
            AgentAlgo::Dqn(c) => c.common(),
        })
    }

    /// Steps each env takes per round: PPO's `num_steps`, or the
    /// off-policy `train_frequency` (a chunk).
    pub fn round_steps(&self) -> usize {
        match self.off_policy_common() {
            Some(c) => c.train_frequency,
            None => self.ppo.num_steps,
        }
    }

    /// Env steps between periodic checkpoints, when they are counted in
    /// steps (see [`CheckpointSettings::interval_steps`]).
    pub fn checkpoint_interval_steps(&self) -> Option<u64> {
        self.checkpoint
            .interval_steps
            .or(self.off_policy().map(|_| 100_000))
    }

    /// Envs each worker process steps.
    pub fn envs_per_worker(&self) -> usize {
        self.env.num_envs / self.run.num_workers.max(1)
    }

    /// The settings as JSON: what children are sent, and what a
    /// checkpoint's config hash is computed from.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The settings a checkpoint's state depends on, as `(table.key,
    /// value)`: the env and its copies, the networks, the rollout length,
    /// normalisation, the workers the envs are split over, the seed. They
    /// stay as they are for the life of a run; every other setting may
    /// change when a run is resumed (`train --resume RUN --set ...`).
    pub fn fixed_for_the_run(&self) -> Vec<(&'static str, String)> {
        vec![
            ("env.id", json(&self.env.id)),
            ("env.num_envs", json(&self.env.num_envs)),
            ("network.actor_hidden", json(&self.network.actor_hidden)),
            ("network.critic_hidden", json(&self.network.critic_hidden)),
            ("network.activation", json(&self.network.activation)),
            ("env.normalize_obs", json(&self.env.normalize_obs)),
            ("env.normalize_reward", json(&self.env.normalize_reward)),
            ("env.obs_clip", json(&self.env.obs_clip)),
            ("ppo.num_steps", json(&self.ppo.num_steps)),
            ("ppo.init_log_std", json(&self.ppo.init_log_std)),
            (
                "off_policy.train_frequency",
                json(&self.off_policy_common().map(|c| c.train_frequency)),
            ),
            (
                "off_policy.buffer_size",
                json(&self.off_policy_common().map(|c| c.buffer_size)),
            ),
            ("run.algo", json(&self.run.algo)),
            ("run.collection", json(&self.run.collection)),
            ("run.num_workers", json(&self.run.num_workers)),
            ("run.seed", json(&self.run.seed)),
        ]
    }

    /// What the run's algorithm reports after each update, in order: its
    /// `train.csv` columns between `steps_per_s` and `episode_return_mean`.
    pub fn stat_names(&self) -> &'static [&'static str] {
        match (self.off_policy(), self.is_async()) {
            (None, _) => &STAT_NAMES,
            (Some(AgentAlgo::Sac(_)), false) => &SAC_STATS,
            (Some(AgentAlgo::Td3(_)), false) => &TD3_STATS,
            (Some(AgentAlgo::Dqn(_)), false) => &DQN_COLUMNS,
            (Some(AgentAlgo::Sac(_)), true) => &SAC_ASYNC,
            (Some(AgentAlgo::Td3(_)), true) => &TD3_ASYNC,
            (Some(AgentAlgo::Dqn(_)), true) => &DQN_ASYNC,
        }
    }

    /// Whether collection is asynchronous (`[run] collection = "async"`).
    pub fn is_async(&self) -> bool {
        self.run.collection == "async"
    }

    /// Envs whose steps one update trains on: all of them, or one worker's
    /// with async collection.
    pub fn envs_per_update(&self) -> usize {
        if self.is_async() {
            self.envs_per_worker()
        } else {
            self.env.num_envs
        }
    }

    /// What the algorithm is told of the run besides its own table.
    pub fn run_spec(&self) -> RunSpec {
        RunSpec {
            num_envs: self.env.num_envs,
            total_timesteps: self.run.total_timesteps,
            seed: self.run.seed,
            obs_norm_clip: self.env.normalize_obs.then_some(self.env.obs_clip),
            reward_scale_clip: self.env.normalize_reward.then_some(self.env.reward_clip),
        }
    }

    /// Updates in the run: total_timesteps / (num_envs * num_steps), at
    /// least 1.
    pub fn num_updates(&self) -> u64 {
        self.num_updates_on(1)
    }

    /// Updates in a run of `ranks` data-parallel ranks, each update one
    /// round of every rank's envs: total_timesteps / (ranks * num_envs *
    /// num_steps), at least 1.
    pub fn num_updates_on(&self, ranks: usize) -> u64 {
        let per_update = self.steps_per_update().saturating_mul(ranks.max(1) as u64);
        (self.run.total_timesteps / per_update.max(1)).max(1)
    }

    /// Env steps in one update (a round): num_envs * round steps (at most
    /// 2^48 once the settings are valid).
    pub fn steps_per_update(&self) -> u64 {
        (self.envs_per_update() as u64).saturating_mul(self.round_steps() as u64)
    }

    /// Every out-of-range value, as `(table, error)`. The env id is checked
    /// against the registry by the caller.
    pub fn validate(&self) -> Vec<(&'static str, FieldError)> {
        let mut e = Vec::new();
        check(
            &mut e,
            "env",
            !self.env.id.trim().is_empty(),
            "id",
            format!("{:?}", self.env.id),
            "a registered environment id",
        );
        check(
            &mut e,
            "env",
            (1..=65_536).contains(&self.env.num_envs),
            "num_envs",
            self.env.num_envs.to_string(),
            "an integer in 1..=65536",
        );
        for (field, clip) in [
            ("obs_clip", self.env.obs_clip),
            ("reward_clip", self.env.reward_clip),
        ] {
            check(
                &mut e,
                "env",
                clip.is_finite() && clip > 0.0,
                field,
                clip.to_string(),
                "a number > 0",
            );
        }
        for (field, sizes) in [
            ("actor_hidden", &self.network.actor_hidden),
            ("critic_hidden", &self.network.critic_hidden),
        ] {
            check(
                &mut e,
                "network",
                sizes.iter().all(|s| (1..=65_536).contains(s)) && sizes.len() <= 16,
                field,
                format!("{sizes:?}"),
                "a list of at most 16 layer sizes, each in 1..=65536",
            );
        }
        check(
            &mut e,
            "eval",
            (1..=MAX_CONFIG_INT).contains(&self.eval.interval_steps),
            "interval_steps",
            self.eval.interval_steps.to_string(),
            "an integer in 1..=9223372036854775807",
        );
        check(
            &mut e,
            "eval",
            (1..=100_000).contains(&self.eval.episodes),
            "episodes",
            self.eval.episodes.to_string(),
            "an integer in 1..=100000",
        );
        check(
            &mut e,
            "checkpoint",
            (1..=MAX_CONFIG_INT).contains(&self.checkpoint.interval_updates),
            "interval_updates",
            self.checkpoint.interval_updates.to_string(),
            "an integer in 1..=9223372036854775807",
        );
        if let Some(steps) = self.checkpoint.interval_steps {
            check(
                &mut e,
                "checkpoint",
                (1..=MAX_CONFIG_INT).contains(&steps),
                "interval_steps",
                steps.to_string(),
                "an integer in 1..=9223372036854775807",
            );
        }
        check(
            &mut e,
            "checkpoint",
            (1..=1000).contains(&self.checkpoint.keep_last),
            "keep_last",
            self.checkpoint.keep_last.to_string(),
            "an integer in 1..=1000",
        );
        check(
            &mut e,
            "run",
            ALGORITHMS.contains(&self.run.algo.as_str()),
            "algo",
            format!("{:?}", self.run.algo),
            "\"ppo\", \"sac\", \"td3\" or \"dqn\"",
        );
        check(
            &mut e,
            "run",
            (1..=MAX_CONFIG_INT).contains(&self.run.total_timesteps),
            "total_timesteps",
            self.run.total_timesteps.to_string(),
            "an integer in 1..=9223372036854775807",
        );
        check(
            &mut e,
            "run",
            self.run.seed <= MAX_CONFIG_INT,
            "seed",
            self.run.seed.to_string(),
            "an integer in 0..=9223372036854775807 (config files hold signed 64-bit integers)",
        );
        check(
            &mut e,
            "run",
            self.run.device.parse::<DeviceChoice>().is_ok(),
            "device",
            format!("{:?}", self.run.device),
            "\"auto\", \"cpu\" or \"cuda\"",
        );
        check(
            &mut e,
            "run",
            (1..=256).contains(&self.run.torch_threads),
            "torch_threads",
            self.run.torch_threads.to_string(),
            "an integer in 1..=256",
        );
        check(
            &mut e,
            "run",
            self.run.num_workers <= 256
                && (self.run.num_workers == 0 || self.env.num_envs % self.run.num_workers == 0),
            "num_workers",
            self.run.num_workers.to_string(),
            "0 (everything in one process) or a number of worker processes in 1..=256 that divides [env] num_envs",
        );
        check(
            &mut e,
            "run",
            ["auto", "torch"].contains(&self.run.learner.as_str()),
            "learner",
            format!("{:?}", self.run.learner),
            "\"auto\" or \"torch\"",
        );
        check(
            &mut e,
            "run",
            self.run.worker_timeout_s.is_finite()
                && (0.1..=86_400.0).contains(&self.run.worker_timeout_s),
            "worker_timeout_s",
            self.run.worker_timeout_s.to_string(),
            "a number of seconds in [0.1, 86400]",
        );
        check(
            &mut e,
            "run",
            self.run.max_restarts <= 1_000_000,
            "max_restarts",
            self.run.max_restarts.to_string(),
            "an integer in 0..=1000000",
        );
        check(
            &mut e,
            "run",
            self.run.restart_backoff_s.is_finite()
                && (0.0..=30.0).contains(&self.run.restart_backoff_s),
            "restart_backoff_s",
            self.run.restart_backoff_s.to_string(),
            "a number of seconds in [0, 30]",
        );
        check(
            &mut e,
            "run",
            self.run.learner_timeout_s.is_finite()
                && (1.0..=604_800.0).contains(&self.run.learner_timeout_s),
            "learner_timeout_s",
            self.run.learner_timeout_s.to_string(),
            "a number of seconds in [1, 604800]",
        );
        check(
            &mut e,
            "eval",
            self.eval.timeout_s.is_finite() && (0.1..=604_800.0).contains(&self.eval.timeout_s),
            "timeout_s",
            self.eval.timeout_s.to_string(),
            "a number of seconds in [0.1, 604800]",
        );
        e.extend(
            self.ppo
                .validate(self.env.num_envs)
                .into_iter()
                .map(|f| ("ppo", f)),
        );
        let off_policy_tables: [(&'static str, bool, Vec<FieldError>); 3] = [
            (
                "sac",
                self.sac.is_some(),
                self.sac
                    .as_ref()
                    .map(SacConfig::validate)
                    .unwrap_or_default(),
            ),
            (
                "td3",
                self.td3.is_some(),
                self.td3
                    .as_ref()
                    .map(Td3Config::validate)
                    .unwrap_or_default(),
            ),
            (
                "dqn",
                self.dqn.is_some(),
                self.dqn
                    .as_ref()
                    .map(DqnConfig::validate)
                    .unwrap_or_default(),
            ),
        ];
        for (table, present, errors) in off_policy_tables {
            e.extend(errors.into_iter().map(|f| (table, f)));
            check(
                &mut e,
                "run",
                !present || self.run.algo == table,
                "algo",
                format!("{:?}", self.run.algo),
                match table {
                    "sac" => "\"sac\" for a config with a [sac] table (or remove the table)",
                    "td3" => "\"td3\" for a config with a [td3] table (or remove the table)",
                    _ => "\"dqn\" for a config with a [dqn] table (or remove the table)",
                },
            );
        }
        check(
            &mut e,
            "run",
            ["sync", "async"].contains(&self.run.collection.as_str()),
            "collection",
            format!("{:?}", self.run.collection),
            "\"sync\" or \"async\"",
        );
        if self.is_async() {
            check(
                &mut e,
                "run",
                self.off_policy().is_some() && self.run.num_workers > 0,
                "collection",
                format!("{:?}", self.run.collection),
                "\"sync\" unless an off-policy algo (sac, td3, dqn) runs with worker processes (num_workers >= 1)",
            );
        }
        check(
            &mut e,
            "run",
            self.run.max_policy_lag <= MAX_CONFIG_INT,
            "max_policy_lag",
            self.run.max_policy_lag.to_string(),
            "an integer in 0..=9223372036854775807",
        );
        if self.off_policy().is_some() {
            for (field, on) in [
                ("normalize_obs", self.env.normalize_obs),
                ("normalize_reward", self.env.normalize_reward),
            ] {
                check(
                    &mut e,
                    "env",
                    !on,
                    field,
                    on.to_string(),
                    "false with an off-policy algo (sac, td3, dqn): normalisation is PPO's only",
                );
            }
        }
        e
    }
}
