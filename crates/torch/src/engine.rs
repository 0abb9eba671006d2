//! The libtorch engine itself: the networks as tensors on the learner's
//! device ([`ActorCritic`]), CleanRL's PPO loss written with tensor
//! operations ([`ppo_loss`]), autograd, and Adam on the flat parameter
//! tensor. Learners reach it through the plugin ABI (`crate::ffi`).

use std::borrow::Cow;

use rl_policy::PolicySpec;
use tch::{Device, Kind, Tensor};

use rl_algo::engine::gradient::Device as EngineDevice;
use rl_algo::engine::gradient::{Backend, Batch, GradientEngine, LossTerms, OptimizerState};
use rl_algo::exchange::ExchangeError;
use rl_algo::ppo::config::PpoConfig;

use crate::adam::{clip_grad_norm, Adam};
use crate::net::ActorCritic;

/// One minibatch's loss and diagnostics.
pub struct MinibatchLoss {
    pub loss: Tensor,
    pub policy_loss: f64,
    pub value_loss: f64,
    pub entropy: f64,
    pub approx_kl: f64,
    pub old_approx_kl: f64,
    pub clip_frac: f64,
}

/// A minibatch on the learner's device.
pub struct Minibatch<'a> {
    pub obs: &'a Tensor,           // [B, obs_dim], normalised
    pub actions: &'a Tensor,       // [B, action_dim]
    pub old_log_probs: &'a Tensor, // [B]
    pub advantages: &'a Tensor,    // [B]
    pub returns: &'a Tensor,       // [B]
    pub old_values: &'a Tensor,    // [B]
}

/// The PPO loss of CleanRL: clipped surrogate, (clipped) value loss, entropy
/// bonus; `loss = pg_loss - ent_coef * entropy + vf_coef * v_loss`.
pub fn ppo_loss(
    net: &ActorCritic,
    mb: &Minibatch<'_>,
    config: &PpoConfig,
    clip_coef: f64,
) -> MinibatchLoss {
    let eval = net.evaluate(mb.obs, mb.actions);
    let log_ratio = &eval.log_prob - mb.old_log_probs;
    let ratio = log_ratio.exp();
    let (old_approx_kl, approx_kl, clip_frac) = tch::no_grad(|| {
        let old_kl = (-&log_ratio).mean(Kind::Float).double_value(&[]);
        let kl = ((&ratio - 1.0) - &log_ratio)
            .mean(Kind::Float)
            .double_value(&[]);
        let frac = (&ratio - 1.0)
            .abs()
            .gt(clip_coef)
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        (old_kl, kl, frac)
    });
    let advantages = if config.norm_adv {
        (mb.advantages - mb.advantages.mean(Kind::Float)) / (mb.advantages.std(true) + 1e-8)
    } else {
        mb.advantages.shallow_clone()
    };
    let pg_loss1 = -&advantages * &ratio;
    let pg_loss2 = -&advantages * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef);
    let pg_loss = pg_loss1.max_other(&pg_loss2).mean(Kind::Float);
    let new_value = eval.value.view([-1]);
    let v_loss = if config.clip_vloss {
        let unclipped = (&new_value - mb.returns).square();
        let clipped = mb.old_values + (&new_value - mb.old_values).clamp(-clip_coef, clip_coef);
        let clipped = (clipped - mb.returns).square();
        unclipped.max_other(&clipped).mean(Kind::Float) * 0.5
    } else {
        (&new_value - mb.returns).square().mean(Kind::Float) * 0.5
    };
    let entropy = eval.entropy.mean(Kind::Float);
    let loss = &pg_loss - &entropy * config.ent_coef + &v_loss * config.vf_coef;
    MinibatchLoss {
        policy_loss: pg_loss.double_value(&[]),
        value_loss: v_loss.double_value(&[]),
        entropy: entropy.double_value(&[]),
        loss,
        approx_kl,
        old_approx_kl,
        clip_frac,
    }
}

fn tensor_to_vec(t: &Tensor) -> Vec<f32> {
    Vec::try_from(&t.detach().to_device(Device::Cpu)).unwrap_or_default()
}

fn copy_into_tensor(t: &mut Tensor, values: &[f32]) {
    tch::no_grad(|| {
        let source = Tensor::from_slice(values).to_device(t.device());
        t.copy_(&source);
    });
}

/// An update's batch as tensors on the engine's device.
struct DeviceBatch {
    obs: Tensor,
    actions: Tensor,
    log_probs: Tensor,
    advantages: Tensor,
    returns: Tensor,
    values: Tensor,
}

/// See the module documentation.
pub struct NativeEngine {
    net: ActorCritic,
    adam: Adam,
    batch: Option<DeviceBatch>,
    /// Parameters, moments and step kept by [`GradientEngine::save`], on
    /// the device.
    backup: Option<(Tensor, Tensor, Tensor, u64)>,
}

impl NativeEngine {
    /// CleanRL's initialisation drawn from `seed` (identical to the host
    /// engine's), on `device`.
    pub fn new(
        spec: PolicySpec,
        seed: u64,
        init_log_std: f64,
        adam_eps: f64,
        device: Device,
    ) -> Self {
        let net = ActorCritic::new(spec, seed, init_log_std, device);
        let adam = Adam::new(net.flat(), 0.9, 0.999, adam_eps);
        NativeEngine {
            net,
            adam,
            batch: None,
            backup: None,
        }
    }
}

impl GradientEngine for NativeEngine {
    fn backend(&self) -> Backend {
        Backend::Torch(match self.net.device() {
            Device::Cuda(i) => EngineDevice::Cuda(i),
            _ => EngineDevice::Cpu,
        })
    }

