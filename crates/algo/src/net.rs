//! The actor-critic networks as libtorch tensors, one per parameter of the
//! flat layout in [`rl_policy::ParamLayout`].

use rl_policy::{ActionHead, Activation, PolicySpec};
use tch::{Device, Kind, Tensor};

/// Separate actor and critic MLPs (plus the Gaussian log-std), as tensors
/// that require gradients, in sorted-name order.
pub struct ActorCritic {
    spec: PolicySpec,
    /// `(name, tensor)` sorted by name; the order of the flat layout.
    params: Vec<(String, Tensor)>,
    device: Device,
}

/// What PPO needs from the networks for a batch.
pub struct Evaluation {
    pub log_prob: Tensor, // [B]
    pub entropy: Tensor,  // [B]
    pub value: Tensor,    // [B]
}

fn linear_layers<'a>(
    params: &'a [(String, Tensor)],
    prefix: &str,
    count: usize,
) -> Vec<(&'a Tensor, &'a Tensor)> {
    (0..count)
        .map(|i| {
            let find = |kind: &str| {
                let name = format!("{prefix}.{}.{kind}", 2 * i);
                let index = params
                    .binary_search_by(|(n, _)| n.as_str().cmp(&name))
                    .unwrap_or_else(|_| unreachable!("the layout always holds {name}"));
                &params[index].1
            };
            (find("weight"), find("bias"))
        })
        .collect()
}

impl ActorCritic {
    /// Orthogonal initialisation as in CleanRL: hidden layers with gain
    /// sqrt(2), the actor's output layer with 0.01, the critic's with 1,
    /// biases 0, log-std `initial_log_std`. Uses libtorch's generator, seeded
    /// with `seed`, on the CPU, then moves to `device`.
    pub fn new(spec: PolicySpec, seed: u64, initial_log_std: f64, device: Device) -> Self {
        tch::manual_seed(seed as i64);
        let layout = spec.layout();
        let actor_last = 2 * (spec.actor_layers().len() - 1);
        let critic_last = 2 * (spec.critic_layers().len() - 1);
        // Initialise in a fixed order (actor layers, critic layers), not in
        // name order, so that the draws do not depend on name sorting.
        let mut inits: Vec<(String, Tensor)> = Vec::new();
        for (prefix, layers, last) in [
            ("actor", spec.actor_layers(), actor_last),
            ("critic", spec.critic_layers(), critic_last),
        ] {
            for (i, (input, output)) in layers.into_iter().enumerate() {
                let index = 2 * i;
                let gain = if index != last {
                    2f64.sqrt()
                } else if prefix == "actor" {
                    0.01
                } else {
                    1.0
                };
                let weight = tch::nn::init::init(
                    tch::nn::Init::Orthogonal { gain },
                    &[output as i64, input as i64],
                    Device::Cpu,
                );
                inits.push((format!("{prefix}.{index}.weight"), weight));
                inits.push((
                    format!("{prefix}.{index}.bias"),
                    Tensor::zeros([output as i64], (Kind::Float, Device::Cpu)),
                ));
            }
        }
        if let ActionHead::Gaussian { dim } = spec.head {
            inits.push((
                "actor_logstd".to_string(),
                Tensor::full([dim as i64], initial_log_std, (Kind::Float, Device::Cpu)),
            ));
        }
        inits.sort_by(|a, b| a.0.cmp(&b.0));
        debug_assert!(inits
            .iter()
            .map(|(n, _)| n)
            .eq(layout.entries.iter().map(|e| &e.name)));
        let params = inits
            .into_iter()
            .map(|(name, t)| (name, t.to_device(device).set_requires_grad(true)))
            .collect();
        ActorCritic {
            spec,
            params,
            device,
        }
    }

    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The parameters in sorted-name order.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    fn mlp(&self, prefix: &str, count: usize, x: &Tensor) -> Tensor {
        let layers = linear_layers(&self.params, prefix, count);
        let mut h = x.shallow_clone();
        for (i, (w, b)) in layers.iter().enumerate() {
            h = h.linear(w, Some(*b));
            if i + 1 < layers.len() {
                h = match self.spec.activation {
                    Activation::Tanh => h.tanh(),
                    Activation::Relu => h.relu(),
                };
            }
        }
        h
    }

    /// Logits `[B, n]` or means `[B, dim]`.
    pub fn actor(&self, obs: &Tensor) -> Tensor {
        self.mlp("actor", self.spec.actor_layers().len(), obs)
    }

    /// Values `[B]`.
    pub fn value(&self, obs: &Tensor) -> Tensor {
        self.mlp("critic", self.spec.critic_layers().len(), obs)
            .squeeze_dim(-1)
    }

    fn log_std(&self) -> Option<&Tensor> {
        self.params
            .iter()
            .find(|(n, _)| n == "actor_logstd")
            .map(|(_, t)| t)
    }

    /// Log-probability and entropy of `actions` (`[B, action_dim]`, indices
    /// as floats for Categorical) and the values, for observations `[B, obs_dim]`.
    pub fn evaluate(&self, obs: &Tensor, actions: &Tensor) -> Evaluation {
        let out = self.actor(obs);
        let (log_prob, entropy) = match self.spec.head {
            ActionHead::Categorical { .. } => {
                let log_p = out.log_softmax(-1, Kind::Float);
                let index = actions.to_kind(Kind::Int64).view([-1, 1]);
                let log_prob = log_p.gather(1, &index, false).squeeze_dim(1);
                let entropy = -(log_p.exp() * &log_p).sum_dim_intlist(-1, false, Kind::Float);
                (log_prob, entropy)
            }
            ActionHead::Gaussian { .. } => {
                let log_std = self
                    .log_std()
                    .map(|t| t.shallow_clone())
                    .unwrap_or_else(|| out.zeros_like());
                let log_std = log_std.expand_as(&out);
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
        Evaluation {
            log_prob,
            entropy,
            value: self.value(obs),
        }
    }

    /// All parameters, flat, in layout order (on the CPU).
    pub fn to_flat(&self) -> Vec<f32> {
        let mut flat = Vec::new();
        for (_, t) in &self.params {
            let cpu = t
                .detach()
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .flatten(0, -1);
            let values: Vec<f32> = Vec::try_from(&cpu).unwrap_or_default();
            flat.extend(values);
        }
        flat
    }

    /// Replaces all parameters from a flat buffer in layout order.
    pub fn load_flat(&mut self, flat: &[f32]) -> Result<(), String> {
        let layout = self.spec.layout();
        if flat.len() != layout.total_len {
            return Err(format!(
                "weights hold {} values, the network needs {}",
                flat.len(),
                layout.total_len
            ));
        }
        tch::no_grad(|| {
            for ((_, t), entry) in self.params.iter_mut().zip(&layout.entries) {
                let shape: Vec<i64> = entry.shape.iter().map(|d| *d as i64).collect();
                let src = Tensor::from_slice(&flat[entry.offset..entry.offset + entry.len])
                    .reshape(&shape)
                    .to_device(self.device);
                t.copy_(&src);
            }
        });
        Ok(())
    }

    /// The parameters, mutably (for the optimizer).
    pub fn params_mut(&mut self) -> &mut [(String, Tensor)] {
        &mut self.params
    }

    /// Zeroes every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for (_, t) in &mut self.params {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }
}
