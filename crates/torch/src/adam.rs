//! Adam on the flat parameter tensor, with its state in the open: the update
//! of `torch.optim.Adam` (no weight decay, no AMSGrad), and moments and the
//! step count that a checkpoint can read and restore.

use tch::Tensor;

/// Adam with its state: first and second moments shaped like the flat
/// parameters, and the number of steps taken.
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub exp_avg: Tensor,    // [total_len]
    pub exp_avg_sq: Tensor, // [total_len]
    pub step: u64,
}

impl Adam {
    pub fn new(params: &Tensor, beta1: f64, beta2: f64, eps: f64) -> Self {
        Adam {
            beta1,
            beta2,
            eps,
            exp_avg: params.zeros_like().detach(),
            exp_avg_sq: params.zeros_like().detach(),
            step: 0,
        }
    }

    /// One step with learning rate `lr`, if the parameters have a gradient.
    pub fn step(&mut self, params: &mut Tensor, lr: f64) {
        let grad = params.grad();
        if !grad.defined() {
            return;
        }
        tch::no_grad(|| {
            self.step += 1;
            // torch: exp_avg.lerp_(grad, 1 - beta1)
            let _ = self.exp_avg.lerp_(&grad, 1.0 - self.beta1);
            // torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            let _ = self.exp_avg_sq.g_mul_scalar_(self.beta2);
            let _ = self
                .exp_avg_sq
                .addcmul_(&(&grad * (1.0 - self.beta2)), &grad);
            let bias_correction1 = 1.0 - self.beta1.powi(self.step as i32);
            let bias_correction2 = 1.0 - self.beta2.powi(self.step as i32);
            let step_size = lr / bias_correction1;
            let denom = (self.exp_avg_sq.sqrt() / bias_correction2.sqrt()) + self.eps;
            let _ = params.addcdiv_(&(&self.exp_avg * (-step_size)), &denom);
        });
    }
}

/// Scales the gradient so that its L2 norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_` over all parameters at once); returns
/// the norm before clipping.
pub fn clip_grad_norm(params: &Tensor, max_norm: f64) -> f64 {
    let mut grad = params.grad();
    if !grad.defined() {
        return 0.0;
    }
    tch::no_grad(|| {
        let total = grad.norm().double_value(&[]);
        let clip_coef = (max_norm / (total + 1e-6)).min(1.0);
        if clip_coef < 1.0 {
            let _ = grad.g_mul_scalar_(clip_coef);
        }
        total
    })
}
