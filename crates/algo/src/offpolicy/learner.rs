//! The off-policy learner: SAC, TD3 and DQN as the training loop drives
//! them. It reads like the training half of CleanRL's files: each chunk of
//! transitions goes into the replay buffer, then `gradient_steps` updates,
//! each on a batch sampled from it; which update also trains the actor and
//! which moves the target networks is decided here, the maths of one
//! update is in the libtorch plugin (`rl-torch`: `sac.rs`, `td3.rs`,
//! `dqn.rs`).
//!
//! Where we differ from CleanRL, and why:
//! * CleanRL steps one env step, then trains; we collect a chunk of
//!   `train_frequency` steps of every env, then run `gradient_steps`
//!   updates (SB3's `train_freq` and `gradient_steps`), so that workers
//!   deliver transitions in chunks. The defaults (1 and 1, one env) are
//!   CleanRL's loop.
//! * The delayed-update rules (`policy_frequency`, SAC's
//!   `target_network_frequency`) count updates, not env steps (SB3's
//!   `_n_updates`): the same with CleanRL's one update per env step.
//! * Exploration is decided per chunk: random actions while the env steps
//!   before the chunk are below `learning_starts`, DQN's epsilon at the
//!   chunk's first step. DQN's target network is updated at the end of a
//!   chunk in which the env steps passed a multiple of
//!   `target_network_frequency`.
//! * Initial weights are PyTorch's default `nn.Linear` initialisation,
//!   drawn by our generator from the run's seed.

use std::borrow::Cow;
use std::ops::Range;

use rl_env::rng::Rng;
use rl_env::seeds::{init_seed, shuffle_seed};
use rl_policy::{Exploration, ObsNormalizer, PolicySpec, Rollout};

use crate::algorithm::{Algorithm, LearnerState, RunSpec, Stats, UpdateError};
use crate::divergence::{Divergence, Stage};
use crate::engine::agent::{
    mlp_offsets, AgentAlgo, AgentSpec, TorchAgent, Transitions, SAC_STATS, TD3_STATS,
};
use crate::engine::gradient::Device;
use crate::offpolicy::config::Common;
use crate::offpolicy::replay::{Batch, ReplayBuffer};

/// DQN's columns: the update's, then the epsilon the chunk acted with.
pub const DQN_COLUMNS: [&str; 3] = ["td_loss", "q_values", "epsilon"];

/// The prefix of the agent's tensors and counters in a [`LearnerState`].
const AGENT: &str = "agent.";
/// The prefix of the replay buffer's.
const REPLAY: &str = "replay.";

/// See the module documentation.
pub struct OffPolicyLearner {
    spec: AgentSpec,
    acting: PolicySpec,
    common: Common,
    run: RunSpec,
    agent: TorchAgent,
    replay: ReplayBuffer,
    /// Samples batches and draws the updates' noise.
    rng: Rng,
    updates_done: u64,
    num_updates: u64,
    gradient_steps_done: u64,
    /// The acting policy of the current weights, in `acting`'s layout.
    acting_weights: Vec<f32>,
    batch: Batch,
    noise: Vec<f32>,
}

/// PyTorch's default `nn.Linear` initialisation of one MLP's flat tensor
/// (see [`mlp_offsets`]): weights and biases uniform in
/// `[-1/sqrt(in), 1/sqrt(in)]`.
fn torch_default_init(layers: &[(usize, usize)], rng: &mut Rng) -> Vec<f32> {
    let (_, total) = mlp_offsets(layers);
    let mut flat = Vec::with_capacity(total);
    for &(input, output) in layers {
        let bound = 1.0 / (input as f64).sqrt();
        for _ in 0..input * output + output {
            flat.push(rng.uniform(-bound, bound) as f32);
        }
    }
    flat
}

