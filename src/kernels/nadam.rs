//! NAdam: Adam with Nesterov momentum, and NAdamW.
//!
//! Dozat 2016, "Incorporating Nesterov Momentum into Adam" (ICLR workshop), with the
//! momentum schedule `mu_t = beta1 (1 - 0.5 * 0.96^(t psi))` (`psi` is
//! `momentum_decay`) and decoupled weight decay (Loshchilov & Hutter 2019) as an
//! option, in torch's order of operations:
//!
//! ```text
//! g <- -g if maximize
//! theta <- theta (1 - lr wd)     if decoupled,   else   g <- g + wd theta
//! m <- beta1 m + (1 - beta1) g                    (torch: m.lerp_(g, 1 - beta1))
//! v <- beta2 v + (1 - beta2) g^2
//! d <- sqrt(v / (1 - beta2^t)) + eps
//! theta <- theta - lr (1 - mu_t) / (1 - prod_{i<=t} mu_i) * g / d
//! theta <- theta - lr mu_{t+1} / (1 - prod_{i<=t+1} mu_i) * m / d
//! ```
//!
//! The last two lines are the paper's
//! `theta - lr (mu_{t+1} m_hat + (1 - mu_t) g_hat) / (sqrt(v_hat) + eps)`, with
//! `m_hat = m / (1 - prod_{i<=t+1} mu_i)` and `g_hat = g / (1 - prod_{i<=t} mu_i)`.
//! The running product `prod_{i<=t} mu_i` is per-tensor state (`mu_product`) that the
//! caller keeps and passes in, already multiplied by `mu_t`.

use super::{effective_grad, lerp, GradScale, Real, ScaleGrad, Update};

/// NAdam hyperparameters of one param group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NadamHyper {
    /// Learning rate.
    pub lr: f64,
    /// Decay rate of the first moment, and the ceiling of the momentum schedule.
    pub beta1: f64,
    /// Decay rate of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay: L2 on the gradient, or decoupled (NAdamW).
    pub weight_decay: f64,
    /// `psi` of the momentum schedule `mu_t = beta1 (1 - 0.5 * 0.96^(t psi))`.
    pub momentum_decay: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// Decay the weights directly instead of adding `wd * theta` to the gradient.
    pub decoupled_weight_decay: bool,
}

impl NadamHyper {
    /// The momentum coefficient of step `step`: `mu_t = beta1 (1 - 0.5 * 0.96^(t psi))`.
    pub fn mu(&self, step: f64) -> f64 {
        self.beta1 * (1.0 - 0.5 * 0.96f64.powf(step * self.momentum_decay))
    }
}

#[derive(Clone, Copy, Debug)]
struct Scalars<T> {
    decay_factor: T,
    l2: T,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    bias_correction2: T,
    eps: T,
    grad_step: T,
    avg_step: T,
    decoupled: bool,
    maximize: bool,
    grad_scale: GradScale<T>,
}

/// One tensor's NAdam step.
#[derive(Debug)]
pub struct NadamTensor<'a, T> {
    s: Scalars<T>,
    param: &'a mut [T],
    grad: &'a [T],
    exp_avg: &'a mut [T],
    exp_avg_sq: &'a mut [T],
}

impl<'a, T: Real> NadamTensor<'a, T> {
    /// Prepares step number `step` (already incremented, so 1 on the first step);
    /// `mu_product` is `prod_{i<=step} mu_i`, this step's `mu` included.
    pub fn new(
        h: &NadamHyper,
        step: f64,
        mu_product: f64,
        param: &'a mut [T],
        grad: &'a [T],
        exp_avg: &'a mut [T],
        exp_avg_sq: &'a mut [T],
    ) -> Self {
        let mu = h.mu(step);
        let mu_next = h.mu(step + 1.0);
        let mu_product_next = mu_product * mu_next;
        let decoupled = h.decoupled_weight_decay && h.weight_decay != 0.0;
        let s = Scalars {
            decay_factor: T::of(1.0 - h.lr * h.weight_decay),
            l2: T::of(if decoupled { 0.0 } else { h.weight_decay }),
            one_minus_beta1: T::of(1.0 - h.beta1),
            beta2: T::of(h.beta2),
            one_minus_beta2: T::of(1.0 - h.beta2),
            bias_correction2: T::of(1.0 - h.beta2.powf(step)),
            eps: T::of(h.eps),
            grad_step: T::of(-h.lr * (1.0 - mu) / (1.0 - mu_product)),
            avg_step: T::of(-h.lr * mu_next / (1.0 - mu_product_next)),
            decoupled,
            maximize: h.maximize,
            grad_scale: GradScale::one(),
        };
        Self { s, param, grad, exp_avg, exp_avg_sq }
    }
}

