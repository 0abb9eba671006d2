//! One MLP as one flat parameter tensor (PyTorch's `parameters()` order:
//! each layer's weight `[out, in]`, then its bias; see
//! `rl_algo::engine::agent::mlp_offsets`), with its Adam.

use rl_algo::engine::agent::mlp_offsets;
use rl_policy::Activation;
use tch::{Device, Kind, Tensor};

use crate::adam::Adam;

/// An MLP whose parameters are views of one flat tensor.
pub struct FlatMlp {
    pub flat: Tensor,
    layers: Vec<(i64, i64, i64, i64)>, // weight offset, bias offset, in, out
    activation: Activation,
}

impl FlatMlp {
    /// All-zero parameters (the learner sets them), on `device`.
    pub fn new(layers: &[(usize, usize)], activation: Activation, device: Device) -> Self {
        let (offsets, total) = mlp_offsets(layers);
        FlatMlp {
            flat: Tensor::zeros([total as i64], (Kind::Float, device)).set_requires_grad(true),
            layers: layers
                .iter()
                .zip(offsets)
                .map(|(&(i, o), (w, b))| (w as i64, b as i64, i as i64, o as i64))
                .collect(),
            activation,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        let last = self.layers.len() - 1;
        for (k, &(w, b, input, output)) in self.layers.iter().enumerate() {
            let weight = self.flat.narrow(0, w, input * output).view([output, input]);
            let bias = self.flat.narrow(0, b, output);
            h = h.linear(&weight, Some(&bias));
            if k < last {
                h = match self.activation {
                    Activation::Relu => h.relu(),
                    Activation::Tanh => h.tanh(),
                };
            }
        }
        h
    }

    /// `optimizer.zero_grad()` (gradients set to zero, as `set_to_none`
    /// would leave none to read).
    pub fn zero_grad(&mut self) {
        zero_grad(&self.flat);
    }

    /// CleanRL's soft update of a target network:
    /// `target = tau * online + (1 - tau) * target`.
    pub fn soft_update_from(&mut self, online: &FlatMlp, tau: f64) {
        tch::no_grad(|| {
            let mixed = &online.flat * tau + &self.flat * (1.0 - tau);
            self.flat.copy_(&mixed);
        });
    }

    /// Runs `f` with this network's parameters frozen: gradients flow
    /// through it to its inputs but none is computed for its weights (the
    /// actor's loss goes through the Q-networks; CleanRL computes their
    /// weight gradients too and throws them away at the next
    /// `zero_grad`: the same update, two weight-gradient GEMMs more).
    pub fn frozen<T>(&self, f: impl FnOnce() -> T) -> T {
        let _ = self.flat.set_requires_grad(false);
        let out = f();
        let _ = self.flat.set_requires_grad(true);
        out
    }

    pub fn adam(&self) -> Adam {
        Adam::new(&self.flat, 0.9, 0.999, 1e-8)
    }
}

/// Zeroes a leaf's gradient, if it has one.
pub fn zero_grad(t: &Tensor) {
    let mut g = t.grad();
    if g.defined() {
        let _ = g.zero_();
    }
}

/// A scalar's value, or an error naming it when it is not finite (the
/// update stops before any optimizer step uses it).
pub fn finite(t: &Tensor, what: &str) -> Result<f64, String> {
    let v = t.double_value(&[]);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("non-finite: {what} ({v})"))
    }
}

/// An error naming `what` if the gradient of `t` holds a non-finite value.
pub fn finite_grad(t: &Tensor, what: &str) -> Result<(), String> {
    let g = t.grad();
    if g.defined() && !bool::try_from(g.isfinite().all()).unwrap_or(false) {
        return Err(format!("non-finite: the gradient of {what}"));
    }
    Ok(())
}