impl OffPolicyLearner {
    /// The learner of `algo` acting through `acting` (whose head says the
    /// algorithm's), with Q-networks of `critic_hidden`, for actions in
    /// `bounds` (SAC, TD3), on `device`.
    pub fn new(
        acting: PolicySpec,
        algo: AgentAlgo,
        critic_hidden: Vec<usize>,
        bounds: Option<(&[f32], &[f32])>,
        run: &RunSpec,
        device: Device,
    ) -> Result<Self, String> {
        let (action_scale, action_bias) = match bounds {
            Some((low, high)) => {
                if let Some(d) =
                    (0..low.len()).find(|&d| !(low[d].is_finite() && high[d].is_finite()))
                {
                    return Err(format!(
                        "action bound {d} is [{}, {}]: SAC and TD3 squash actions into finite bounds",
                        low[d], high[d]
                    ));
                }
                (
                    low.iter().zip(high).map(|(l, h)| (h - l) / 2.0).collect(),
                    low.iter().zip(high).map(|(l, h)| (h + l) / 2.0).collect(),
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        let spec = AgentSpec {
            obs_dim: acting.obs_dim,
            action_size: acting.head.size(),
            actor_hidden: acting.actor_hidden.clone(),
            critic_hidden,
            activation: acting.activation,
            action_scale,
            action_bias,
            algo,
        };
        let common = match &spec.algo {
            AgentAlgo::Sac(c) => c.common(),
            AgentAlgo::Td3(c) => c.common(),
            AgentAlgo::Dqn(c) => c.common(),
        };
        let mut agent = TorchAgent::new(&spec, device)?;
        // Every tensor from the run's seed: networks first drawn, targets
        // copies of them, optimizer moments zero.
        let mut rng = Rng::from_seed(init_seed(run.seed));
        let names: Vec<(String, usize)> = agent.layout().tensors.clone();
        let mut made: Vec<(String, Vec<f32>)> = Vec::new();
        for (name, len) in &names {
            let values = match name.as_str() {
                "actor" | "q" => torch_default_init(&spec.actor_layers(), &mut rng),
                "qf1" | "qf2" => torch_default_init(&spec.critic_layers(), &mut rng),
                "log_alpha" => match &spec.algo {
                    // CleanRL: log_alpha starts at 0 when tuned.
                    AgentAlgo::Sac(c) if !c.autotune => vec![c.alpha.ln() as f32],
                    _ => vec![0.0],
                },
                target if target.ends_with("_target") => {
                    let online = target.trim_end_matches("_target");
                    made.iter()
                        .find(|(n, _)| n == online)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| format!("the agent lists {target} before {online}"))?
                }
                // Optimizer moments.
                moments if moments.ends_with(".exp_avg") || moments.ends_with(".exp_avg_sq") => {
                    vec![0.0; *len]
                }
                other => {
                    return Err(format!(
                        "the agent lists {other}, which the learner cannot initialise"
                    ))
                }
            };
            if values.len() != *len {
                return Err(format!(
                    "the agent's {name} holds {len} values, the learner made {}",
                    values.len()
                ));
            }
            made.push((name.clone(), values));
        }
        for (index, (_, values)) in made.iter().enumerate() {
            agent.set_tensor(index, values)?;
        }
        let chunk = (common.train_frequency * run.num_envs).max(1) as u64;
        let replay = ReplayBuffer::new(
            common.buffer_size.min(usize::MAX as u64) as usize,
            acting.obs_dim,
            acting.head.action_dim(),
        );
        let mut learner = OffPolicyLearner {
            num_updates: (run.total_timesteps / chunk).max(1),
            replay,
            rng: Rng::from_seed(shuffle_seed(run.seed)),
            updates_done: 0,
            gradient_steps_done: 0,
            acting_weights: Vec::new(),
            batch: Batch::default(),
            noise: Vec::new(),
            spec,
            acting,
            common,
            run: *run,
            agent,
        };
        learner.refresh_acting_weights()?;
        Ok(learner)
    }

    /// Env steps per chunk, over all envs.
    pub fn chunk_steps(&self) -> u64 {
        (self.common.train_frequency * self.run.num_envs) as u64
    }

    pub fn replay(&self) -> &ReplayBuffer {
        &self.replay
    }

    pub fn agent_spec(&self) -> &AgentSpec {
        &self.spec
    }

    /// The acting network's tensor in the agent's state.
    fn acting_tensor(&self) -> usize {
        let name = match self.spec.algo {
            AgentAlgo::Dqn(_) => "q",
            _ => "actor",
        };
        self.agent
            .layout()
            .tensors
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or(0)
    }

    /// Copies the acting network into the acting policy's layout
    /// (`actor.{2i}.weight` / `.bias`, plus `action_scale` and
    /// `action_bias`).
    fn refresh_acting_weights(&mut self) -> Result<(), String> {
        let flat = self.agent.tensor(self.acting_tensor())?;
        let layout = self.acting.layout();
        let (offsets, _) = mlp_offsets(&self.spec.actor_layers());
        let mut out = vec![0.0_f32; layout.total_len];
        for entry in &layout.entries {
            let source: &[f32] = match entry.name.as_str() {
                "action_scale" => &self.spec.action_scale,
                "action_bias" => &self.spec.action_bias,
                name => {
                    let parsed = name
                        .strip_prefix("actor.")
                        .and_then(|rest| rest.split_once('.'))
                        .and_then(|(i, kind)| Some((i.parse::<usize>().ok()? / 2, kind)));
                    let Some((layer, kind)) = parsed else {
                        return Err(format!(
                            "the acting layout has {name}, which no agent tensor holds"
                        ));
                    };
                    let (w, b) = offsets[layer];
                    let at = if kind == "weight" { w } else { b };
                    &flat[at..at + entry.len]
                }
            };
            out[entry.offset..entry.offset + entry.len].copy_from_slice(source);
        }
        self.acting_weights = out;
        Ok(())
    }

    /// Whether update number `k` (from 0) trains the actor and moves the
    /// targets.
    fn schedule(&self, k: u64) -> (bool, bool) {
        match &self.spec.algo {
            AgentAlgo::Sac(c) => (
                k % c.policy_frequency == 0,
                k % c.target_network_frequency == 0,
            ),
            // CleanRL moves TD3's targets with each actor update.
            AgentAlgo::Td3(c) => {
                let actor = k % c.policy_frequency == 0;
                (actor, actor)
            }
            AgentAlgo::Dqn(_) => (false, false),
        }
    }

    fn divergence(&self, quantity: String, step: u64) -> Divergence {
        let keys: &[&'static str] = match self.spec.algo {
            AgentAlgo::Sac(_) => &["sac.q_lr", "sac.policy_lr"],
            AgentAlgo::Td3(_) => &["td3.learning_rate"],
            AgentAlgo::Dqn(_) => &["dqn.learning_rate"],
        };
        Divergence {
            update: self.updates_done + 1,
            stage: Stage::Minibatch {
                epoch: 1,
                minibatch: step as usize + 1,
            },
            quantity,
            value: f64::NAN,
            context: None,
            suspects: keys
                .iter()
                .map(|k| (*k, "too large for this task".to_string()))
                .collect(),
        }
    }

    fn update_chunk(&mut self, chunk: &Rollout) -> Result<Stats, UpdateError> {
        self.replay.add_chunk(chunk);
        let before = self.updates_done * self.chunk_steps();
        let after = before + (chunk.num_steps * chunk.num_envs) as u64;
        let names = self.spec.stat_names();
        let mut sums = vec![(0.0_f64, 0_u32); names.len()];
        if after > self.common.learning_starts && !self.replay.is_empty() {
            let steps = self.common.gradient_steps;
            for step in 0..steps {
                let k = self.gradient_steps_done;
                let (update_actor, mut update_targets) = self.schedule(k);
                if let AgentAlgo::Dqn(c) = &self.spec.algo {
                    let f = c.target_network_frequency;
                    update_targets = step + 1 == steps && after / f > before / f;
                }
                self.replay
                    .sample(self.common.batch_size, &mut self.rng, &mut self.batch);
                let n = self.spec.noise_rows(update_actor)
                    * self.common.batch_size
                    * self.spec.action_size;
                self.noise.clear();
                self.noise
                    .extend((0..n).map(|_| self.rng.standard_normal() as f32));
                let stats = self
                    .agent
                    .update(&Transitions {
                        batch: &self.batch,
                        noise: &self.noise,
                        update_actor,
                        update_targets,
                    })
                    .map_err(|e| match e.split_once("non-finite: ") {
                        Some((_, what)) => {
                            UpdateError::Diverged(self.divergence(what.to_string(), step))
                        }
                        None => UpdateError::Diverged(self.divergence(e, step)),
                    })?;
                self.gradient_steps_done += 1;
                for (sum, value) in sums.iter_mut().zip(stats) {
                    if value.is_finite() {
                        sum.0 += value;
                        sum.1 += 1;
                    }
                }
            }
            self.refresh_acting_weights()
                .map_err(|e| UpdateError::Diverged(self.divergence(e, 0)))?;
        }
        let mut stats: Vec<(&'static str, f64)> = names
            .iter()
            .zip(&sums)
            .map(|(name, (sum, n))| (*name, if *n > 0 { sum / *n as f64 } else { f64::NAN }))
            .collect();
        if let AgentAlgo::Dqn(_) = self.spec.algo {
            stats.push(("epsilon", self.exploration().epsilon));
        }
        self.updates_done += 1;
        Ok(Stats(stats))
    }
}

impl Algorithm for OffPolicyLearner {
    fn name(&self) -> &'static str {
        match self.spec.algo {
            AgentAlgo::Sac(_) => "sac",
            AgentAlgo::Td3(_) => "td3",
            AgentAlgo::Dqn(_) => "dqn",
        }
    }

    fn stat_names(&self) -> &'static [&'static str] {
        match self.spec.algo {
            AgentAlgo::Sac(_) => &SAC_STATS,
            AgentAlgo::Td3(_) => &TD3_STATS,
            AgentAlgo::Dqn(_) => &DQN_COLUMNS,
        }
    }

    fn updates_done(&self) -> u64 {
        self.updates_done
    }

    fn num_updates(&self) -> u64 {
        self.num_updates
    }

    fn acting_weights(&self) -> Cow<'_, [f32]> {
        Cow::Borrowed(&self.acting_weights)
    }

