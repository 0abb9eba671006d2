//! SAC's update, as in CleanRL's `sac_continuous_action.py` (the part of
//! its loop after `rb.sample`), with twin Q-networks, Polyak-averaged
//! targets and automatic entropy tuning. The reparameterisation noise
//! comes from the learner (see `rl_algo::engine::agent`).

use rl_algo::offpolicy::config::SacConfig;
use rl_policy::{LOG_STD_MAX, LOG_STD_MIN};
use tch::{Device, Kind, Reduction, Tensor};

use crate::adam::Adam;
use crate::agents::mlp::{finite, finite_grad, zero_grad, FlatMlp};
use crate::agents::{AgentParts, Batch, StateParts};

pub struct Sac {
    c: SacConfig,
    pub obs_dim: usize,
    action_dim: i64,
    action_scale: Tensor,
    action_bias: Tensor,
    target_entropy: f64,
    pub actor: FlatMlp,
    pub qf1: FlatMlp,
    pub qf2: FlatMlp,
    pub qf1_target: FlatMlp,
    pub qf2_target: FlatMlp,
    pub log_alpha: Tensor,
    pub actor_adam: Adam,
    pub qf1_adam: Adam,
    pub qf2_adam: Adam,
    pub alpha_adam: Adam,
}

impl Sac {
    pub fn new(parts: &AgentParts, c: SacConfig, device: Device) -> Self {
        let actor = FlatMlp::new(&parts.actor_layers, parts.activation, device);
        let q = || FlatMlp::new(&parts.critic_layers, parts.activation, device);
        let (qf1, qf2) = (q(), q());
        let log_alpha = Tensor::zeros([1], (Kind::Float, device)).set_requires_grad(true);
        Sac {
            obs_dim: parts.obs_dim,
            action_dim: parts.action_size as i64,
            action_scale: parts.tensor(&parts.action_scale, device),
            action_bias: parts.tensor(&parts.action_bias, device),
            // CleanRL: -torch.prod(torch.Tensor(envs.single_action_space.shape))
            target_entropy: -(parts.action_size as f64),
            actor_adam: actor.adam(),
            qf1_adam: qf1.adam(),
            qf2_adam: qf2.adam(),
            alpha_adam: Adam::new(&log_alpha, 0.9, 0.999, 1e-8),
            qf1_target: q(),
            qf2_target: q(),
            actor,
            qf1,
            qf2,
            log_alpha,
            c,
        }
    }

    /// CleanRL's `Actor.get_action` with the standard normal draw `eps`:
    /// the action, its log-probability `[B, 1]` and the squashed mean.
    fn get_action(&self, x: &Tensor, eps: &Tensor) -> (Tensor, Tensor, Tensor) {
        let out = self.actor.forward(x);
        let mean = out.narrow(1, 0, self.action_dim);
        let log_std = out.narrow(1, self.action_dim, self.action_dim).tanh();
        let log_std =
            (log_std + 1.0) * (0.5 * f64::from(LOG_STD_MAX - LOG_STD_MIN)) + f64::from(LOG_STD_MIN);
        let std = log_std.exp();
        // Normal(mean, std).rsample(): loc + eps * scale
        let x_t = &mean + eps * &std;
        let y_t = x_t.tanh();
        let action = &y_t * &self.action_scale + &self.action_bias;
        // Normal.log_prob: -((x - loc) ** 2) / (2 * var) - log(scale) - log(sqrt(2 pi))
        let var = std.pow_tensor_scalar(2);
        let log_prob = -((&x_t - &mean).pow_tensor_scalar(2)) / (var * 2.0)
            - std.log()
            - (2.0 * std::f64::consts::PI).sqrt().ln();
        // Enforcing the action bound.
        let log_prob =
            log_prob - (&self.action_scale * (-y_t.pow_tensor_scalar(2) + 1.0) + 1e-6).log();
        let log_prob = log_prob.sum_dim_intlist(1, true, Kind::Float);
        let mean = mean.tanh() * &self.action_scale + &self.action_bias;
        (action, log_prob, mean)
    }

