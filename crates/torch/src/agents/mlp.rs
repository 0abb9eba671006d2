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
    layers: Vec<(i64, i64)>, // in, out
    sizes: Vec<i64>,         // each layer's weight then bias, in `flat`'s order
    activation: Activation,
}

impl FlatMlp {
    /// All-zero parameters (the learner sets them), on `device`.
    pub fn new(layers: &[(usize, usize)], activation: Activation, device: Device) -> Self {
        let (_, total) = mlp_offsets(layers);
        let sizes: Vec<i64> = layers
            .iter()
            .flat_map(|&(i, o)| [(i * o) as i64, o as i64])
            .collect();
        debug_assert_eq!(sizes.iter().sum::<i64>(), total as i64);
        FlatMlp {
            flat: Tensor::zeros([total as i64], (Kind::Float, device)).set_requires_grad(true),
            layers: layers.iter().map(|&(i, o)| (i as i64, o as i64)).collect(),
            sizes,
            activation,
        }
    }

    /// The network's output for `x`. The parameters are taken from the
    /// flat tensor with one `split_with_sizes` (whose backward is one
    /// concatenation) rather than a `narrow` per tensor (whose backward
    /// fills a zero tensor of the whole flat size for each and adds them
    /// up): the same gradient, 15% less time per SAC step
    /// (`docs/offpolicy.md`, "Speed").
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let pieces = self.flat.split_with_sizes(self.sizes.as_slice(), 0);
        let mut h = x.shallow_clone();
        let last = self.layers.len() - 1;
        for (k, &(input, output)) in self.layers.iter().enumerate() {
            let weight = pieces[2 * k].view([output, input]);
            h = h.linear(&weight, Some(&pieces[2 * k + 1]));
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
    if !g.defined() {
        return Ok(());
    }
    // One reduction on the common path: a sum of finite values is finite
    // unless it overflows, and only then is every value checked.
    let sum_finite = tch::no_grad(|| g.sum(tch::Kind::Float).double_value(&[])).is_finite();
    if !sum_finite && !bool::try_from(g.isfinite().all()).unwrap_or(false) {
        return Err(format!("non-finite: the gradient of {what}"));
    }
    Ok(())
}
