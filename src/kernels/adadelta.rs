//! AdaDelta (Zeiler 2012, arXiv:1212.5701, Algorithm 1).
//!
//! The lecture's RMS preconditioner with a step size estimated from the running
//! average of past updates:
//!
//! ```text
//! g <- -g if maximize;  g <- g + weight_decay * theta
//! E[g^2]  <- rho E[g^2] + (1 - rho) g^2                    (square_avg)
//! d       <- sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g
//! E[dx^2] <- rho E[dx^2] + (1 - rho) d^2                   (acc_delta)
//! theta   <- theta - lr d
//! ```

use super::{effective_grad, GradScale, Real, ScaleGrad, Update};

/// AdaDelta hyperparameters of one param group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdadeltaHyper {
    /// Scale of the update (1.0 in the paper).
    pub lr: f64,
    /// Decay rate of both running averages.
    pub rho: f64,
    /// Added inside both square roots.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
}

#[derive(Clone, Copy, Debug)]
struct Scalars<T> {
    neg_lr: T,
    rho: T,
    one_minus_rho: T,
    eps: T,
    weight_decay: T,
    maximize: bool,
    grad_scale: GradScale<T>,
}

/// One tensor's AdaDelta step.
#[derive(Debug)]
pub struct AdadeltaTensor<'a, T> {
    s: Scalars<T>,
    param: &'a mut [T],
    grad: &'a [T],
    square_avg: &'a mut [T],
    acc_delta: &'a mut [T],
}

impl<'a, T: Real> AdadeltaTensor<'a, T> {
    /// Prepares a step.
    pub fn new(
        h: &AdadeltaHyper,
        param: &'a mut [T],
        grad: &'a [T],
        square_avg: &'a mut [T],
        acc_delta: &'a mut [T],
    ) -> Self {
        let s = Scalars {
            neg_lr: T::of(-h.lr),
            rho: T::of(h.rho),
            one_minus_rho: T::of(1.0 - h.rho),
            eps: T::of(h.eps),
            weight_decay: T::of(h.weight_decay),
            maximize: h.maximize,
            grad_scale: GradScale::one(),
        };
        Self { s, param, grad, square_avg, acc_delta }
    }
}

impl<T: Real> ScaleGrad<T> for AdadeltaTensor<'_, T> {
    fn scaled(mut self, scale: GradScale<T>) -> Self {
        self.s.grad_scale = scale;
        self
    }
}

chunk!(AdadeltaTensor { copy: s; cut: param, grad, square_avg, acc_delta });

impl<T: Real> Update for AdadeltaTensor<'_, T> {
    #[inline(always)]
    fn update(self) {
        let s = self.s;
        let lanes = self.param.iter_mut().zip(self.grad).zip(self.square_avg.iter_mut().zip(self.acc_delta));
        for ((p, &g), (sq, acc)) in lanes {
            let g = effective_grad(g, *p, s.maximize, s.weight_decay, s.grad_scale);
            *sq = *sq * s.rho + s.one_minus_rho * g * g;
            let std = (*sq + s.eps).sqrt();
            let delta = (*acc + s.eps).sqrt() / std * g;
            *acc = *acc * s.rho + s.one_minus_rho * delta * delta;
            *p = *p + s.neg_lr * delta;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, wave};

    /// Zeiler's Algorithm 1 with `RMS[x] = sqrt(E[x^2] + eps)`.
    #[test]
    fn matches_zeiler_algorithm_1() {
        let h = AdadeltaHyper { lr: 1.0, rho: 0.95, eps: 1e-6, weight_decay: 0.0, maximize: false };
        let n = 4;
        let mut x = wave(n, 0);
        let (mut eg, mut edx) = (vec![0.0; n], vec![0.0; n]);
        let (mut reference, mut reg, mut redx) = (x.clone(), vec![0.0; n], vec![0.0; n]);
        for k in 1..=20 {
            let g = wave(n, k);
            AdadeltaTensor::new(&h, &mut x, &g, &mut eg, &mut edx).update();
            for i in 0..n {
                reg[i] = h.rho * reg[i] + (1.0 - h.rho) * g[i] * g[i];
                let dx = -((redx[i] + h.eps).sqrt() / (reg[i] + h.eps).sqrt()) * g[i];
                redx[i] = h.rho * redx[i] + (1.0 - h.rho) * dx * dx;
                reference[i] += dx;
            }
            assert_close(&x, &reference, 1e-12);
        }
    }
}
