//! The off-policy agents' networks and updates, computed in the libtorch
//! plugin (`rl-torch`'s `sac`, `td3` and `dqn` modules): the C ABI they
//! share with it, and [`TorchAgent`], the handle a learner holds.
//!
//! ```text
//! ferrorl_torch_agent_new(spec_json, len, device) -> agent | null
//! ferrorl_torch_agent_free(agent)
//! ferrorl_torch_agent_describe(agent, buf, cap) -> len   JSON {tensors: [[name, len]], counters: [name]}
//! ferrorl_torch_agent_get(agent, index, out, len) / _set(agent, index, data, len)   one state tensor
//! ferrorl_torch_agent_get_counters(agent, out, n) / _set_counters(agent, data, n)   Adam steps
//! ferrorl_torch_agent_update(agent, transitions, stats, n)   one gradient step
//! ```
//!
//! The agent's state is a list of named flat `f32` tensors (networks,
//! target networks, Adam moments, SAC's `log_alpha`) and named counters
//! (Adam steps); the learner initialises them, checkpoints them and puts
//! them back through this list. Every random number an update uses
//! (SAC's reparameterisation noise, TD3's target smoothing noise) comes in
//! the transitions, drawn by the learner's generator, and the schedule
//! (which update also trains the actor, which updates the targets) is the
//! learner's: the plugin only does the maths of one update.

use std::ffi::c_void;

use rl_policy::Activation;
use serde::{Deserialize, Serialize};

pub use crate::engine::agent_abi::AbiTransitions;
use crate::engine::gradient::Device;
use crate::engine::libtorch::{last_error_of, plugin_handle, Plugin};
use crate::offpolicy::config::{DqnConfig, SacConfig, Td3Config};

/// Which algorithm, with its table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentAlgo {
    Sac(SacConfig),
    Td3(Td3Config),
    Dqn(DqnConfig),
}

/// What the plugin builds an agent from (sent as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub obs_dim: usize,
    /// Action values (SAC, TD3) or choices (DQN).
    pub action_size: usize,
    /// The actor's hidden layers (DQN: the Q-network's).
    pub actor_hidden: Vec<usize>,
    /// The Q-networks' hidden layers (SAC, TD3).
    pub critic_hidden: Vec<usize>,
    pub activation: Activation,
    /// `(high - low) / 2` and `(high + low) / 2` of the action space (SAC,
    /// TD3; empty for DQN).
    pub action_scale: Vec<f32>,
    pub action_bias: Vec<f32>,
    pub algo: AgentAlgo,
}

/// The `(in, out)` sizes of an MLP's linear layers.
pub fn mlp_layers(input: usize, hidden: &[usize], output: usize) -> Vec<(usize, usize)> {
    rl_policy::layer_sizes(input, hidden, output)
}

/// Offsets of one MLP's parameters in its flat tensor, in PyTorch's
/// `parameters()` order: layer by layer, weight `[out, in]` then bias.
pub fn mlp_offsets(layers: &[(usize, usize)]) -> (Vec<(usize, usize)>, usize) {
    let mut at = 0;
    let offsets = layers
        .iter()
        .map(|&(i, o)| {
            let here = (at, at + i * o);
            at += i * o + o;
            here
        })
        .collect();
    (offsets, at)
}

impl AgentSpec {
    /// The actor's (DQN: the Q-network's) layers.
    pub fn actor_layers(&self) -> Vec<(usize, usize)> {
        let out = match self.algo {
            AgentAlgo::Sac(_) => 2 * self.action_size,
            AgentAlgo::Td3(_) | AgentAlgo::Dqn(_) => self.action_size,
        };
        mlp_layers(self.obs_dim, &self.actor_hidden, out)
    }

    /// A Q-network's layers (SAC, TD3): `[obs, action] -> 1`.
    pub fn critic_layers(&self) -> Vec<(usize, usize)> {
        mlp_layers(self.obs_dim + self.action_size, &self.critic_hidden, 1)
    }

    /// The names of what one update reports, in order.
    pub fn stat_names(&self) -> &'static [&'static str] {
        match self.algo {
            AgentAlgo::Sac(_) => &SAC_STATS,
            AgentAlgo::Td3(_) => &TD3_STATS,
            AgentAlgo::Dqn(_) => &DQN_STATS,
        }
    }

    /// Standard normal numbers one update needs, per batch row and action
    /// value: SAC's next-state sample, then per actor step its sample (and
    /// with `autotune` alpha's); TD3's smoothing noise; none for DQN.
    pub fn noise_rows(&self, update_actor: bool) -> usize {
        match &self.algo {
            AgentAlgo::Sac(c) if update_actor => {
                1 + c.policy_frequency as usize * (1 + usize::from(c.autotune))
            }
            AgentAlgo::Sac(_) | AgentAlgo::Td3(_) => 1,
            AgentAlgo::Dqn(_) => 0,
        }
    }
}

/// SAC's statistics (NaN where an update did not train the actor).
pub const SAC_STATS: [&str; 8] = [
    "qf1_values",
    "qf2_values",
    "qf1_loss",
    "qf2_loss",
    "qf_loss",
    "actor_loss",
    "alpha",
    "alpha_loss",
];
pub const TD3_STATS: [&str; 6] = [
    "qf1_values",
    "qf2_values",
    "qf1_loss",
    "qf2_loss",
    "qf_loss",
    "actor_loss",
];
pub const DQN_STATS: [&str; 2] = ["td_loss", "q_values"];

