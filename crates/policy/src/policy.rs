//! The CPU forward pass and action sampling.

use rl_env::rng::Rng;
use thiserror::Error;

use crate::forward::{mlp_rows, Kernel, Linear, Scratch};
use crate::layout::{ActionHead, ParamLayout, PolicySpec, LOG_STD_MAX, LOG_STD_MIN};

const LOG_SQRT_2PI: f32 = 0.918_938_5; // ln(sqrt(2 pi))

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    #[error("weights buffer holds {got} values, the policy needs {expected}")]
    WeightsLength { got: usize, expected: usize },
    #[error("parameter '{0}' is missing from the layout")]
    MissingParam(String),
}

fn linears(
    layout: &ParamLayout,
    prefix: &str,
    sizes: &[(usize, usize)],
) -> Result<Vec<Linear>, PolicyError> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &(input, output))| {
            let find = |kind: &str| {
                let name = format!("{prefix}.{}.{kind}", 2 * i);
                layout
                    .get(&name)
                    .map(|e| e.offset)
                    .ok_or(PolicyError::MissingParam(name))
            };
            Ok(Linear {
                weight: find("weight")?,
                bias: find("bias")?,
                input,
                output,
            })
        })
        .collect()
}

/// How collectors of an off-policy algorithm explore, published by the
/// learner with the weights (the same for every env of a round).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Exploration {
    /// Uniformly random actions from the action space, whatever the
    /// weights (before `learning_starts`).
    pub random: bool,
    /// DQN: the probability of a uniformly random action.
    pub epsilon: f64,
    /// TD3: the std of the Gaussian noise added to actions, as a fraction
    /// of `action_scale` (CleanRL's `exploration_noise`).
    pub noise: f64,
}

impl Exploration {
    /// As three numbers (random as 0 or 1), the form the weight block
    /// carries.
    pub fn to_array(self) -> [f64; 3] {
        [f64::from(u8::from(self.random)), self.epsilon, self.noise]
    }

    pub fn from_array(a: [f64; 3]) -> Self {
        Exploration {
            random: a[0] != 0.0,
            epsilon: a[1],
            noise: a[2],
        }
    }
}

/// A policy over a flat weights buffer laid out by [`PolicySpec::layout`].
///
/// Every method computes each observation on its own (see
/// [`crate::forward`]): the batch methods give, row for row, exactly what
/// the single-observation methods give.
#[derive(Debug, Clone)]
pub struct Policy {
    spec: PolicySpec,
    layout: ParamLayout,
    weights: Vec<f32>,
    actor: Vec<Linear>,
    critic: Vec<Linear>,
    log_std: Option<usize>,
    /// Offsets of `action_bias` and `action_scale` (squashed heads).
    squash: Option<(usize, usize)>,
    kernel: Kernel,
    scratch: Scratch,
    outputs: Vec<f32>, // [actor outputs], for single-observation calls
}

impl Policy {
    /// A policy with all-zero weights; load real ones with `weights_mut` or
    /// `set_weights`.
    pub fn new(spec: PolicySpec) -> Result<Self, PolicyError> {
        let layout = spec.layout();
        let actor = linears(&layout, "actor", &spec.actor_layers())?;
        let critic = linears(&layout, "critic", &spec.critic_layers())?;
        let log_std = match spec.head {
            ActionHead::Gaussian { .. } => Some(
                layout
                    .get("actor_logstd")
                    .ok_or_else(|| PolicyError::MissingParam("actor_logstd".into()))?
                    .offset,
            ),
            _ => None,
        };
        let squash = if spec.head.is_squashed() {
            let find = |name: &str| {
                layout
                    .get(name)
                    .map(|e| e.offset)
                    .ok_or_else(|| PolicyError::MissingParam(name.into()))
            };
            Some((find("action_bias")?, find("action_scale")?))
        } else {
            None
        };
        let widest = actor
            .iter()
            .chain(&critic)
            .map(|l| l.output.max(l.input))
            .max()
            .unwrap_or(1);
        Ok(Policy {
            weights: vec![0.0; layout.total_len],
            outputs: vec![0.0; spec.head.actor_outputs()],
            spec,
            layout,
            actor,
            critic,
            log_std,
            squash,
            kernel: Kernel::detect(),
            scratch: Scratch::new(widest),
        })
    }

    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    pub fn weights_mut(&mut self) -> &mut [f32] {
        &mut self.weights
    }

