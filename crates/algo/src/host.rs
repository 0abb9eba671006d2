//! The PPO gradient computed on the host CPU without libtorch: forward and
//! backward of the two MLPs written out by hand over the flat weight buffer,
//! matrix products by `matrixmultiply` (runtime-detected AVX2/FMA), Adam and
//! gradient clipping on flat vectors.
//!
//! For the small networks of classic control, libtorch's per-operation
//! overhead (a few microseconds for each of some hundreds of operations per
//! minibatch) dominates the arithmetic; this path removes it. It computes the
//! same loss as [`crate::engine::torch::ppo_loss`] and is checked against the same
//! PyTorch fixtures.

use rl_policy::fast_math::fast_tanh;
use rl_policy::{ActionHead, Activation, ParamLayout, PolicySpec};

use crate::engine::gradient::LossTerms;
use crate::ppo::config::PpoConfig;

const HALF_LOG_2PI: f32 = 0.918_938_5;

/// A minibatch in host memory, row-major.
pub struct HostMinibatch<'a> {
    pub obs: &'a [f32],           // [B, obs_dim], normalised
    pub actions: &'a [f32],       // [B, action_dim]
    pub old_log_probs: &'a [f32], // [B]
    pub advantages: &'a [f32],    // [B]
    pub returns: &'a [f32],       // [B]
    pub old_values: &'a [f32],    // [B]
}

#[derive(Debug, Clone, Copy)]
struct Layer {
    weight: usize,
    bias: usize,
    input: usize,
    output: usize,
}

fn layers(layout: &ParamLayout, prefix: &str, sizes: &[(usize, usize)]) -> Vec<Layer> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &(input, output))| {
            let offset = |kind: &str| {
                layout
                    .get(&format!("{prefix}.{}.{kind}", 2 * i))
                    .map(|e| e.offset)
                    .unwrap_or_else(|| unreachable!("the layout holds every layer"))
            };
            Layer {
                weight: offset("weight"),
                bias: offset("bias"),
                input,
                output,
            }
        })
        .collect()
}

