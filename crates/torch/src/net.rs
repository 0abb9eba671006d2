//! The actor-critic networks as libtorch tensors, one per parameter of the
//! flat layout in [`rl_policy::ParamLayout`].

use rl_policy::{ActionHead, Activation, ParamLayout, PolicySpec};
use tch::{Device, Kind, Tensor};

/// Separate actor and critic MLPs (plus the Gaussian log-std), stored as
/// **one flat tensor** in the order of [`rl_policy::ParamLayout`] (sorted
/// names). Each forward pass takes differentiable views of it, so gradients
/// land in one flat gradient, and the optimizer, gradient clipping, weight
/// export and (later) shared-memory publishing each touch one tensor instead
/// of one per layer.
pub struct ActorCritic {
    spec: PolicySpec,
    layout: ParamLayout,
    flat: Tensor, // [total_len], requires grad
    device: Device,
}

/// What PPO needs from the networks for a batch.
pub struct Evaluation {
    pub log_prob: Tensor, // [B]
    pub entropy: Tensor,  // [B]
    pub value: Tensor,    // [B]
}

impl ActorCritic {
    /// The networks with CleanRL's initialisation ([`rl_algo::init`]), on `device`.
    pub fn new(spec: PolicySpec, seed: u64, initial_log_std: f64, device: Device) -> Self {
        let flat = rl_algo::init::initial_weights(&spec, seed, initial_log_std);
        Self::from_flat(spec, &flat, device)
    }

    /// The networks with the given flat weights (layout order), on `device`.
    pub fn from_flat(spec: PolicySpec, flat: &[f32], device: Device) -> Self {
        let layout = spec.layout();
        let flat = Tensor::from_slice(flat)
            .to_device(device)
            .set_requires_grad(true);
        ActorCritic {
            spec,
            layout,
            flat,
            device,
        }
    }

    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The flat parameter tensor `[total_len]` (a leaf that requires grad).
    pub fn flat(&self) -> &Tensor {
        &self.flat
    }

    /// Differentiable views of every parameter, in layout order.
    fn views(&self) -> Vec<Tensor> {
        self.layout
            .entries
            .iter()
            .map(|e| {
                let shape: Vec<i64> = e.shape.iter().map(|d| *d as i64).collect();
                self.flat
                    .narrow(0, e.offset as i64, e.len as i64)
                    .view(shape.as_slice())
            })
            .collect()
    }

    fn view_of<'a>(&self, views: &'a [Tensor], name: &str) -> &'a Tensor {
        let index = self
            .layout
            .entries
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .unwrap_or_else(|_| unreachable!("the layout always holds {name}"));
        &views[index]
    }

    fn mlp(&self, views: &[Tensor], prefix: &str, count: usize, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for i in 0..count {
            let w = self.view_of(views, &format!("{prefix}.{}.weight", 2 * i));
            let b = self.view_of(views, &format!("{prefix}.{}.bias", 2 * i));
            h = h.linear(w, Some(b));
            if i + 1 < count {
                h = match self.spec.activation {
                    // 2 sigmoid(2x) - 1 is tanh; libtorch's CPU sigmoid is several times
                    // faster than its (MKL VML, high-accuracy) tanh on small batches.
                    Activation::Tanh => (h * 2.0).sigmoid() * 2.0 - 1.0,
                    Activation::Relu => h.relu(),
                };
            }
        }
        h
    }

    /// Values `[B]` for observations `[B, obs_dim]`.
    pub fn value(&self, obs: &Tensor) -> Tensor {
        let views = self.views();
        self.mlp(&views, "critic", self.spec.critic_layers().len(), obs)
            .squeeze_dim(-1)
    }

    /// Log-probability and entropy of `actions` (`[B, action_dim]`, indices
    /// as floats for Categorical) and the values, for observations `[B, obs_dim]`.
    pub fn evaluate(&self, obs: &Tensor, actions: &Tensor) -> Evaluation {
        let views = self.views();
        let out = self.mlp(&views, "actor", self.spec.actor_layers().len(), obs);
        let (log_prob, entropy) = match self.spec.head {
            ActionHead::Categorical { .. } => {
                let log_p = out.log_softmax(-1, Kind::Float);
                let index = actions.to_kind(Kind::Int64).view([-1, 1]);
                let log_prob = log_p.gather(1, &index, false).squeeze_dim(1);
                let entropy = -(log_p.exp() * &log_p).sum_dim_intlist(-1, false, Kind::Float);
                (log_prob, entropy)
            }
            // PPO's heads only (PpoLearner refuses the others).
            _ => {
                let log_std = self.view_of(&views, "actor_logstd").expand_as(&out);
                let z = (actions - &out) / log_std.exp();
                let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
                let log_prob = (z.square() * -0.5 - &log_std - half_log_2pi).sum_dim_intlist(
                    -1,
                    false,
                    Kind::Float,
                );
                let entropy =
                    (log_std + 0.5 + half_log_2pi).sum_dim_intlist(-1, false, Kind::Float);
                (log_prob, entropy)
            }
        };
        let value = self
            .mlp(&views, "critic", self.spec.critic_layers().len(), obs)
            .squeeze_dim(-1);
        Evaluation {
            log_prob,
            entropy,
            value,
        }
    }

    /// All parameters, flat, in layout order (on the CPU).
    pub fn to_flat(&self) -> Vec<f32> {
        let cpu = self.flat.detach().to_device(Device::Cpu);
        Vec::try_from(&cpu).unwrap_or_default()
    }

    /// The gradient of one parameter (after a backward pass), flat.
    pub fn grad_of(&self, name: &str) -> Option<Vec<f32>> {
        let entry = self.layout.get(name)?;
        let grad = self.flat.grad();
        if !grad.defined() {
            return None;
        }
        let part = grad
            .narrow(0, entry.offset as i64, entry.len as i64)
            .to_device(Device::Cpu);
        Vec::try_from(&part).ok()
    }

    /// Replaces all parameters from a flat buffer in layout order.
    pub fn load_flat(&mut self, flat: &[f32]) -> Result<(), String> {
        if flat.len() != self.layout.total_len {
            return Err(format!(
                "weights hold {} values, the network needs {}",
                flat.len(),
                self.layout.total_len
            ));
        }
        let src = Tensor::from_slice(flat).to_device(self.device);
        tch::no_grad(|| {
            self.flat.copy_(&src);
        });
        Ok(())
    }

    /// Zeroes the gradient.
    pub fn zero_grad(&mut self) {
        let mut g = self.flat.grad();
        if g.defined() {
            let _ = g.detach_().zero_();
        }
    }
}
