//! The gradient-engine interface: what PPO's update asks of whatever
//! computes gradients, as CleanRL's update loop asks it of PyTorch.

use std::borrow::Cow;

use crate::exchange::ExchangeError;
use crate::ppo::config::PpoConfig;

/// Where a learner computes with libtorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl Device {
    /// The ABI's number: -1 for the CPU, the index of a CUDA device.
    pub fn to_abi(self) -> i64 {
        match self {
            Device::Cpu => -1,
            Device::Cuda(i) => i as i64,
        }
    }

    pub fn from_abi(code: i64) -> Self {
        if code < 0 {
            Device::Cpu
        } else {
            Device::Cuda(code as usize)
        }
    }
}

/// Which implementation computes the gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The hand-written CPU path (no libtorch).
    Host,
    /// libtorch through tch, on the given device.
    Torch(Device),
}

impl Backend {
    /// The host path on the CPU, libtorch on a GPU.
    pub fn for_device(device: Device) -> Self {
        match device {
            Device::Cpu => Backend::Host,
            other => Backend::Torch(other),
        }
    }
}

/// One update's training data in host memory, `[batch, ...]` row-major.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub obs: &'a [f32],        // [N, obs_dim], normalised as the collectors saw them
    pub actions: &'a [f32],    // [N, action_dim]
    pub log_probs: &'a [f32],  // [N]
    pub advantages: &'a [f32], // [N]
    pub returns: &'a [f32],    // [N]
    pub values: &'a [f32],     // [N]
    pub obs_dim: usize,
    pub action_dim: usize,
}

/// The loss terms of one minibatch (means over the minibatch).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossTerms {
    pub loss: f64,
    pub policy_loss: f64,
    pub value_loss: f64,
    pub entropy: f64,
    pub approx_kl: f64,
    pub old_approx_kl: f64,
    pub clip_frac: f64,
}

/// Adam's state: first and second moments, flat like the parameters, and
/// the steps taken.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerState {
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
    pub step: u64,
}

/// Parameters, their gradient and Adam, wherever they live.
pub trait GradientEngine {
    fn backend(&self) -> Backend;
    /// The parameters, flat in layout order (borrowed where they already
    /// are in host memory).
    fn weights(&self) -> Cow<'_, [f32]>;
    fn optimizer_state(&self) -> OptimizerState;
    /// Replaces the parameters and Adam's state (lengths checked by the
    /// caller).
    fn load(&mut self, weights: &[f32], optimizer: &OptimizerState);
    /// Keeps a copy of the parameters and Adam's state, for [`Self::restore`].
    fn save(&mut self);
    /// Puts back what [`Self::save`] kept.
    fn restore(&mut self);
    /// Makes an update's batch ready for its minibatches (the libtorch
    /// engine copies it to its device, once per update).
    fn begin_update(&mut self, batch: &Batch<'_>);
    /// CleanRL: `loss.backward(); nn.utils.clip_grad_norm_(...)` on the
    /// rows `rows` of the batch. Returns the loss terms and the gradient's
    /// norm before clipping.
    fn backward(
        &mut self,
        batch: &Batch<'_>,
        rows: &[usize],
        config: &PpoConfig,
        clip_coef: f64,
    ) -> (LossTerms, f64);
    /// [`Self::backward`] without the clipping, for data-parallel learners
    /// (`crate::exchange`): the gradient is averaged over ranks first
    /// ([`Self::exchange_gradient`]), then clipped ([`Self::clip_gradient`]).
    fn backward_unclipped(
        &mut self,
        batch: &Batch<'_>,
        rows: &[usize],
        config: &PpoConfig,
        clip_coef: f64,
    ) -> LossTerms {
        // clip_grad_norm_ with an infinite maximum scales nothing.
        let config = PpoConfig {
            max_grad_norm: f64::INFINITY,
            ..config.clone()
        };
        self.backward(batch, rows, &config, clip_coef).0
    }
    /// Hands the gradient of the last backward, flat in layout order in
    /// host memory, to `f` and keeps what `f` leaves there; returns what
    /// `f` returns.
    fn exchange_gradient(
        &mut self,
        f: &mut dyn FnMut(&mut [f32]) -> Result<bool, ExchangeError>,
    ) -> Result<bool, ExchangeError>;
    /// `nn.utils.clip_grad_norm_(parameters, max_norm)` on the gradient of
    /// the last backward; returns its norm before clipping.
    fn clip_gradient(&mut self, max_norm: f64) -> f64;
    /// CleanRL: `optimizer.step()` with learning rate `lr`.
    fn step(&mut self, lr: f64);
    /// The first non-finite number among the parameters and Adam's
    /// moments, with what it is.
    fn non_finite_state(&self) -> Option<(&'static str, f64)>;
}
