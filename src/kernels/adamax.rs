//! Adamax: Adam with the infinity norm.
//!
//! Kingma & Ba 2015, Algorithm 2 (arXiv:1412.6980, section 7.1), in torch's order of
//! operations; torch adds `eps` to `|g|` so that `u` is never zero:
//!
//! ```text
//! g <- -g if maximize;  g <- g + wd theta
//! m <- beta1 m + (1 - beta1) g                    (torch: m.lerp_(g, 1 - beta1))
//! u <- max(beta2 u, |g| + eps)                    (exp_inf)
//! theta <- theta - lr / (1 - beta1^t) * m / u
//! ```
//!
//! With `eps_in_max` off, `eps` is added outside the maximum, as Keras's `Adamax` does
//! and Algorithm 2 (which has no `eps`) does with `eps = 0`:
//! `u <- max(beta2 u, |g|)`, `theta <- theta - lr / (1 - beta1^t) * m / (u + eps)`.

use super::{effective_grad, lerp, maximum, GradScale, Real, ScaleGrad, Update};

/// Adamax hyperparameters of one param group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamaxHyper {
    /// Learning rate (Algorithm 2's alpha).
    pub lr: f64,
    /// Decay rate of the first moment.
    pub beta1: f64,
    /// Decay rate of the infinity norm.
    pub beta2: f64,
    /// Added to `|g|` in the infinity norm.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// `u <- max(beta2 u, |g| + eps)` (torch, optax) instead of `m / (u + eps)` (Keras).
    pub eps_in_max: bool,
}

#[derive(Clone, Copy, Debug)]
struct Scalars<T> {
    weight_decay: T,
    one_minus_beta1: T,
    beta2: T,
    eps: T,
    neg_step_size: T,
    maximize: bool,
    eps_in_max: bool,
    grad_scale: GradScale<T>,
}

/// One tensor's Adamax step.
#[derive(Debug)]
pub struct AdamaxTensor<'a, T> {
    s: Scalars<T>,
    param: &'a mut [T],
    grad: &'a [T],
    exp_avg: &'a mut [T],
    exp_inf: &'a mut [T],
}

impl<'a, T: Real> AdamaxTensor<'a, T> {
    /// Prepares step number `step` (already incremented, so 1 on the first step).
    pub fn new(
        h: &AdamaxHyper,
        step: f64,
        param: &'a mut [T],
        grad: &'a [T],
        exp_avg: &'a mut [T],
        exp_inf: &'a mut [T],
    ) -> Self {
        let s = Scalars {
            weight_decay: T::of(h.weight_decay),
            one_minus_beta1: T::of(1.0 - h.beta1),
            beta2: T::of(h.beta2),
            eps: T::of(h.eps),
            neg_step_size: T::of(-(h.lr / (1.0 - h.beta1.powf(step)))),
            maximize: h.maximize,
            eps_in_max: h.eps_in_max,
            grad_scale: GradScale::one(),
        };
        Self { s, param, grad, exp_avg, exp_inf }
    }
}

impl<T: Real> ScaleGrad<T> for AdamaxTensor<'_, T> {
    fn scaled(mut self, scale: GradScale<T>) -> Self {
        self.s.grad_scale = scale;
        self
    }
}

chunk!(AdamaxTensor { copy: s; cut: param, grad, exp_avg, exp_inf });

impl<T: Real> AdamaxTensor<'_, T> {
    /// The update; `IN_MAX` is `eps_in_max`, a loop constant.
    #[inline(always)]
    fn run<const IN_MAX: bool>(self) {
        let s = self.s;
        let lanes = self.param.iter_mut().zip(self.grad).zip(self.exp_avg.iter_mut().zip(self.exp_inf));
        for ((p, &g), (m, u)) in lanes {
            let g = effective_grad(g, *p, s.maximize, s.weight_decay, s.grad_scale);
            *m = lerp(*m, g, s.one_minus_beta1);
            if IN_MAX {
                *u = maximum(*u * s.beta2, g.abs() + s.eps);
                *p = *p + s.neg_step_size * *m / *u;
            } else {
                *u = maximum(*u * s.beta2, g.abs());
                *p = *p + s.neg_step_size * *m / (*u + s.eps);
            }
        }
    }
}

impl<T: Real> Update for AdamaxTensor<'_, T> {
    #[inline(always)]
    fn update(self) {
        if self.s.eps_in_max {
            self.run::<true>()
        } else {
            self.run::<false>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, wave};

    /// Algorithm 2 of Kingma & Ba, transcribed literally (with torch's `eps` in `u`, or
    /// Keras's added to it).
    fn against_algorithm_2(h: AdamaxHyper) {
        let n = 9;
        let mut theta = wave(n, 40);
        let (mut m, mut u) = (vec![0.0; n], vec![0.0; n]);
        let mut reference = theta.clone();
        let (mut rm, mut ru) = (vec![0.0; n], vec![0.0f64; n]);
        for t in 1..=25 {
            let raw = wave(n, t);
            AdamaxTensor::new(&h, t as f64, &mut theta, &raw, &mut m, &mut u).update();
            for i in 0..n {
                let sign = if h.maximize { -1.0 } else { 1.0 };
                let g = sign * raw[i] + h.weight_decay * reference[i];
                rm[i] = h.beta1 * rm[i] + (1.0 - h.beta1) * g;
                let step_size = h.lr / (1.0 - h.beta1.powi(t as i32));
                if h.eps_in_max {
                    ru[i] = (h.beta2 * ru[i]).max(g.abs() + h.eps);
                    reference[i] -= step_size * rm[i] / ru[i];
                } else {
                    ru[i] = (h.beta2 * ru[i]).max(g.abs());
                    reference[i] -= step_size * rm[i] / (ru[i] + h.eps);
                }
            }
            assert_close(&theta, &reference, 1e-9);
            assert_close(&u, &ru, 1e-12);
        }
    }

    #[test]
    fn matches_algorithm_2() {
        let h = AdamaxHyper {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
            eps_in_max: true,
        };
        against_algorithm_2(h);
        against_algorithm_2(AdamaxHyper { eps: 1e-3, eps_in_max: false, ..h });
    }

    #[test]
    fn matches_with_l2_maximize_and_fast_decay() {
        let h = AdamaxHyper {
            lr: 1e-2,
            beta1: 0.5,
            beta2: 0.6,
            eps: 1e-3,
            weight_decay: 0.1,
            maximize: true,
            eps_in_max: true,
        };
        against_algorithm_2(h);
    }

    #[test]
    fn infinity_norm_propagates_nan_like_torch_maximum() {
        let h = AdamaxHyper {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.9,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
            eps_in_max: true,
        };
        let (mut p, mut m, mut u) = ([1.0f32, 1.0], [0.0f32; 2], [5.0f32, 5.0]);
        AdamaxTensor::new(&h, 1.0, &mut p, &[f32::NAN, 1.0], &mut m, &mut u).update();
        assert!(u[0].is_nan() && p[0].is_nan());
        assert_eq!(u[1], 4.5);
    }
}
