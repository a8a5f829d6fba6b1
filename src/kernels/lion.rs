//! Lion: the sign of an interpolated momentum.
//!
//! Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"
//! (arXiv:2302.06675), Algorithm 2, with decoupled weight decay:
//!
//! ```text
//! g <- -g if maximize
//! theta <- theta (1 - lr wd)
//! c <- beta1 m + (1 - beta1) g
//! theta <- theta - lr sign(c)
//! m <- beta2 m + (1 - beta2) g
//! ```
//!
//! which is the paper's `theta <- theta - lr (sign(c) + wd theta)` with the decay
//! applied first. `sign` is NumPy's: 0 at 0, and NaN stays NaN (torch's `sign` maps
//! NaN to 0, which would hide a NaN gradient).

use super::{GradScale, Real, ScaleGrad, Update};

/// Lion hyperparameters of one param group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LionHyper {
    /// Learning rate: every coordinate moves by exactly `lr` (before weight decay).
    pub lr: f64,
    /// Interpolation weight of the momentum in the update direction.
    pub beta1: f64,
    /// Decay rate of the momentum.
    pub beta2: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
}

#[derive(Clone, Copy, Debug)]
struct Scalars<T> {
    decay_factor: T,
    beta1: T,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    neg_lr: T,
    decays: bool,
    maximize: bool,
    grad_scale: GradScale<T>,
}

/// One tensor's Lion step.
#[derive(Debug)]
pub struct LionTensor<'a, T> {
    s: Scalars<T>,
    param: &'a mut [T],
    grad: &'a [T],
    exp_avg: &'a mut [T],
}

impl<'a, T: Real> LionTensor<'a, T> {
    /// Prepares a step.
    pub fn new(h: &LionHyper, param: &'a mut [T], grad: &'a [T], exp_avg: &'a mut [T]) -> Self {
        let s = Scalars {
            decay_factor: T::of(1.0 - h.lr * h.weight_decay),
            beta1: T::of(h.beta1),
            one_minus_beta1: T::of(1.0 - h.beta1),
            beta2: T::of(h.beta2),
            one_minus_beta2: T::of(1.0 - h.beta2),
            neg_lr: T::of(-h.lr),
            decays: h.weight_decay != 0.0,
            maximize: h.maximize,
            grad_scale: GradScale::one(),
        };
        Self { s, param, grad, exp_avg }
    }
}

impl<T: Real> ScaleGrad<T> for LionTensor<'_, T> {
    fn scaled(mut self, scale: GradScale<T>) -> Self {
        self.s.grad_scale = scale;
        self
    }
}

chunk!(LionTensor { copy: s; cut: param, grad, exp_avg });

/// NumPy's `sign`: -1, 0 or 1, and NaN for NaN.
#[inline(always)]
fn sign<T: Real>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else if x == T::zero() {
        T::zero()
    } else {
        x
    }
}

impl<T: Real> Update for LionTensor<'_, T> {
    #[inline(always)]
    fn update(self) {
        let s = self.s;
        for ((p, &g), m) in self.param.iter_mut().zip(self.grad).zip(self.exp_avg.iter_mut()) {
            let g = s.grad_scale.apply(g);
            let g = if s.maximize { -g } else { g };
            if s.decays {
                *p = *p * s.decay_factor;
            }
            let c = *m * s.beta1 + s.one_minus_beta1 * g;
            *p = *p + s.neg_lr * sign(c);
            *m = *m * s.beta2 + s.one_minus_beta2 * g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, wave};

    /// Algorithm 2 of Chen et al., transcribed literally:
    /// `theta <- theta - lr (sign(beta1 m + (1 - beta1) g) + wd theta)`.
    fn against_algorithm_2(h: LionHyper) {
        let n = 12;
        let mut theta = wave(n, 20);
        let mut m = vec![0.0; n];
        let mut reference = theta.clone();
        let mut rm = vec![0.0; n];
        for t in 1..=30 {
            let raw = wave(n, t);
            LionTensor::new(&h, &mut theta, &raw, &mut m).update();
            for i in 0..n {
                let g = if h.maximize { -raw[i] } else { raw[i] };
                let c = h.beta1 * rm[i] + (1.0 - h.beta1) * g;
                let direction = if c > 0.0 {
                    1.0
                } else if c < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                reference[i] -= h.lr * (direction + h.weight_decay * reference[i]);
                rm[i] = h.beta2 * rm[i] + (1.0 - h.beta2) * g;
            }
            assert_close(&theta, &reference, 1e-12);
            assert_close(&m, &rm, 1e-12);
        }
    }

    #[test]
    fn matches_algorithm_2() {
        against_algorithm_2(LionHyper {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.0,
            maximize: false,
        });
    }

    #[test]
    fn matches_with_weight_decay_and_maximize() {
        against_algorithm_2(LionHyper {
            lr: 3e-2,
            beta1: 0.5,
            beta2: 0.9,
            weight_decay: 0.5,
            maximize: true,
        });
    }

    #[test]
    fn sign_is_numpys() {
        assert_eq!((sign(2.5f64), sign(-0.1f64), sign(0.0f64), sign(-0.0f64)), (1.0, -1.0, 0.0, 0.0));
        assert!(sign(f32::NAN).is_nan());
        // a zero direction leaves the parameter where it is
        let h = LionHyper { lr: 0.5, beta1: 0.9, beta2: 0.99, weight_decay: 0.0, maximize: false };
        let (mut p, mut m) = ([1.0f32, 1.0], [0.0f32, 0.0]);
        LionTensor::new(&h, &mut p, &[0.0, -2.0], &mut m).update();
        assert_eq!(p, [1.0, 1.5]);
    }
}
