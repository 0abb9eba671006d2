//! DQN's update, as in CleanRL's `dqn.py`, with SB3's Huber loss
//! (`F.smooth_l1_loss`; CleanRL uses the squared error) and a Double-DQN
//! switch (van Hasselt et al. 2016: the online network picks the next
//! action, the target network values it).

use rl_algo::offpolicy::config::DqnConfig;
use tch::{Device, Kind, Reduction};

use crate::adam::Adam;
use crate::agents::mlp::{finite, finite_grad, FlatMlp};
use crate::agents::{AgentParts, Batch, StateParts};

pub struct Dqn {
    c: DqnConfig,
    pub obs_dim: usize,
    pub q: FlatMlp,
    pub q_target: FlatMlp,
    pub q_adam: Adam,
}

impl Dqn {
    pub fn new(parts: &AgentParts, c: DqnConfig, device: Device) -> Self {
        let q = || FlatMlp::new(&parts.actor_layers, parts.activation, device);
        let network = q();
        Dqn {
            obs_dim: parts.obs_dim,
            q_adam: network.adam(),
            q_target: q(),
            q: network,
            c,
        }
    }

    pub fn update(&mut self, b: &Batch, update_targets: bool) -> Result<Vec<f64>, String> {
        let c = self.c.clone();
        let td_target = tch::no_grad(|| {
            let target_max = if c.double_q {
                let next_actions = self.q.forward(&b.next_obs).argmax(1, true);
                self.q_target
                    .forward(&b.next_obs)
                    .gather(1, &next_actions, false)
                    .squeeze_dim(1)
            } else {
                self.q_target.forward(&b.next_obs).max_dim(1, false).0
            };
            b.rewards.flatten(0, -1) + target_max * c.gamma * (-b.dones.flatten(0, -1) + 1.0)
        });
        let actions = b.actions.to_kind(Kind::Int64).view([-1, 1]);
        let old_val = self
            .q
            .forward(&b.obs)
            .gather(1, &actions, false)
            .squeeze_dim(1);
        let loss = old_val.smooth_l1_loss(&td_target, Reduction::Mean, 1.0);
        let stats = vec![
            finite(&loss, "the TD loss")?,
            tch::no_grad(|| old_val.mean(Kind::Float)).double_value(&[]),
        ];
        self.q.zero_grad();
        loss.backward();
        finite_grad(&self.q.flat, "the Q-network")?;
        self.q_adam.step(&mut self.q.flat, c.learning_rate);
        if update_targets {
            self.q_target.soft_update_from(&self.q, c.tau);
        }
        Ok(stats)
    }

    pub fn parts(&mut self) -> StateParts<'_> {
        (
            vec![
                ("q", &mut self.q.flat),
                ("q_target", &mut self.q_target.flat),
            ],
            vec![("q_adam", &mut self.q_adam)],
        )
    }
}
