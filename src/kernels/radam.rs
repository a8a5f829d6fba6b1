//! RAdam: Adam with the variance of the adaptive learning rate rectified.
//!
//! Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond"
//! (arXiv:1908.03265), Algorithm 2, with decoupled weight decay (Loshchilov & Hutter
//! 2019) as an option, in torch's order of operations:
//!
//! ```text
//! g <- -g if maximize
//! theta <- theta (1 - lr wd)     if decoupled,   else   g <- g + wd theta
//! m <- beta1 m + (1 - beta1) g                    (torch: m.lerp_(g, 1 - beta1))
//! v <- beta2 v + (1 - beta2) g^2
//! rho_inf = 2 / (1 - beta2) - 1,   rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
//! if rho_t > 5:
//!     r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
//!     theta <- theta - m / (1 - beta1^t) * lr * sqrt(1 - beta2^t) / (sqrt(v) + eps) * r_t
//! else:
//!     theta <- theta - m / (1 - beta1^t) * lr          (un-adapted SGD with momentum)
//! ```
//!
//! `rho_t` is the length of the approximated simple moving average; below 5 the
//! variance of the adaptive rate is intractable and the step falls back to momentum.

use super::{effective_grad, lerp, GradScale, Real, ScaleGrad, Update};

/// RAdam hyperparameters of one param group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RadamHyper {
    /// Learning rate.
    pub lr: f64,
    /// Decay rate of the first moment.
    pub beta1: f64,
    /// Decay rate of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay: L2 on the gradient, or decoupled.
    pub weight_decay: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// Decay the weights directly instead of adding `wd * theta` to the gradient.
    pub decoupled_weight_decay: bool,
}