    /// Replaces all weights (flat, in layout order).
    pub fn set_weights(&mut self, weights: &[f32]) -> Result<(), PolicyError> {
        if weights.len() != self.weights.len() {
            return Err(PolicyError::WeightsLength {
                got: weights.len(),
                expected: self.weights.len(),
            });
        }
        self.weights.copy_from_slice(weights);
        Ok(())
    }

    /// Outputs of the actor network per observation: logits (Categorical) or
    /// means (Gaussian). `obs [rows, obs_dim]` (normalised), `out [rows,
    /// actor outputs]`.
    pub fn actor_outputs(&mut self, obs: &[f32], out: &mut [f32]) {
        mlp_rows(
            self.kernel,
            &self.weights,
            &self.actor,
            self.spec.activation,
            obs,
            out,
            &mut self.scratch,
        );
    }

    /// The critic's values: `obs [rows, obs_dim]` (normalised), `out [rows]`;
    /// zeros for the off-policy heads, which act without a critic.
    pub fn values(&mut self, obs: &[f32], out: &mut [f32]) {
        if self.critic.is_empty() {
            out.fill(0.0);
            return;
        }
        mlp_rows(
            self.kernel,
            &self.weights,
            &self.critic,
            self.spec.activation,
            obs,
            out,
            &mut self.scratch,
        );
    }

    /// The critic's value of one (normalised) observation.
    pub fn value(&mut self, obs: &[f32]) -> f32 {
        let mut out = [0.0];
        self.values(obs, &mut out);
        out[0]
    }

    /// Samples an action for one observation into `action`
    /// (`[1]` index as f32 for Categorical, `[dim]` values for Gaussian, not
    /// clipped) and returns its log-probability.
    pub fn sample(&mut self, obs: &[f32], rng: &mut Rng, action: &mut [f32]) -> f32 {
        let mut outputs = std::mem::take(&mut self.outputs);
        self.actor_outputs(obs, &mut outputs);
        let log_prob = self.sample_from_outputs(&outputs, rng, action);
        self.outputs = outputs;
        log_prob
    }

    /// Samples an action from one observation's actor outputs (see
    /// [`Policy::actor_outputs`]) and returns its log-probability.
    pub fn sample_from_outputs(&self, outputs: &[f32], rng: &mut Rng, action: &mut [f32]) -> f32 {
        match self.spec.head {
            ActionHead::Categorical { n } => {
                let logits = &outputs[..n];
                let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
                let log_norm = max + sum.ln();
                // Inverse CDF on the probabilities.
                let u = rng.next_f64() as f32;
                let mut cumulative = 0.0_f32;
                let mut chosen = n - 1;
                for (i, l) in logits.iter().enumerate() {
                    cumulative += (l - log_norm).exp();
                    if u < cumulative {
                        chosen = i;
                        break;
                    }
                }
                action[0] = chosen as f32;
                logits[chosen] - log_norm
            }
            ActionHead::Gaussian { dim } => {
                let log_std = self.log_std.unwrap_or(0);
                let mut log_prob = 0.0_f32;
                let means = &outputs[..dim];
                let log_stds = &self.weights[log_std..log_std + dim];
                for ((a, mean), ls) in action.iter_mut().zip(means).zip(log_stds) {
                    let z = rng.standard_normal() as f32;
                    *a = mean + ls.exp() * z;
                    log_prob += -0.5 * z * z - ls - LOG_SQRT_2PI;
                }
                log_prob
            }
            // The off-policy heads have no log-probabilities to report.
            _ => {
                self.explore_from_outputs(outputs, &Exploration::default(), rng, action);
                0.0
            }
        }
    }

    /// `action_bias[d] + action_scale[d] * y`: a squashed value `y` in
    /// [-1, 1] in the action's units.
    fn unsquash(&self, d: usize, y: f32) -> f32 {
        let (bias, scale) = self.squash.unwrap_or_default();
        y * self.weights[scale + d] + self.weights[bias + d]
    }

