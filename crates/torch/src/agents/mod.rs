//! The off-policy agents (SAC, TD3, DQN): one update each, on tensors, for
//! `rl_algo::offpolicy::learner::OffPolicyLearner` through the plugin's
//! `ferrorl_torch_agent_*` functions.
//!
//! The state an agent lists ([`Agent::describe`]) is every network's flat
//! tensor, then each Adam's two moments (`NAME.exp_avg`,
//! `NAME.exp_avg_sq`); the counters are the Adams' steps (`NAME.step`).

pub mod dqn;
pub mod mlp;
pub mod sac;
pub mod td3;

use rl_algo::engine::agent::{AgentAlgo, AgentLayout, AgentSpec};
use rl_policy::Activation;
use tch::{Device, Kind, Tensor};

use crate::adam::Adam;

/// An agent's state: its flat tensors and its optimizers, by name.
pub type StateParts<'a> = (
    Vec<(&'static str, &'a mut Tensor)>,
    Vec<(&'static str, &'a mut Adam)>,
);

/// What the algorithms' constructors need from the spec.
pub struct AgentParts {
    pub obs_dim: usize,
    pub actor_layers: Vec<(usize, usize)>,
    pub critic_layers: Vec<(usize, usize)>,
    pub activation: Activation,
    pub action_size: usize,
    pub action_scale: Vec<f32>,
    pub action_bias: Vec<f32>,
}

impl AgentParts {
    pub fn tensor(&self, values: &[f32], device: Device) -> Tensor {
        Tensor::from_slice(values).to_device(device)
    }
}

/// One update's batch, as tensors on the agent's device.
pub struct Batch {
    pub obs: Tensor,
    pub actions: Tensor,
    pub rewards: Tensor,
    pub next_obs: Tensor,
    pub dones: Tensor,
    noise: Tensor, // [rows, B, action_size]
}

impl Batch {
    /// Rows are `[B, obs_dim]` etc. (see `AbiTransitions`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        obs: &[f32],
        actions: &[f32],
        rewards: &[f32],
        next_obs: &[f32],
        dones: &[f32],
        noise: &[f32],
        batch: usize,
        action_values: usize,
        device: Device,
    ) -> Self {
        let b = batch as i64;
        let t = |v: &[f32], width: i64| Tensor::from_slice(v).view([b, width]).to_device(device);
        let od = obs.len() as i64 / b.max(1);
        let ad = action_values as i64;
        let rows = noise.len() as i64 / (b * ad).max(1);
        Batch {
            obs: t(obs, od),
            actions: t(actions, actions.len() as i64 / b.max(1)),
            rewards: t(rewards, 1),
            next_obs: t(next_obs, od),
            dones: t(dones, 1),
            noise: Tensor::from_slice(noise)
                .view([rows, b, ad])
                .to_device(device),
        }
    }

    /// Noise row `k`, `[B, action_size]`.
    pub fn noise(&self, k: i64) -> Tensor {
        self.noise.get(k)
    }
}

pub enum Agent {
    Sac(sac::Sac),
    Td3(td3::Td3),
    Dqn(dqn::Dqn),
}

impl Agent {
    /// The observation size (the acting network's input).
    pub fn obs_dim(&self) -> usize {
        match self {
            Agent::Sac(a) => a.obs_dim,
            Agent::Td3(a) => a.obs_dim,
            Agent::Dqn(a) => a.obs_dim,
        }
    }

    /// Values per action in a batch: `action_size` (SAC, TD3) or 1 (DQN's
    /// index).
    pub fn action_values(&self, action_size: usize) -> usize {
        match self {
            Agent::Dqn(_) => 1,
            _ => action_size,
        }
    }

    pub fn new(spec: &AgentSpec, device: Device) -> Self {
        let parts = AgentParts {
            obs_dim: spec.obs_dim,
            actor_layers: spec.actor_layers(),
            critic_layers: spec.critic_layers(),
            activation: spec.activation,
            action_size: spec.action_size,
            action_scale: spec.action_scale.clone(),
            action_bias: spec.action_bias.clone(),
        };
        match &spec.algo {
            AgentAlgo::Sac(c) => Agent::Sac(sac::Sac::new(&parts, c.clone(), device)),
            AgentAlgo::Td3(c) => Agent::Td3(td3::Td3::new(&parts, c.clone(), device)),
            AgentAlgo::Dqn(c) => Agent::Dqn(dqn::Dqn::new(&parts, c.clone(), device)),
        }
    }

    fn parts(&mut self) -> StateParts<'_> {
        match self {
            Agent::Sac(a) => a.parts(),
            Agent::Td3(a) => a.parts(),
            Agent::Dqn(a) => a.parts(),
        }
    }

    /// Every state tensor, in the order of [`Agent::describe`].
    fn tensors(&mut self) -> Vec<(String, &mut Tensor)> {
        let (nets, adams) = self.parts();
        let mut out: Vec<(String, &mut Tensor)> =
            nets.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
        for (name, adam) in adams {
            out.push((format!("{name}.exp_avg"), &mut adam.exp_avg));
            out.push((format!("{name}.exp_avg_sq"), &mut adam.exp_avg_sq));
        }
        out
    }

    pub fn describe(&mut self) -> AgentLayout {
        let tensors = self
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.numel()))
            .collect();
        let (_, adams) = self.parts();
        AgentLayout {
            tensors,
            counters: adams
                .into_iter()
                .map(|(n, _)| format!("{n}.step"))
                .collect(),
        }
    }

    pub fn get(&mut self, index: usize) -> Result<Vec<f32>, String> {
        let mut tensors = self.tensors();
        let (_, t) = tensors
            .get_mut(index)
            .ok_or_else(|| format!("no state tensor {index}"))?;
        let flat = t
            .detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        Vec::<f32>::try_from(flat.view([-1])).map_err(|e| e.to_string())
    }

    pub fn set(&mut self, index: usize, values: &[f32]) -> Result<(), String> {
        let mut tensors = self.tensors();
        let (name, t) = tensors
            .get_mut(index)
            .ok_or_else(|| format!("no state tensor {index}"))?;
        if t.numel() != values.len() {
            return Err(format!(
                "{name} holds {} values, given {}",
                t.numel(),
                values.len()
            ));
        }
        let source = Tensor::from_slice(values)
            .to_device(t.device())
            .view(t.size().as_slice());
        tch::no_grad(|| {
            t.copy_(&source);
        });
        Ok(())
    }

    pub fn counters(&mut self) -> Vec<u64> {
        let (_, adams) = self.parts();
        adams.into_iter().map(|(_, a)| a.step).collect()
    }

    pub fn set_counters(&mut self, values: &[u64]) -> Result<(), String> {
        let (_, adams) = self.parts();
        if adams.len() != values.len() {
            return Err(format!("{} counters, given {}", adams.len(), values.len()));
        }
        for ((_, adam), v) in adams.into_iter().zip(values) {
            adam.step = *v;
        }
        Ok(())
    }

    pub fn update(
        &mut self,
        b: &Batch,
        update_actor: bool,
        update_targets: bool,
    ) -> Result<Vec<f64>, String> {
        match self {
            Agent::Sac(a) => a.update(b, update_actor, update_targets),
            Agent::Td3(a) => a.update(b, update_actor, update_targets),
            Agent::Dqn(a) => a.update(b, update_targets),
        }
    }
}
