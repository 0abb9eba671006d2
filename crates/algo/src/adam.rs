//! Adam on tensors, with its state in the open: exact update of
//! `torch.optim.Adam` (no weight decay, no AMSGrad), and moments and step
//! counts that a checkpoint can read and restore.

use tch::{Kind, Tensor};

/// Adam's per-parameter state.
pub struct AdamState {
    pub exp_avg: Tensor,    // First moment, same shape as the parameter.
    pub exp_avg_sq: Tensor, // Second moment.
    pub step: u64,
}

pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// One entry per parameter, in the parameters' order.
    pub state: Vec<AdamState>,
}

impl Adam {
    pub fn new(params: &[(String, Tensor)], beta1: f64, beta2: f64, eps: f64) -> Self {
        let state = params
            .iter()
            .map(|(_, p)| AdamState {
                exp_avg: p.zeros_like().detach(),
                exp_avg_sq: p.zeros_like().detach(),
                step: 0,
            })
            .collect();
        Adam {
            beta1,
            beta2,
            eps,
            state,
        }
    }

    /// One step with learning rate `lr` on every parameter that has a
    /// gradient.
    pub fn step(&mut self, params: &mut [(String, Tensor)], lr: f64) {
        tch::no_grad(|| {
            for ((_, p), s) in params.iter_mut().zip(&mut self.state) {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                s.step += 1;
                // torch: exp_avg.lerp_(grad, 1 - beta1)
                let _ = s.exp_avg.lerp_(&grad, 1.0 - self.beta1);
                // torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                let _ = s.exp_avg_sq.g_mul_scalar_(self.beta2);
                let _ = s.exp_avg_sq.addcmul_(&(&grad * (1.0 - self.beta2)), &grad);
                let bias_correction1 = 1.0 - self.beta1.powi(s.step as i32);
                let bias_correction2 = 1.0 - self.beta2.powi(s.step as i32);
                let step_size = lr / bias_correction1;
                let denom = (s.exp_avg_sq.sqrt() / bias_correction2.sqrt()) + self.eps;
                let update = (&s.exp_avg / denom) * (-step_size);
                let _ = p.g_add_(&update.to_kind(Kind::Float));
            }
        });
    }
}

/// Scales all gradients so that their global L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
pub fn clip_grad_norm(params: &[(String, Tensor)], max_norm: f64) -> f64 {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm();
        let clip_coef = (max_norm / (total.double_value(&[]) + 1e-6)).min(1.0);
        let total_value = total.double_value(&[]);
        for mut g in grads {
            let _ = g.g_mul_scalar_(clip_coef);
        }
        total_value
    })
}