/// The agent's state as the plugin lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentLayout {
    /// Flat tensors, `(name, values)`.
    pub tensors: Vec<(String, usize)>,
    /// Counters (Adam steps).
    pub counters: Vec<String>,
}

/// One update's input, on the learner's side.
pub struct Transitions<'a> {
    pub batch: &'a crate::offpolicy::replay::Batch,
    pub noise: &'a [f32],
    pub update_actor: bool,
    pub update_targets: bool,
}

/// An agent in the plugin.
pub struct TorchAgent {
    plugin: &'static Plugin,
    agent: *mut c_void,
    layout: AgentLayout,
    stats: usize,
}

// SAFETY: the handle is only used through `&mut self` or `&self` from one
// thread at a time, like the tch tensors it holds.
unsafe impl Send for TorchAgent {}

impl TorchAgent {
    /// A new agent (all state zero: set it with [`TorchAgent::set_tensor`])
    /// on `device`.
    pub fn new(spec: &AgentSpec, device: Device) -> Result<Self, String> {
        let plugin = plugin_handle()?;
        let json = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
        // SAFETY: the bytes are valid for the call.
        let agent = unsafe { (plugin.agent_new)(json.as_ptr(), json.len(), device.to_abi()) };
        if agent.is_null() {
            return Err(last_error_of(plugin));
        }
        let mut buf = vec![0u8; 1 << 16];
        // SAFETY: a live agent; the buffer is valid for its length.
        let n = unsafe { (plugin.agent_describe)(agent, buf.as_mut_ptr(), buf.len()) };
        let layout: AgentLayout = serde_json::from_slice(&buf[..n.min(buf.len())])
            .map_err(|e| format!("the plugin described its agent wrongly: {e}"))?;
        Ok(TorchAgent {
            plugin,
            agent,
            layout,
            stats: spec.stat_names().len(),
        })
    }

    pub fn layout(&self) -> &AgentLayout {
        &self.layout
    }

    fn check(&self, code: i32, what: &str) -> Result<(), String> {
        if code == 0 {
            Ok(())
        } else {
            Err(format!(
                "libtorch agent: {what}: {}",
                last_error_of(self.plugin)
            ))
        }
    }

    /// State tensor `index` (of [`TorchAgent::layout`]).
    pub fn tensor(&self, index: usize) -> Result<Vec<f32>, String> {
        let len = self.layout.tensors[index].1;
        let mut out = vec![0.0_f32; len];
        // SAFETY: a live agent; `out` holds `len` values.
        let code = unsafe { (self.plugin.agent_get)(self.agent, index, out.as_mut_ptr(), len) };
        self.check(code, "reading its state")?;
        Ok(out)
    }

    pub fn set_tensor(&mut self, index: usize, values: &[f32]) -> Result<(), String> {
        // SAFETY: a live agent; `values` is valid for its length.
        let code =
            unsafe { (self.plugin.agent_set)(self.agent, index, values.as_ptr(), values.len()) };
        self.check(code, "setting its state")
    }

    pub fn counters(&self) -> Result<Vec<u64>, String> {
        let mut out = vec![0_u64; self.layout.counters.len()];
        // SAFETY: a live agent; `out` holds one value per counter.
        let code =
            unsafe { (self.plugin.agent_get_counters)(self.agent, out.as_mut_ptr(), out.len()) };
        self.check(code, "reading its counters")?;
        Ok(out)
    }

    pub fn set_counters(&mut self, values: &[u64]) -> Result<(), String> {
        // SAFETY: a live agent; `values` is valid for its length.
        let code =
            unsafe { (self.plugin.agent_set_counters)(self.agent, values.as_ptr(), values.len()) };
        self.check(code, "setting its counters")
    }

    /// One gradient step; its statistics in `stat_names` order.
    pub fn update(&mut self, t: &Transitions<'_>) -> Result<Vec<f64>, String> {
        let b = t.batch;
        let abi = AbiTransitions {
            batch_size: b.size,
            obs: b.obs.as_ptr(),
            actions: b.actions.as_ptr(),
            rewards: b.rewards.as_ptr(),
            next_obs: b.next_obs.as_ptr(),
            dones: b.dones.as_ptr(),
            noise: t.noise.as_ptr(),
            noise_len: t.noise.len(),
            update_actor: u32::from(t.update_actor),
            update_targets: u32::from(t.update_targets),
        };
        let mut stats = vec![0.0_f64; self.stats];
        // SAFETY: a live agent; `abi` points into `t`, alive for the call;
        // `stats` holds `self.stats` values.
        let code = unsafe {
            (self.plugin.agent_update)(self.agent, &abi, stats.as_mut_ptr(), stats.len())
        };
        self.check(code, "update")?;
        Ok(stats)
    }
}

impl Drop for TorchAgent {
    fn drop(&mut self) {
        // SAFETY: a live agent, freed once.
        unsafe { (self.plugin.agent_free)(self.agent) }
    }
}
