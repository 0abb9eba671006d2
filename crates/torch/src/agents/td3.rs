//! TD3's update, as in CleanRL's `td3_continuous_action.py`: clipped
//! double Q-learning, target policy smoothing (the smoothing noise comes
//! from the learner), delayed actor and target updates.

use rl_algo::offpolicy::config::Td3Config;
use tch::{Device, Kind, Reduction, Tensor};

use crate::adam::Adam;
use crate::agents::mlp::{finite, finite_grad, FlatMlp};
use crate::agents::{AgentParts, Batch, StateParts};

pub struct Td3 {
    c: Td3Config,
    pub obs_dim: usize,
    action_scale: Tensor,
    action_bias: Tensor,
    pub actor: FlatMlp,
    pub actor_target: FlatMlp,
    pub qf1: FlatMlp,
    pub qf2: FlatMlp,
    pub qf1_target: FlatMlp,
    pub qf2_target: FlatMlp,
    pub actor_adam: Adam,
    pub qf1_adam: Adam,
    pub qf2_adam: Adam,
}

impl Td3 {
    pub fn new(parts: &AgentParts, c: Td3Config, device: Device) -> Self {
        let a = || FlatMlp::new(&parts.actor_layers, parts.activation, device);
        let q = || FlatMlp::new(&parts.critic_layers, parts.activation, device);
        let (actor, qf1, qf2) = (a(), q(), q());
        Td3 {
            obs_dim: parts.obs_dim,
            action_scale: parts.tensor(&parts.action_scale, device),
            action_bias: parts.tensor(&parts.action_bias, device),
            actor_adam: actor.adam(),
            qf1_adam: qf1.adam(),
            qf2_adam: qf2.adam(),
            actor_target: a(),
            qf1_target: q(),
            qf2_target: q(),
            actor,
            qf1,
            qf2,
            c,
        }
    }

    /// CleanRL's `Actor.forward`: `tanh`, then scaled into the bounds.
    fn act(&self, actor: &FlatMlp, x: &Tensor) -> Tensor {
        actor.forward(x).tanh() * &self.action_scale + &self.action_bias
    }

    pub fn update(
        &mut self,
        b: &Batch,
        update_actor: bool,
        update_targets: bool,
    ) -> Result<Vec<f64>, String> {
        let c = self.c.clone();
        let next_q_value = tch::no_grad(|| {
            let clipped_noise = (b.noise(0) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
                * &self.action_scale;
            // CleanRL clamps to the space's low[0] and high[0]; we clamp
            // each action value to its own bounds (the same for spaces with
            // equal bounds in every dimension).
            let low = &self.action_bias - &self.action_scale;
            let high = &self.action_bias + &self.action_scale;
            let next_state_actions = (self.act(&self.actor_target, &b.next_obs) + clipped_noise)
                .clamp_tensor(Some(&low), Some(&high));
            let next_in = Tensor::cat(&[&b.next_obs, &next_state_actions], 1);
            let qf1_next_target = self.qf1_target.forward(&next_in);
            let qf2_next_target = self.qf2_target.forward(&next_in);
            let min_qf_next_target = qf1_next_target.minimum(&qf2_next_target);
            b.rewards.flatten(0, -1)
                + (-b.dones.flatten(0, -1) + 1.0) * c.gamma * min_qf_next_target.view([-1])
        });
        let obs_actions = Tensor::cat(&[&b.obs, &b.actions], 1);
        let qf1_a_values = self.qf1.forward(&obs_actions).view([-1]);
        let qf2_a_values = self.qf2.forward(&obs_actions).view([-1]);
        let qf1_loss = qf1_a_values.mse_loss(&next_q_value, Reduction::Mean);
        let qf2_loss = qf2_a_values.mse_loss(&next_q_value, Reduction::Mean);
        let qf_loss = &qf1_loss + &qf2_loss;
        let mut stats = vec![
            tch::no_grad(|| qf1_a_values.mean(Kind::Float)).double_value(&[]),
            tch::no_grad(|| qf2_a_values.mean(Kind::Float)).double_value(&[]),
            finite(&qf1_loss, "the loss of qf1")?,
            finite(&qf2_loss, "the loss of qf2")?,
            finite(&qf_loss, "the Q loss")? / 2.0,
            f64::NAN,
        ];
        self.qf1.zero_grad();
        self.qf2.zero_grad();
        qf_loss.backward();
        finite_grad(&self.qf1.flat, "qf1")?;
        finite_grad(&self.qf2.flat, "qf2")?;
        self.qf1_adam.step(&mut self.qf1.flat, c.learning_rate);
        self.qf2_adam.step(&mut self.qf2.flat, c.learning_rate);

        if update_actor {
            let pi = self.act(&self.actor, &b.obs);
            let qf1 = &self.qf1;
            let actor_loss = qf1.frozen(|| {
                let actor_loss = -qf1
                    .forward(&Tensor::cat(&[&b.obs, &pi], 1))
                    .mean(Kind::Float);
                self.actor.zero_grad();
                actor_loss.backward();
                actor_loss
            });
            stats[5] = finite(&actor_loss, "the actor loss")?;
            finite_grad(&self.actor.flat, "the actor")?;
            self.actor_adam.step(&mut self.actor.flat, c.learning_rate);
        }
        if update_targets {
            self.actor_target.soft_update_from(&self.actor, c.tau);
            self.qf1_target.soft_update_from(&self.qf1, c.tau);
            self.qf2_target.soft_update_from(&self.qf2, c.tau);
        }
        Ok(stats)
    }

    pub fn parts(&mut self) -> StateParts<'_> {
        (
            vec![
                ("actor", &mut self.actor.flat),
                ("actor_target", &mut self.actor_target.flat),
                ("qf1", &mut self.qf1.flat),
                ("qf2", &mut self.qf2.flat),
                ("qf1_target", &mut self.qf1_target.flat),
                ("qf2_target", &mut self.qf2_target.flat),
            ],
            vec![
                ("actor_adam", &mut self.actor_adam),
                ("qf1_adam", &mut self.qf1_adam),
                ("qf2_adam", &mut self.qf2_adam),
            ],
        )
    }
}