    /// An off-policy head's exploring action (CleanRL's, in the env's
    /// units) from one observation's actor outputs, with `rng`: SAC's
    /// sample of the squashed Gaussian, TD3's action plus Gaussian noise
    /// (clipped to the bounds), DQN's epsilon-greedy choice, or a uniformly
    /// random action before learning starts.
    pub fn explore_from_outputs(
        &self,
        outputs: &[f32],
        exploration: &Exploration,
        rng: &mut Rng,
        action: &mut [f32],
    ) {
        let head = self.spec.head;
        if exploration.random {
            match head {
                ActionHead::Categorical { n } | ActionHead::QValues { n } => {
                    action[0] = ((rng.next_f64() * n as f64) as usize).min(n - 1) as f32;
                }
                _ => {
                    for (d, a) in action.iter_mut().enumerate().take(head.action_dim()) {
                        *a = self.unsquash(d, 2.0 * rng.next_f64() as f32 - 1.0);
                    }
                }
            }
            return;
        }
        match head {
            ActionHead::SquashedGaussian { dim } => {
                for (d, a) in action.iter_mut().enumerate().take(dim) {
                    let raw = outputs[dim + d].tanh();
                    let log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (raw + 1.0);
                    let x = outputs[d] + log_std.exp() * rng.standard_normal() as f32;
                    *a = self.unsquash(d, x.tanh());
                }
            }
            ActionHead::Deterministic { dim } => {
                let (bias, scale) = self.squash.unwrap_or_default();
                for (d, a) in action.iter_mut().enumerate().take(dim) {
                    let s = self.weights[scale + d];
                    let noise = (exploration.noise as f32) * s * rng.standard_normal() as f32;
                    let b = self.weights[bias + d];
                    *a = (self.unsquash(d, outputs[d].tanh()) + noise).clamp(b - s, b + s);
                }
            }
            ActionHead::QValues { n } => {
                action[0] = if rng.next_f64() < exploration.epsilon {
                    ((rng.next_f64() * n as f64) as usize).min(n - 1) as f32
                } else {
                    argmax(&outputs[..n]) as f32
                };
            }
            ActionHead::Categorical { .. } | ActionHead::Gaussian { .. } => {
                self.sample_from_outputs(outputs, rng, action);
            }
        }
    }

    /// The deterministic action for one observation into `action`: the
    /// argmax of the logits or Q-values, the Gaussian's mean, or the
    /// squashed mean (SAC) or action (TD3) in the action's units.
    pub fn deterministic(&mut self, obs: &[f32], action: &mut [f32]) {
        let mut outputs = std::mem::take(&mut self.outputs);
        self.actor_outputs(obs, &mut outputs);
        match self.spec.head {
            ActionHead::Categorical { n } | ActionHead::QValues { n } => {
                action[0] = argmax(&outputs[..n]) as f32;
            }
            ActionHead::Gaussian { dim } => action[..dim].copy_from_slice(&outputs[..dim]),
            ActionHead::SquashedGaussian { dim } | ActionHead::Deterministic { dim } => {
                for (d, a) in action.iter_mut().enumerate().take(dim) {
                    *a = self.unsquash(d, outputs[d].tanh());
                }
            }
        }
        self.outputs = outputs;
    }
}