    fn alpha(&self) -> f64 {
        if self.c.autotune {
            tch::no_grad(|| self.log_alpha.exp().double_value(&[0]))
        } else {
            self.c.alpha
        }
    }

    pub fn update(
        &mut self,
        b: &Batch,
        update_actor: bool,
        update_targets: bool,
    ) -> Result<Vec<f64>, String> {
        let c = self.c.clone();
        let alpha = self.alpha();
        let next_q_value = tch::no_grad(|| {
            let (next_state_actions, next_state_log_pi, _) =
                self.get_action(&b.next_obs, &b.noise(0));
            let next_in = Tensor::cat(&[&b.next_obs, &next_state_actions], 1);
            let qf1_next_target = self.qf1_target.forward(&next_in);
            let qf2_next_target = self.qf2_target.forward(&next_in);
            let min_qf_next_target =
                qf1_next_target.minimum(&qf2_next_target) - next_state_log_pi * alpha;
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
            alpha,
            f64::NAN,
        ];
        self.qf1.zero_grad();
        self.qf2.zero_grad();
        qf_loss.backward();
        finite_grad(&self.qf1.flat, "qf1")?;
        finite_grad(&self.qf2.flat, "qf2")?;
        self.qf1_adam.step(&mut self.qf1.flat, c.q_lr);
        self.qf2_adam.step(&mut self.qf2.flat, c.q_lr);

        if update_actor {
            // CleanRL: policy_frequency actor updates, compensating the delay.
            let mut alpha = alpha;
            let per = if c.autotune { 2 } else { 1 };
            for k in 0..c.policy_frequency as i64 {
                let (pi, log_pi, _) = self.get_action(&b.obs, &b.noise(1 + per * k));
                let pi_in = Tensor::cat(&[&b.obs, &pi], 1);
                let (qf1, qf2) = (&self.qf1, &self.qf2);
                let actor_loss = qf1.frozen(|| {
                    qf2.frozen(|| {
                        let qf1_pi = qf1.forward(&pi_in);
                        let qf2_pi = qf2.forward(&pi_in);
                        let min_qf_pi = qf1_pi.minimum(&qf2_pi);
                        let actor_loss = ((log_pi * alpha) - min_qf_pi).mean(Kind::Float);
                        self.actor.zero_grad();
                        actor_loss.backward();
                        actor_loss
                    })
                });
                stats[5] = finite(&actor_loss, "the actor loss")?;
                finite_grad(&self.actor.flat, "the actor")?;
                self.actor_adam.step(&mut self.actor.flat, c.policy_lr);
                if c.autotune {
                    let log_pi = tch::no_grad(|| {
                        let (_, log_pi, _) = self.get_action(&b.obs, &b.noise(2 + per * k));
                        log_pi
                    });
                    let alpha_loss =
                        (-self.log_alpha.exp() * (log_pi + self.target_entropy)).mean(Kind::Float);
                    stats[7] = finite(&alpha_loss, "the alpha loss")?;
                    zero_grad(&self.log_alpha);
                    alpha_loss.backward();
                    finite_grad(&self.log_alpha, "log_alpha")?;
                    self.alpha_adam.step(&mut self.log_alpha, c.q_lr);
                    alpha = self.alpha();
                }
            }
            stats[6] = alpha;
        }
        if update_targets {
            self.qf1_target.soft_update_from(&self.qf1, c.tau);
            self.qf2_target.soft_update_from(&self.qf2, c.tau);
        }
        Ok(stats)
    }

    pub fn parts(&mut self) -> StateParts<'_> {
        (
            vec![
                ("actor", &mut self.actor.flat),
                ("qf1", &mut self.qf1.flat),
                ("qf2", &mut self.qf2.flat),
                ("qf1_target", &mut self.qf1_target.flat),
                ("qf2_target", &mut self.qf2_target.flat),
                ("log_alpha", &mut self.log_alpha),
            ],
            vec![
                ("actor_adam", &mut self.actor_adam),
                ("qf1_adam", &mut self.qf1_adam),
                ("qf2_adam", &mut self.qf2_adam),
                ("alpha_adam", &mut self.alpha_adam),
            ],
        )
    }
}