    fn weights(&self) -> Cow<'_, [f32]> {
        Cow::Owned(self.net.to_flat())
    }

    fn optimizer_state(&self) -> OptimizerState {
        OptimizerState {
            exp_avg: tensor_to_vec(&self.adam.exp_avg),
            exp_avg_sq: tensor_to_vec(&self.adam.exp_avg_sq),
            step: self.adam.step,
        }
    }

    fn load(&mut self, weights: &[f32], optimizer: &OptimizerState) {
        let mut flat = self.net.flat().shallow_clone();
        copy_into_tensor(&mut flat, weights);
        copy_into_tensor(&mut self.adam.exp_avg, &optimizer.exp_avg);
        copy_into_tensor(&mut self.adam.exp_avg_sq, &optimizer.exp_avg_sq);
        self.adam.step = optimizer.step;
    }

    fn save(&mut self) {
        let (net, adam) = (&self.net, &self.adam);
        tch::no_grad(|| match &mut self.backup {
            Some((flat, exp_avg, exp_avg_sq, step)) => {
                flat.copy_(net.flat());
                exp_avg.copy_(&adam.exp_avg);
                exp_avg_sq.copy_(&adam.exp_avg_sq);
                *step = adam.step;
            }
            None => {
                self.backup = Some((
                    net.flat().detach().copy(),
                    adam.exp_avg.copy(),
                    adam.exp_avg_sq.copy(),
                    adam.step,
                ))
            }
        });
    }

    fn restore(&mut self) {
        if let Some((flat, exp_avg, exp_avg_sq, step)) = &self.backup {
            tch::no_grad(|| {
                let mut params = self.net.flat().shallow_clone();
                params.copy_(flat);
                self.adam.exp_avg.copy_(exp_avg);
                self.adam.exp_avg_sq.copy_(exp_avg_sq);
                self.adam.step = *step;
            });
        }
    }

    fn begin_update(&mut self, batch: &Batch<'_>) {
        let device = self.net.device();
        let n = batch.log_probs.len() as i64;
        let t = |v: &[f32], cols: usize| {
            let shape: Vec<i64> = if cols == 0 {
                vec![n]
            } else {
                vec![n, cols as i64]
            };
            Tensor::from_slice(v)
                .reshape(shape.as_slice())
                .to_device(device)
        };
        self.batch = Some(DeviceBatch {
            obs: t(batch.obs, batch.obs_dim),
            actions: t(batch.actions, batch.action_dim),
            log_probs: t(batch.log_probs, 0),
            advantages: t(batch.advantages, 0),
            returns: t(batch.returns, 0),
            values: t(batch.values, 0),
        });
    }

    fn backward(
        &mut self,
        batch: &Batch<'_>,
        rows: &[usize],
        config: &PpoConfig,
        clip_coef: f64,
    ) -> (LossTerms, f64) {
        if self.batch.is_none() {
            self.begin_update(batch);
        }
        let Some(tb) = &self.batch else {
            return (LossTerms::default(), f64::NAN);
        };
        let idx: Vec<i64> = rows.iter().map(|i| *i as i64).collect();
        let idx = Tensor::from_slice(&idx).to_device(self.net.device());
        let mb_obs = tb.obs.index_select(0, &idx);
        let mb_actions = tb.actions.index_select(0, &idx);
        let mb_log_probs = tb.log_probs.index_select(0, &idx);
        let mb_adv = tb.advantages.index_select(0, &idx);
        let mb_returns = tb.returns.index_select(0, &idx);
        let mb_values = tb.values.index_select(0, &idx);
        let mb = Minibatch {
            obs: &mb_obs,
            actions: &mb_actions,
            old_log_probs: &mb_log_probs,
            advantages: &mb_adv,
            returns: &mb_returns,
            old_values: &mb_values,
        };
        let out = ppo_loss(&self.net, &mb, config, clip_coef);
        self.net.zero_grad();
        out.loss.backward();
        let norm = clip_grad_norm(self.net.flat(), config.max_grad_norm);
        let terms = LossTerms {
            loss: 0.0,
            policy_loss: out.policy_loss,
            value_loss: out.value_loss,
            entropy: out.entropy,
            approx_kl: out.approx_kl,
            old_approx_kl: out.old_approx_kl,
            clip_frac: out.clip_frac,
        };
        (terms, norm)
    }

    fn exchange_gradient(
        &mut self,
        f: &mut dyn FnMut(&mut [f32]) -> Result<bool, ExchangeError>,
    ) -> Result<bool, ExchangeError> {
        let mut grad = self.net.flat().grad();
        if !grad.defined() {
            return f(&mut []);
        }
        let host = grad.detach().to_device(tch::Device::Cpu).contiguous();
        let mut values = Vec::<f32>::try_from(&host).map_err(|e| ExchangeError(e.to_string()))?;
        let answer = f(&mut values)?;
        let back = Tensor::from_slice(&values).to_device(grad.device());
        tch::no_grad(|| grad.copy_(&back));
        Ok(answer)
    }

    fn clip_gradient(&mut self, max_norm: f64) -> f64 {
        clip_grad_norm(self.net.flat(), max_norm)
    }

    fn step(&mut self, lr: f64) {
        let mut flat = self.net.flat().shallow_clone();
        self.adam.step(&mut flat, lr);
    }

    fn non_finite_state(&self) -> Option<(&'static str, f64)> {
        tch::no_grad(|| {
            [
                ("the weights", self.net.flat()),
                ("Adam's first moments", &self.adam.exp_avg),
                ("Adam's second moments", &self.adam.exp_avg_sq),
            ]
            .into_iter()
            .find_map(|(name, t)| {
                let bad = t.isfinite().logical_not();
                (bad.any().int64_value(&[]) != 0)
                    .then(|| (name, t.masked_select(&bad).double_value(&[0])))
            })
        })
    }
}