    fn obs_normalizer(&self) -> Option<&ObsNormalizer> {
        None
    }

    fn exploration(&self) -> Exploration {
        let steps = self.updates_done * self.chunk_steps();
        let mut e = Exploration {
            random: steps < self.common.learning_starts,
            ..Exploration::default()
        };
        match &self.spec.algo {
            AgentAlgo::Td3(c) => e.noise = c.exploration_noise,
            AgentAlgo::Dqn(c) => e.epsilon = c.epsilon(steps, self.run.total_timesteps),
            AgentAlgo::Sac(_) => {}
        }
        e
    }

    fn updates_per_row(&self) -> u64 {
        self.common.log_interval.div_ceil(self.chunk_steps()).max(1)
    }

    /// A chunk's updates are not abandoned: they are short (a stop waits
    /// for at most `gradient_steps` updates).
    fn update(
        &mut self,
        experience: &Rollout,
        _abandon: &dyn Fn() -> bool,
    ) -> Result<Stats, UpdateError> {
        self.update_chunk(experience)
    }

    fn envs_restarted(&mut self, _envs: Range<usize>) {}

    fn state(&self, lean: bool) -> LearnerState {
        let layout = self.agent.layout();
        let mut tensors: Vec<(String, Vec<f32>)> = layout
            .tensors
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                // A plugin that cannot read its own tensors has failed
                // like a libtorch error: the learner stops with it.
                let values = self.agent.tensor(i).unwrap_or_else(|e| panic!("{e}"));
                (format!("{AGENT}{name}"), values)
            })
            .collect();
        let counters = self.agent.counters().unwrap_or_else(|e| panic!("{e}"));
        let mut counters: Vec<(String, u64)> = layout
            .counters
            .iter()
            .zip(counters)
            .map(|(n, v)| (format!("{AGENT}{n}"), v))
            .collect();
        counters.push(("gradient_steps".to_string(), self.gradient_steps_done));
        let limit = self.common.save_replay_max_mb.saturating_mul(1 << 20);
        if !lean && self.common.save_replay && self.replay.bytes() <= limit {
            let (parts, pos) = self.replay.parts();
            for (name, values) in ReplayBuffer::PART_NAMES.iter().zip(parts) {
                tensors.push((format!("{REPLAY}{name}"), values.to_vec()));
            }
            counters.push((format!("{REPLAY}pos"), pos as u64));
        }
        LearnerState {
            weights: self.acting_weights.clone(),
            adam_exp_avg: Vec::new(),
            adam_exp_avg_sq: Vec::new(),
            adam_step: 0,
            obs_norm: None,
            reward_scaler: None,
            rng: self.rng.state(),
            updates_done: self.updates_done,
            tensors,
            counters,
        }
    }

    fn restore(&mut self, state: &LearnerState) -> Result<(), String> {
        let layout = self.agent.layout().clone();
        for (index, (name, len)) in layout.tensors.iter().enumerate() {
            let values = state.tensor(&format!("{AGENT}{name}")).ok_or_else(|| {
                format!("the checkpoint has no {AGENT}{name} for {}", self.name())
            })?;
            if values.len() != *len {
                return Err(format!(
                    "{AGENT}{name} holds {} values, this {} needs {len}",
                    values.len(),
                    self.name()
                ));
            }
            self.agent.set_tensor(index, values)?;
        }
        let counters = layout
            .counters
            .iter()
            .map(|n| {
                state
                    .counter(&format!("{AGENT}{n}"))
                    .ok_or_else(|| format!("the checkpoint has no counter {AGENT}{n}"))
            })
            .collect::<Result<Vec<u64>, String>>()?;
        self.agent.set_counters(&counters)?;
        self.gradient_steps_done = state
            .counter("gradient_steps")
            .ok_or("the checkpoint has no counter gradient_steps")?;
        let parts: Option<Vec<Vec<f32>>> = ReplayBuffer::PART_NAMES
            .iter()
            .map(|n| state.tensor(&format!("{REPLAY}{n}")).map(<[f32]>::to_vec))
            .collect();
        match (parts, state.counter(&format!("{REPLAY}pos"))) {
            (Some(parts), Some(pos)) => {
                let parts: [Vec<f32>; 5] = parts
                    .try_into()
                    .map_err(|_| "the replay buffer has the wrong parts".to_string())?;
                self.replay.restore(parts, pos as usize)?;
            }
            _ => self.replay.clear(),
        }
        self.rng = Rng::from_state(state.rng).ok_or("the generator state is invalid")?;
        self.updates_done = state.updates_done;
        self.refresh_acting_weights()
    }
}