impl RadamHyper {
    /// The rectification term `r_t` of step `step`, or `None` while `rho_t <= 5`.
    pub fn rectification(&self, step: f64) -> Option<f64> {
        let rho_inf = 2.0 / (1.0 - self.beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * step * self.beta2.powf(step) / (1.0 - self.beta2.powf(step));
        (rho_t > 5.0).then(|| {
            ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)).powf(0.5)
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Scalars<T> {
    decay_factor: T,
    l2: T,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    bias_correction1: T,
    lr: T,
    bias_correction2_sqrt: T,
    eps: T,
    /// `r_t` when the step is rectified.
    rect: Option<T>,
    decoupled: bool,
    maximize: bool,
    grad_scale: GradScale<T>,
}

/// One tensor's RAdam step.
#[derive(Debug)]
pub struct RadamTensor<'a, T> {
    s: Scalars<T>,
    param: &'a mut [T],
    grad: &'a [T],
    exp_avg: &'a mut [T],
    exp_avg_sq: &'a mut [T],
}

impl<'a, T: Real> RadamTensor<'a, T> {
    /// Prepares step number `step` (already incremented, so 1 on the first step).
    pub fn new(
        h: &RadamHyper,
        step: f64,
        param: &'a mut [T],
        grad: &'a [T],
        exp_avg: &'a mut [T],
        exp_avg_sq: &'a mut [T],
    ) -> Self {
        let decoupled = h.decoupled_weight_decay && h.weight_decay != 0.0;
        let s = Scalars {
            decay_factor: T::of(1.0 - h.lr * h.weight_decay),
            l2: T::of(if decoupled { 0.0 } else { h.weight_decay }),
            one_minus_beta1: T::of(1.0 - h.beta1),
            beta2: T::of(h.beta2),
            one_minus_beta2: T::of(1.0 - h.beta2),
            bias_correction1: T::of(1.0 - h.beta1.powf(step)),
            lr: T::of(h.lr),
            bias_correction2_sqrt: T::of((1.0 - h.beta2.powf(step)).powf(0.5)),
            eps: T::of(h.eps),
            rect: h.rectification(step).map(T::of),
            decoupled,
            maximize: h.maximize,
            grad_scale: GradScale::one(),
        };
        Self { s, param, grad, exp_avg, exp_avg_sq }
    }
}

impl<T: Real> ScaleGrad<T> for RadamTensor<'_, T> {
    fn scaled(mut self, scale: GradScale<T>) -> Self {
        self.s.grad_scale = scale;
        self
    }
}

chunk!(RadamTensor { copy: s; cut: param, grad, exp_avg, exp_avg_sq });

impl<T: Real> Update for RadamTensor<'_, T> {
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
            let bias_corrected = *m / s.bias_correction1;
            *p = *p
                - match s.rect {
                    // torch: scalar / tensor is tensor.reciprocal() * scalar
                    Some(rect) => {
                        let adaptive = T::one() / (v.sqrt() + s.eps) * s.bias_correction2_sqrt;
                        bias_corrected * s.lr * adaptive * rect
                    }
                    None => bias_corrected * s.lr,
                };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, wave};

    fn hyper() -> RadamHyper {
        RadamHyper {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
            decoupled_weight_decay: false,
        }
    }

    /// Algorithm 2 of Liu et al., transcribed literally (with torch's `eps`), for
    /// `steps` steps; returns how many of them were rectified.
    fn against_algorithm_2(h: RadamHyper, steps: usize) -> usize {
        let n = 10;
        let mut theta = wave(n, 30);
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        let mut reference = theta.clone();
        let (mut rm, mut rv) = (vec![0.0; n], vec![0.0; n]);
        let rho_inf = 2.0 / (1.0 - h.beta2) - 1.0;
        let mut rectified = 0;
        for t in 1..=steps {
            let raw = wave(n, t);
            RadamTensor::new(&h, t as f64, &mut theta, &raw, &mut m, &mut v).update();
            let b2t = h.beta2.powi(t as i32);
            let rho_t = rho_inf - 2.0 * t as f64 * b2t / (1.0 - b2t);
            rectified += usize::from(rho_t > 5.0);
            for i in 0..n {
                let sign = if h.maximize { -1.0 } else { 1.0 };
                if h.decoupled_weight_decay {
                    reference[i] *= 1.0 - h.lr * h.weight_decay;
                }
                let wd = if h.decoupled_weight_decay { 0.0 } else { h.weight_decay };
                let g = sign * raw[i] + wd * reference[i];
                rm[i] = h.beta1 * rm[i] + (1.0 - h.beta1) * g;
                rv[i] = h.beta2 * rv[i] + (1.0 - h.beta2) * g * g;
                let m_hat = rm[i] / (1.0 - h.beta1.powi(t as i32));
                if rho_t > 5.0 {
                    let l = (1.0 - b2t).sqrt() / (rv[i].sqrt() + h.eps);
                    let r = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                        / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                        .sqrt();
                    reference[i] -= h.lr * m_hat * r * l;
                } else {
                    reference[i] -= h.lr * m_hat;
                }
            }
            assert_close(&theta, &reference, 1e-9);
        }
        rectified
    }

    #[test]
    fn matches_algorithm_2_across_the_switch() {
        // with beta2 = 0.999, rho_t first exceeds 5 at t = 6
        assert_eq!(against_algorithm_2(hyper(), 20), 15);
    }

    #[test]
    fn matches_with_l2_and_maximize() {
        let h = RadamHyper { weight_decay: 0.1, maximize: true, beta2: 0.99, ..hyper() };
        assert_eq!(against_algorithm_2(h, 20), 15);
    }

    #[test]
    fn matches_with_decoupled_weight_decay() {
        let h = RadamHyper { weight_decay: 0.2, decoupled_weight_decay: true, ..hyper() };
        assert_eq!(against_algorithm_2(h, 12), 7);
    }

    #[test]
    fn small_beta2_never_rectifies() {
        // rho_inf = 2 / (1 - 0.5) - 1 = 3 <= 5: always the momentum fallback
        let h = RadamHyper { beta2: 0.5, ..hyper() };
        assert!((1..100).all(|t| h.rectification(t as f64).is_none()));
        assert_eq!(against_algorithm_2(h, 10), 0);
    }
}
