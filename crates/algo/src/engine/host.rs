//! The host engine: the hand-written gradient of [`crate::host`] over flat
//! host buffers, with Adam on flat vectors. No libtorch.

use std::borrow::Cow;

use rl_policy::PolicySpec;

use crate::divergence::first_non_finite;
use crate::engine::gradient::{Backend, Batch, GradientEngine, LossTerms, OptimizerState};
use crate::exchange::ExchangeError;
use crate::host::{clip_grad_norm_host, HostAdam, HostGradient, HostMinibatch};
use crate::ppo::config::PpoConfig;

/// See the module documentation.
pub struct HostEngine {
    weights: Vec<f32>,
    grad: Vec<f32>,
    adam: HostAdam,
    gradient: HostGradient,
    gathered: GatheredMinibatch,
    backup: Option<(Vec<f32>, OptimizerState)>,
}

impl HostEngine {
    pub fn new(spec: PolicySpec, weights: Vec<f32>, adam_eps: f64) -> Self {
        HostEngine {
            grad: vec![0.0; weights.len()],
            adam: HostAdam::new(weights.len(), 0.9, 0.999, adam_eps),
            gradient: HostGradient::new(spec),
            gathered: GatheredMinibatch::default(),
            backup: None,
            weights,
        }
    }
}

impl GradientEngine for HostEngine {
    fn backend(&self) -> Backend {
        Backend::Host
    }

    fn weights(&self) -> Cow<'_, [f32]> {
        Cow::Borrowed(&self.weights)
    }

    fn optimizer_state(&self) -> OptimizerState {
        OptimizerState {
            exp_avg: self.adam.exp_avg.clone(),
            exp_avg_sq: self.adam.exp_avg_sq.clone(),
            step: self.adam.step,
        }
    }

    fn load(&mut self, weights: &[f32], optimizer: &OptimizerState) {
        self.weights.copy_from_slice(weights);
        self.adam.exp_avg.copy_from_slice(&optimizer.exp_avg);
        self.adam.exp_avg_sq.copy_from_slice(&optimizer.exp_avg_sq);
        self.adam.step = optimizer.step;
    }

    /// One copy per update, no allocation after the first.
    fn save(&mut self) {
        match &mut self.backup {
            Some((weights, optimizer)) => {
                weights.copy_from_slice(&self.weights);
                optimizer.exp_avg.copy_from_slice(&self.adam.exp_avg);
                optimizer.exp_avg_sq.copy_from_slice(&self.adam.exp_avg_sq);
                optimizer.step = self.adam.step;
            }
            None => self.backup = Some((self.weights.clone(), self.optimizer_state())),
        }
    }

    fn restore(&mut self) {
        if let Some((weights, optimizer)) = self.backup.take() {
            self.load(&weights, &optimizer);
            self.backup = Some((weights, optimizer));
        }
    }

    fn begin_update(&mut self, _batch: &Batch<'_>) {}

    fn backward(
        &mut self,
        batch: &Batch<'_>,
        rows: &[usize],
        config: &PpoConfig,
        clip_coef: f64,
    ) -> (LossTerms, f64) {
        self.gathered.gather(batch, rows);
        let terms = self.gradient.loss_and_grad(
            &self.weights,
            &self.gathered.view(),
            config,
            clip_coef,
            &mut self.grad,
        );
        let norm = clip_grad_norm_host(&mut self.grad, config.max_grad_norm);
        (terms, norm)
    }

    fn exchange_gradient(
        &mut self,
        f: &mut dyn FnMut(&mut [f32]) -> Result<bool, ExchangeError>,
    ) -> Result<bool, ExchangeError> {
        f(&mut self.grad)
    }

    fn clip_gradient(&mut self, max_norm: f64) -> f64 {
        clip_grad_norm_host(&mut self.grad, max_norm)
    }

    fn step(&mut self, lr: f64) {
        self.adam.step(&mut self.weights, &self.grad, lr);
    }

    fn non_finite_state(&self) -> Option<(&'static str, f64)> {
        let found = |name: &'static str, v: Option<f32>| v.map(|v| (name, v as f64));
        found("the weights", first_non_finite(&self.weights))
            .or_else(|| found("Adam's first moments", first_non_finite(&self.adam.exp_avg)))
            .or_else(|| {
                found(
                    "Adam's second moments",
                    first_non_finite(&self.adam.exp_avg_sq),
                )
            })
    }
}

/// A minibatch gathered into contiguous host buffers.
#[derive(Default)]
struct GatheredMinibatch {
    obs: Vec<f32>,
    actions: Vec<f32>,
    log_probs: Vec<f32>,
    advantages: Vec<f32>,
    returns: Vec<f32>,
    values: Vec<f32>,
}

impl GatheredMinibatch {
    fn gather(&mut self, data: &Batch<'_>, rows: &[usize]) {
        let (od, ad) = (data.obs_dim, data.action_dim);
        self.obs.clear();
        self.actions.clear();
        self.log_probs.clear();
        self.advantages.clear();
        self.returns.clear();
        self.values.clear();
        for &i in rows {
            self.obs.extend_from_slice(&data.obs[i * od..(i + 1) * od]);
            self.actions
                .extend_from_slice(&data.actions[i * ad..(i + 1) * ad]);
            self.log_probs.push(data.log_probs[i]);
            self.advantages.push(data.advantages[i]);
            self.returns.push(data.returns[i]);
            self.values.push(data.values[i]);
        }
    }

    fn view(&self) -> HostMinibatch<'_> {
        HostMinibatch {
            obs: &self.obs,
            actions: &self.actions,
            old_log_probs: &self.log_probs,
            advantages: &self.advantages,
            returns: &self.returns,
            old_values: &self.values,
        }
    }
}