/// `c[m, n] = a[m, k] · b` where `b` is `[k, n]` given by strides; row-major `c`.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: isize,
    csa: isize,
    b: &[f32],
    rsb: isize,
    csb: isize,
    c: &mut [f32],
    beta: f32,
) {
    debug_assert!(c.len() >= m * n);
    // SAFETY: the strides and sizes describe sub-slices of `a`, `b` and `c`,
    // which the callers size as [m, k], [k, n] and [m, n].
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Forward activations of one MLP: `hidden[l]` holds `[B, out_l]` after the
/// activation for every hidden layer, `out` the last layer's `[B, out]`.
struct MlpCache {
    hidden: Vec<Vec<f32>>,
    out: Vec<f32>,
}

/// Computes the PPO loss and its gradient with respect to the flat weights.
pub struct HostGradient {
    spec: PolicySpec,
    actor: Vec<Layer>,
    critic: Vec<Layer>,
    log_std: Option<usize>,
    grad_in: Vec<f32>,
}

impl HostGradient {
    pub fn new(spec: PolicySpec) -> Self {
        let layout = spec.layout();
        let actor = layers(&layout, "actor", &spec.actor_layers());
        let critic = layers(&layout, "critic", &spec.critic_layers());
        let log_std = layout.get("actor_logstd").map(|e| e.offset);
        HostGradient {
            spec,
            actor,
            critic,
            log_std,
            grad_in: Vec::new(),
        }
    }

    fn forward(&self, layers: &[Layer], w: &[f32], x: &[f32], batch: usize) -> MlpCache {
        let mut hidden: Vec<Vec<f32>> = Vec::with_capacity(layers.len());
        let mut out = Vec::new();
        for (l, layer) in layers.iter().enumerate() {
            let input: &[f32] = if l == 0 { x } else { &hidden[l - 1] };
            let mut z = vec![0.0_f32; batch * layer.output];
            let weight = &w[layer.weight..layer.weight + layer.output * layer.input];
            // z = input · weightᵀ: weight is [out, in] row-major.
            gemm(
                batch,
                layer.input,
                layer.output,
                input,
                layer.input as isize,
                1,
                weight,
                1,
                layer.input as isize,
                &mut z,
                0.0,
            );
            let bias = &w[layer.bias..layer.bias + layer.output];
            let last = l + 1 == layers.len();
            for row in z.chunks_exact_mut(layer.output) {
                for (v, b) in row.iter_mut().zip(bias) {
                    let s = *v + b;
                    *v = if last {
                        s
                    } else {
                        match self.spec.activation {
                            Activation::Tanh => fast_tanh(s),
                            Activation::Relu => s.max(0.0),
                        }
                    };
                }
            }
            if last {
                out = z;
            } else {
                hidden.push(z);
            }
        }
        MlpCache { hidden, out }
    }

    /// Backpropagates `d_out` (`[B, out]`, gradient of the loss with respect
    /// to the MLP's output) into `grad`.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &mut self,
        critic: bool,
        w: &[f32],
        x: &[f32],
        cache: &MlpCache,
        d_out: Vec<f32>,
        batch: usize,
        grad: &mut [f32],
    ) {
        // The scratch buffer is moved out so the layer list can stay borrowed.
        let mut scratch = std::mem::take(&mut self.grad_in);
        let layers = if critic { &self.critic } else { &self.actor };
        let mut dz = d_out;
        for l in (0..layers.len()).rev() {
            let layer = layers[l];
            let input: &[f32] = if l == 0 { x } else { &cache.hidden[l - 1] };
            // dW = dzᵀ · input: [out, B] x [B, in].
            let dw = &mut grad[layer.weight..layer.weight + layer.output * layer.input];
            gemm(
                layer.output,
                batch,
                layer.input,
                &dz,
                1,
                layer.output as isize,
                input,
                layer.input as isize,
                1,
                dw,
                0.0,
            );
            let db = &mut grad[layer.bias..layer.bias + layer.output];
            db.fill(0.0);
            for row in dz.chunks_exact(layer.output) {
                for (d, v) in db.iter_mut().zip(row) {
                    *d += v;
                }
            }
            if l == 0 {
                break;
            }
            // d input = dz · W: [B, out] x [out, in], then through the activation.
            let weight = &w[layer.weight..layer.weight + layer.output * layer.input];
            scratch.clear();
            scratch.resize(batch * layer.input, 0.0);
            gemm(
                batch,
                layer.output,
                layer.input,
                &dz,
                layer.output as isize,
                1,
                weight,
                layer.input as isize,
                1,
                &mut scratch,
                0.0,
            );
            let h = &cache.hidden[l - 1];
            match self.spec.activation {
                Activation::Tanh => {
                    for (g, y) in scratch.iter_mut().zip(h) {
                        *g *= 1.0 - y * y;
                    }
                }
                Activation::Relu => {
                    for (g, y) in scratch.iter_mut().zip(h) {
                        if *y <= 0.0 {
                            *g = 0.0;
                        }
                    }
                }
            }
            std::mem::swap(&mut dz, &mut scratch);
        }
        self.grad_in = scratch;
    }

    /// The loss of one minibatch, and its gradient written into `grad`
    /// (`[total_len]`, overwritten).
    #[allow(clippy::needless_range_loop)] // Rows index several arrays of different widths.
    pub fn loss_and_grad(
        &mut self,
        weights: &[f32],
        mb: &HostMinibatch<'_>,
        config: &PpoConfig,
        clip_coef: f64,
        grad: &mut [f32],
    ) -> LossTerms {
        let batch = mb.advantages.len();
        let inv_b = 1.0 / batch as f64;
        let clip = clip_coef as f32;
        let x = mb.obs;
        let actor = self.forward(&self.actor, weights, x, batch);
        let critic = self.forward(&self.critic, weights, x, batch);
        grad.fill(0.0);

        // Advantages, normalised per minibatch with the unbiased std as torch.
        let advantages: Vec<f32> = if config.norm_adv {
            let mean = mb.advantages.iter().map(|a| *a as f64).sum::<f64>() * inv_b;
            let var = mb
                .advantages
                .iter()
                .map(|a| (*a as f64 - mean).powi(2))
                .sum::<f64>()
                / (batch as f64 - 1.0).max(1.0);
            let std = var.sqrt() as f32;
            mb.advantages
                .iter()
                .map(|a| (a - mean as f32) / (std + 1e-8))
                .collect()
        } else {
            mb.advantages.to_vec()
        };

        // Log-probabilities and entropies from the actor's outputs.
        let n_out = self.spec.head.actor_outputs();
        let mut log_probs = vec![0.0_f32; batch];
        let mut entropies = vec![0.0_f32; batch];
        let mut probs = vec![0.0_f32; batch * n_out]; // Categorical only
        match self.spec.head {
            ActionHead::Categorical { .. } => {
                for i in 0..batch {
                    let z = &actor.out[i * n_out..(i + 1) * n_out];
                    let max = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let sum: f32 = z.iter().map(|v| (v - max).exp()).sum();
                    let lse = max + sum.ln();
                    let p = &mut probs[i * n_out..(i + 1) * n_out];
                    let mut entropy = 0.0;
                    for (pj, zj) in p.iter_mut().zip(z) {
                        let log_p = zj - lse;
                        *pj = log_p.exp();
                        entropy -= *pj * log_p;
                    }
                    let a = (mb.actions[i] as usize).min(n_out - 1);
                    log_probs[i] = z[a] - lse;
                    entropies[i] = entropy;
                }
            }
            // PPO's heads only (PpoLearner refuses the others).
            _ => {
                let dim = self.spec.head.action_dim();
                let ls = &weights[self.log_std.unwrap_or(0)..self.log_std.unwrap_or(0) + dim];
                let entropy: f32 = ls.iter().map(|s| s + 0.5 + HALF_LOG_2PI).sum();
                for i in 0..batch {
                    let mut lp = 0.0;
                    for d in 0..dim {
                        let z = (mb.actions[i * dim + d] - actor.out[i * dim + d]) / ls[d].exp();
                        lp += -0.5 * z * z - ls[d] - HALF_LOG_2PI;
                    }
                    log_probs[i] = lp;
                    entropies[i] = entropy;
                }
            }
        }

        let mut terms = LossTerms::default();
        let mut g_log_prob = vec![0.0_f32; batch]; // d loss / d log_prob
        let mut d_value = vec![0.0_f32; batch]; // d loss / d value
        for i in 0..batch {
            let log_ratio = log_probs[i] - mb.old_log_probs[i];
            let ratio = log_ratio.exp();
            terms.old_approx_kl += -log_ratio as f64;
            terms.approx_kl += ((ratio - 1.0) - log_ratio) as f64;
            terms.clip_frac += f64::from(u8::from((ratio - 1.0).abs() > clip));
            let a = advantages[i];
            let pg1 = -a * ratio;
            let pg2 = -a * ratio.clamp(1.0 - clip, 1.0 + clip);
            terms.policy_loss += pg1.max(pg2) as f64;
            let inside = (1.0 - clip..=1.0 + clip).contains(&ratio);
            let d_ratio = if pg1 >= pg2 || inside { -a } else { 0.0 };
            g_log_prob[i] = (d_ratio * ratio) as f32 * inv_b as f32;

            let v = critic.out[i];
            let (ret, old_v) = (mb.returns[i], mb.old_values[i]);
            let unclipped = (v - ret) * (v - ret);
            let dv = if config.clip_vloss {
                let delta = v - old_v;
                let clipped_v = old_v + delta.clamp(-clip, clip);
                let clipped = (clipped_v - ret) * (clipped_v - ret);
                terms.value_loss += 0.5 * unclipped.max(clipped) as f64;
                if unclipped >= clipped || (-clip..=clip).contains(&delta) {
                    v - ret
                } else {
                    0.0
                }
            } else {
                terms.value_loss += 0.5 * unclipped as f64;
                v - ret
            };
            d_value[i] = (config.vf_coef * inv_b) as f32 * dv;
            terms.entropy += entropies[i] as f64;
        }
        for t in [
            &mut terms.policy_loss,
            &mut terms.value_loss,
            &mut terms.entropy,
            &mut terms.approx_kl,
            &mut terms.old_approx_kl,
            &mut terms.clip_frac,
        ] {
            *t *= inv_b;
        }
        terms.loss =
            terms.policy_loss - config.ent_coef * terms.entropy + config.vf_coef * terms.value_loss;
        let g_entropy = (-config.ent_coef * inv_b) as f32; // d loss / d entropy_i

        // Gradient with respect to the actor's outputs.
        let mut d_actor = vec![0.0_f32; batch * n_out];
        match self.spec.head {
            ActionHead::Categorical { .. } => {
                for i in 0..batch {
                    let a = (mb.actions[i] as usize).min(n_out - 1);
                    let p = &probs[i * n_out..(i + 1) * n_out];
                    let h = entropies[i];
                    for j in 0..n_out {
                        let d_log_prob = f32::from(u8::from(j == a)) - p[j];
                        let d_entropy = -p[j] * (p[j].max(f32::MIN_POSITIVE).ln() + h);
                        d_actor[i * n_out + j] = g_log_prob[i] * d_log_prob + g_entropy * d_entropy;
                    }
                }
            }
            // PPO's heads only (PpoLearner refuses the others).
            _ => {
                let dim = self.spec.head.action_dim();
                let offset = self.log_std.unwrap_or(0);
                let ls: Vec<f32> = weights[offset..offset + dim].to_vec();
                let mut d_log_std = vec![0.0_f32; dim];
                for i in 0..batch {
                    for d in 0..dim {
                        let std = ls[d].exp();
                        let z = (mb.actions[i * dim + d] - actor.out[i * dim + d]) / std;
                        d_actor[i * dim + d] = g_log_prob[i] * z / std;
                        d_log_std[d] += g_log_prob[i] * (z * z - 1.0) + g_entropy;
                    }
                }
                grad[offset..offset + dim].copy_from_slice(&d_log_std);
            }
        }
        self.backward(false, weights, x, &actor, d_actor, batch, grad);
        self.backward(true, weights, x, &critic, d_value, batch, grad);
        terms
    }
}