impl<T: Real> ScaleGrad<T> for NadamTensor<'_, T> {
    fn scaled(mut self, scale: GradScale<T>) -> Self {
        self.s.grad_scale = scale;
        self
    }
}

chunk!(NadamTensor { copy: s; cut: param, grad, exp_avg, exp_avg_sq });

impl<T: Real> Update for NadamTensor<'_, T> {
    #[inline(always)]
    fn update(self) {
        let s = self.s;
        let lanes = self.param.iter_mut().zip(self.grad).zip(self.exp_avg.iter_mut().zip(self.exp_avg_sq));
        for ((p, &g), (m, v)) in lanes {
            if s.decoupled {
                *p = *p * s.decay_factor;
            }
            let g = effective_grad(g, *p, s.maximize, s.l2, s.grad_scale);
            *m = lerp(*m, g, s.one_minus_beta1);
            *v = *v * s.beta2 + s.one_minus_beta2 * g * g;
            let denom = (*v / s.bias_correction2).sqrt() + s.eps;
            *p = *p + s.grad_step * g / denom;
            *p = *p + s.avg_step * *m / denom;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, wave};

    fn hyper() -> NadamHyper {
        NadamHyper {
            lr: 2e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
            maximize: false,
            decoupled_weight_decay: false,
        }
    }

    /// Runs the kernel for `steps` steps against Dozat's update with the schedule
    /// `mu_t`, transcribed literally: `m_hat` and `g_hat` bias-corrected by the running
    /// products of `mu`, `theta <- theta - lr (mu_{t+1} m_hat + (1 - mu_t) g_hat) / (sqrt(v_hat) + eps)`.
    fn against_paper(h: NadamHyper, steps: usize) {
        let n = 11;
        let mu = |t: f64| h.beta1 * (1.0 - 0.5 * 0.96f64.powf(t * h.momentum_decay));
        let mut theta = wave(n, 70);
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        let mut reference = theta.clone();
        let (mut rm, mut rv) = (vec![0.0; n], vec![0.0; n]);
        let mut product = 1.0;
        for t in 1..=steps {
            let tf = t as f64;
            let raw = wave(n, t);
            product *= mu(tf);
            NadamTensor::new(&h, tf, product, &mut theta, &raw, &mut m, &mut v).update();
            for i in 0..n {
                let sign = if h.maximize { -1.0 } else { 1.0 };
                if h.decoupled_weight_decay {
                    reference[i] *= 1.0 - h.lr * h.weight_decay;
                }
                let wd = if h.decoupled_weight_decay { 0.0 } else { h.weight_decay };
                let g = sign * raw[i] + wd * reference[i];
                rm[i] = h.beta1 * rm[i] + (1.0 - h.beta1) * g;
                rv[i] = h.beta2 * rv[i] + (1.0 - h.beta2) * g * g;
                let m_hat = rm[i] / (1.0 - product * mu(tf + 1.0));
                let g_hat = g / (1.0 - product);
                let v_hat = rv[i] / (1.0 - h.beta2.powi(t as i32));
                reference[i] -=
                    h.lr * (mu(tf + 1.0) * m_hat + (1.0 - mu(tf)) * g_hat) / (v_hat.sqrt() + h.eps);
            }
            assert_close(&theta, &reference, 1e-9);
        }
    }

    #[test]
    fn matches_dozat_update() {
        against_paper(hyper(), 30);
    }

    #[test]
    fn matches_with_l2_maximize_and_fast_momentum_decay() {
        against_paper(NadamHyper { weight_decay: 0.1, maximize: true, momentum_decay: 0.5, ..hyper() }, 30);
    }

    #[test]
    fn matches_nadamw() {
        against_paper(NadamHyper { weight_decay: 0.3, decoupled_weight_decay: true, ..hyper() }, 30);
    }

    #[test]
    fn momentum_schedule_rises_towards_beta1() {
        let h = NadamHyper { momentum_decay: 0.1, ..hyper() };
        assert_eq!(h.mu(0.0), 0.45);
        assert!(h.mu(1.0) < h.mu(100.0) && h.mu(100.0) < h.beta1);
        assert_eq!(h.mu(1e6), h.beta1); // 0.96^(1e5) underflows to 0
    }
}