/// The first index of the largest value (`torch.argmax`'s choice on ties).
fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for i in 1..values.len() {
        if values[i] > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // The reference forward is written with indices on purpose.
mod tests {
    use super::*;
    use crate::layout::Activation;

    fn spec(head: ActionHead) -> PolicySpec {
        PolicySpec {
            obs_dim: 2,
            head,
            actor_hidden: vec![3],
            critic_hidden: vec![3],
            activation: Activation::Tanh,
        }
    }

    /// Sets each weight to a small distinct value.
    fn filled(head: ActionHead) -> Policy {
        let mut p = Policy::new(spec(head)).unwrap();
        for (i, w) in p.weights_mut().iter_mut().enumerate() {
            *w = ((i * 7 % 13) as f32 - 6.0) * 0.05;
        }
        p
    }

    fn reference_mlp(p: &Policy, prefix: &str, x: &[f32], layers: usize) -> Vec<f32> {
        let mut h = x.to_vec();
        for i in 0..layers {
            let w = p
                .layout()
                .get(&format!("{prefix}.{}.weight", 2 * i))
                .unwrap();
            let b = p.layout().get(&format!("{prefix}.{}.bias", 2 * i)).unwrap();
            let (out, inp) = (w.shape[0], w.shape[1]);
            let mut y = vec![0.0; out];
            for o in 0..out {
                let mut acc = 0.0;
                for j in 0..inp {
                    acc += h[j] * p.weights()[w.offset + o * inp + j];
                }
                y[o] = acc + p.weights()[b.offset + o];
                if i + 1 < layers {
                    y[o] = crate::fast_math::fast_tanh(y[o]);
                }
            }
            h = y;
        }
        h
    }

    #[test]
    fn forward_matches_a_direct_computation() {
        let mut p = filled(ActionHead::Gaussian { dim: 2 });
        let x = [0.3, -1.2];
        let expected_value = reference_mlp(&p, "critic", &x, 2)[0];
        assert_eq!(p.value(&x), expected_value);
        let mean = reference_mlp(&p, "actor", &x, 2);
        let mut action = [0.0; 2];
        p.deterministic(&x, &mut action);
        assert_eq!(action.to_vec(), mean);
    }

    #[test]
    fn categorical_sampling_follows_the_softmax() {
        let mut p = filled(ActionHead::Categorical { n: 3 });
        let x = [0.5, 0.5];
        let logits = reference_mlp(&p, "actor", &x, 2);
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        let probs: Vec<f32> = logits.iter().map(|l| l.exp() / z).collect();
        let mut rng = Rng::from_seed(3);
        let mut counts = [0usize; 3];
        let mut action = [0.0];
        for _ in 0..30_000 {
            let lp = p.sample(&x, &mut rng, &mut action);
            let a = action[0] as usize;
            counts[a] += 1;
            assert!((lp - probs[a].ln()).abs() < 1e-5);
        }
        for a in 0..3 {
            let freq = counts[a] as f32 / 30_000.0;
            assert!(
                (freq - probs[a]).abs() < 0.015,
                "{a}: {freq} vs {}",
                probs[a]
            );
        }
    }

    #[test]
    fn gaussian_samples_have_the_policy_mean_and_std_and_log_prob() {
        let mut p = filled(ActionHead::Gaussian { dim: 2 });
        let ls = p.layout().get("actor_logstd").unwrap().offset;
        p.weights_mut()[ls] = (0.5_f32).ln();
        p.weights_mut()[ls + 1] = (2.0_f32).ln();
        let x = [0.1, 0.2];
        let mut mean = [0.0; 2];
        p.deterministic(&x, &mut mean);
        let mut rng = Rng::from_seed(9);
        let (mut sum, mut sum_sq) = ([0.0f64; 2], [0.0f64; 2]);
        let mut action = [0.0; 2];
        let n = 40_000;
        for _ in 0..n {
            let lp = p.sample(&x, &mut rng, &mut action);
            let mut expected = 0.0;
            for i in 0..2 {
                let std = [0.5_f32, 2.0][i];
                let z = (action[i] - mean[i]) / std;
                expected += -0.5 * z * z - std.ln() - LOG_SQRT_2PI;
                sum[i] += action[i] as f64;
                sum_sq[i] += (action[i] as f64).powi(2);
            }
            assert!((lp - expected).abs() < 1e-3, "{lp} vs {expected}");
        }
        for i in 0..2 {
            let m = sum[i] / n as f64;
            let sd = (sum_sq[i] / n as f64 - m * m).sqrt();
            assert!((m - mean[i] as f64).abs() < 0.03, "mean {m}");
            assert!((sd - [0.5, 2.0][i]).abs() < 0.03, "std {sd}");
        }
    }

    #[test]
    fn wrong_weight_length_is_an_error() {
        let mut p = filled(ActionHead::Categorical { n: 2 });
        assert!(p.set_weights(&[0.0; 3]).is_err());
    }
}