/// Scales `grad` so that its L2 norm is at most `max_norm`; returns the norm
/// before clipping (`torch.nn.utils.clip_grad_norm_`).
pub fn clip_grad_norm_host(grad: &mut [f32], max_norm: f64) -> f64 {
    let norm = grad
        .iter()
        .map(|g| (*g as f64) * (*g as f64))
        .sum::<f64>()
        .sqrt();
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    if coef < 1.0 {
        let coef = coef as f32;
        grad.iter_mut().for_each(|g| *g *= coef);
    }
    norm
}

/// `torch.optim.Adam` on flat vectors, with its state in the open.
#[derive(Debug, Clone, PartialEq)]
pub struct HostAdam {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
    pub step: u64,
}

impl HostAdam {
    pub fn new(len: usize, beta1: f64, beta2: f64, eps: f64) -> Self {
        HostAdam {
            beta1,
            beta2,
            eps,
            exp_avg: vec![0.0; len],
            exp_avg_sq: vec![0.0; len],
            step: 0,
        }
    }

    pub fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f64) {
        self.step += 1;
        let bias_correction1 = 1.0 - self.beta1.powi(self.step as i32);
        let bias_correction2 = 1.0 - self.beta2.powi(self.step as i32);
        let step_size = (lr / bias_correction1) as f32;
        let bc2_sqrt = bias_correction2.sqrt() as f32;
        let (w1, b2, w2, eps) = (
            (1.0 - self.beta1) as f32,
            self.beta2 as f32,
            (1.0 - self.beta2) as f32,
            self.eps as f32,
        );
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(&mut self.exp_avg)
            .zip(&mut self.exp_avg_sq)
        {
            *m += w1 * (g - *m);
            *v = *v * b2 + w2 * g * g;
            let denom = v.sqrt() / bc2_sqrt + eps;
            *p -= step_size * *m / denom;
        }
    }
}
