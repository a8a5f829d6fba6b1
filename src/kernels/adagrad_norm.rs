//! Scalar AdaGrad, "AdaGrad-Norm" (Ward, Wu & Bottou 2018, arXiv:1806.01811).
//!
//! The lecture's scalar preconditioner `B_k = b_k I`, where the current gradient
//! enters `b` before it is used:
//!
//! ```text
//! g <- -g if maximize;  g <- g + weight_decay * theta
//! b_k^2 <- b_{k-1}^2 + ||g_k||_2^2,      b_0 > 0
//! theta_k <- theta_{k-1} - lr / b_k * g_k
//! ```
//!
//! The norm is taken over a scope (all parameters, a param group, or one tensor),
//! so a step is two passes: [`GradSquares`] sums `g^2` per tensor, the caller
//! combines the sums into `b_k`, then [`AdagradNormTensor`] applies the update.
//! Sums are accumulated in `f64` even for `f32` data, so `||g||^2` cannot
//! overflow, and they are computed in fixed pieces added in a fixed order, so
//! `b` has the same bits for any number of threads.

use super::{effective_grad, GradScale, Real, Update};

/// The parts of the gradient transform shared by both passes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdagradNormHyper {
    /// Learning rate, multiplying `1 / b_k` (the paper's eta; 1 in the lecture).
    pub lr: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
}

/// First pass: `sum(g^2)` of one tensor's effective gradient, in `f64`.
#[derive(Debug)]
pub struct GradSquares<'a, T> {
    weight_decay: T,
    maximize: bool,
    grad_scale: GradScale<T>,
    param: &'a [T],
    grad: &'a [T],
}

impl<'a, T: Real> GradSquares<'a, T> {
    /// Prepares the first pass over one tensor.
    pub fn new(h: &AdagradNormHyper, param: &'a [T], grad: &'a [T]) -> Self {
        let (weight_decay, grad_scale) = (T::of(h.weight_decay), GradScale::one());
        Self { weight_decay, maximize: h.maximize, grad_scale, param, grad }
    }

    /// The same pass on the gradient unscaled and clipped by `scale` (see [`GradScale`]).
    pub fn scaled(mut self, scale: GradScale<T>) -> Self {
        self.grad_scale = scale;
        self
    }

    /// `sum_i g_i^2` in `f64`: element `i` adds into accumulator `i % LANES`, and the
    /// accumulators are added pairwise at the end. A fixed order (so the same bits for
    /// any thread count), without one long chain of dependent additions.
    pub fn sum(self) -> f64 {
        const LANES: usize = 8;
        let square = |p: T, g: T| {
            let g = effective_grad(g, p, self.maximize, self.weight_decay, self.grad_scale).widen();
            g * g
        };
        let mut acc = [0.0f64; LANES];
        let (params, grads) = (self.param.chunks_exact(LANES), self.grad.chunks_exact(LANES));
        let (param_tail, grad_tail) = (params.remainder(), grads.remainder());
        for (p, g) in params.zip(grads) {
            for lane in 0..LANES {
                acc[lane] += square(p[lane], g[lane]);
            }
        }
        for (lane, (&p, &g)) in param_tail.iter().zip(grad_tail).enumerate() {
            acc[lane] += square(p, g);
        }
        let [a, b, c, d, e, f, g, h] = acc;
        ((a + b) + (c + d)) + ((e + f) + (g + h))
    }
}

chunk!(GradSquares { copy: weight_decay, maximize, grad_scale; cut: param, grad });

/// Second pass: `theta <- theta - lr / b * g` for one tensor.
#[derive(Debug)]
pub struct AdagradNormTensor<'a, T> {
    neg_step: T,
    weight_decay: T,
    maximize: bool,
    grad_scale: GradScale<T>,
    param: &'a mut [T],
    grad: &'a [T],
}

impl<'a, T: Real> AdagradNormTensor<'a, T> {
    /// Prepares the update with the scope's new accumulator `b_sq = b_k^2`.
    pub fn new(h: &AdagradNormHyper, b_sq: f64, param: &'a mut [T], grad: &'a [T]) -> Self {
        Self {
            neg_step: T::of(-(h.lr / b_sq.sqrt())),
            weight_decay: T::of(h.weight_decay),
            maximize: h.maximize,
            grad_scale: GradScale::one(),
            param,
            grad,
        }
    }

    /// The same update on the gradient unscaled and clipped by `scale` (see [`GradScale`]).
    pub fn scaled(mut self, scale: GradScale<T>) -> Self {
        self.grad_scale = scale;
        self
    }
}

chunk!(AdagradNormTensor { copy: neg_step, weight_decay, maximize, grad_scale; cut: param, grad });

impl<T: Real> Update for AdagradNormTensor<'_, T> {
    #[inline(always)]
    fn update(self) {
        for (p, &g) in self.param.iter_mut().zip(self.grad) {
            let g = effective_grad(g, *p, self.maximize, self.weight_decay, self.grad_scale);
            *p = *p + self.neg_step * g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, wave};

    /// Ward et al.'s update on one tensor: b^2 += ||g||^2, then theta -= g / b.
    #[test]
    fn matches_ward_et_al() {
        let h = AdagradNormHyper { lr: 1.0, weight_decay: 0.0, maximize: false };
        let n = 8;
        let mut theta = wave(n, 5);
        let mut reference = theta.clone();
        let (mut b_sq, mut reference_b_sq) = (0.01f64 * 0.01, 0.01f64 * 0.01);
        for k in 1..=20 {
            let g = wave(n, k);
            b_sq += GradSquares::new(&h, &theta, &g).sum();
            AdagradNormTensor::new(&h, b_sq, &mut theta, &g).update();
            reference_b_sq += g.iter().map(|x| x * x).sum::<f64>();
            for i in 0..n {
                reference[i] -= g[i] / reference_b_sq.sqrt();
            }
            assert_close(&theta, &reference, 1e-12);
        }
    }

    #[test]
    fn f32_squares_do_not_overflow() {
        let h = AdagradNormHyper { lr: 1.0, weight_decay: 0.0, maximize: true };
        let g = [3e38f32, 3e38];
        let s = GradSquares::new(&h, &[0.0, 0.0], &g).sum();
        assert!(s.is_finite() && s > 1e77);
    }
}
