//! AdaGrad (Duchi, Hazan & Singer 2011, JMLR 12).
//!
//! The lecture's diagonal preconditioner `theta <- theta - eta (B + eps I)^{-1} g`,
//! with `B(i,i) = sqrt(sum_j g_j(i)^2)`, plus torch's learning-rate decay:
//!
//! ```text
//! g   <- -g if maximize;  g <- g + weight_decay * theta
//! sum <- sum + g^2
//! theta <- theta - lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps)
//! ```
//!
//! `eps_in_sqrt` puts `eps` under the root, `g / sqrt(sum + eps)`, as Keras's `Adagrad`
//! and optax's `scale_by_rss` do.

use super::state::{blocks, GranuleUpdate, State, FUSED};
use super::{effective_grad, GradScale, Real, ScaleGrad, Update};

/// AdaGrad hyperparameters of one param group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdagradHyper {
    /// Learning rate (the lecture's eta).
    pub lr: f64,
    /// Decay of the learning rate with the step number.
    pub lr_decay: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Added to `sqrt(sum)` (the lecture's epsilon).
    pub eps: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// `g / sqrt(sum + eps)` (Keras, optax) instead of `g / (sqrt(sum) + eps)` (torch).
    pub eps_in_sqrt: bool,
}

#[derive(Clone, Copy, Debug)]
struct Scalars<T> {
    neg_clr: T,
    weight_decay: T,
    eps: T,
    maximize: bool,
    eps_in_sqrt: bool,
    grad_scale: GradScale<T>,
}

/// One tensor's AdaGrad step, with `sum` stored as `S` (see [`State`]).
#[derive(Debug)]
pub struct AdagradTensor<'a, T, S = &'a mut [T]> {
    s: Scalars<T>,
    param: &'a mut [T],
    grad: &'a [T],
    sum: S,
}

impl<'a, T: Real> AdagradTensor<'a, T> {
    /// Prepares step number `step` (1 on the first step).
    pub fn new(h: &AdagradHyper, step: f64, param: &'a mut [T], grad: &'a [T], sum: &'a mut [T]) -> Self {
        Self::with_state(h, step, param, grad, sum)
    }
}

impl<'a, T: Real, S: State<T>> AdagradTensor<'a, T, S> {
    /// [`AdagradTensor::new`] with `sum` stored as `S`.
    pub fn with_state(h: &AdagradHyper, step: f64, param: &'a mut [T], grad: &'a [T], sum: S) -> Self {
        let clr = h.lr / (1.0 + (step - 1.0) * h.lr_decay);
        let s = Scalars {
            neg_clr: T::of(-clr),
            weight_decay: T::of(h.weight_decay),
            eps: T::of(h.eps),
            maximize: h.maximize,
            eps_in_sqrt: h.eps_in_sqrt,
            grad_scale: GradScale::one(),
        };
        Self { s, param, grad, sum }
    }
}

impl<T: Real, S: State<T>> ScaleGrad<T> for AdagradTensor<'_, T, S> {
    fn scaled(mut self, scale: GradScale<T>) -> Self {
        self.s.grad_scale = scale;
        self
    }
}

chunk!(AdagradTensor<S> { copy: s; cut: param, grad, sum });

/// AdaGrad's update of whole granules, for [`State::fused`].
struct Granules<'s, T> {
    s: Scalars<T>,
    param: &'s mut [T],
    grad: &'s [T],
}

impl<T: Real> GranuleUpdate<T, 1> for Granules<'_, T> {
    #[inline(always)]
    fn granules(&mut self, at: usize, [sum]: &mut [[T; FUSED]; 1]) {
        let r = at..at + FUSED;
        AdagradTensor::<T>::dispatch(self.s, &mut self.param[r.clone()], &self.grad[r], sum);
    }
}

impl<T: Real, S: State<T>> Update for AdagradTensor<'_, T, S> {
    #[inline(always)]
    fn update(self) {
        let Self { s, param, grad, sum: mut storage } = self;
        // Storage with a one-pass update (bfloat16) does the leading whole granules so.
        let done = S::fused([&mut storage], &mut Granules { s, param: &mut *param, grad });
        let mut scratch = Default::default();
        for r in blocks(param.len() - done, S::BLOCK) {
            let r = r.start + done..r.end + done;
            let sum = storage.open(r.clone(), &mut scratch);
            Self::dispatch(s, &mut param[r.clone()], &grad[r.clone()], sum);
            storage.close(r, &mut scratch);
        }
    }
}

impl<T: Real, S: State<T>> AdagradTensor<'_, T, S> {
    /// [`Self::run`] for the group's `eps_in_sqrt`.
    #[inline(always)]
    fn dispatch(s: Scalars<T>, param: &mut [T], grad: &[T], sum: &mut [T]) {
        if s.eps_in_sqrt {
            Self::run::<true>(s, param, grad, sum);
        } else {
            Self::run::<false>(s, param, grad, sum);
        }
    }

    /// The update of plain slices of equal length; `IN_SQRT` is `eps_in_sqrt`, a loop constant.
    #[inline(always)]
    fn run<const IN_SQRT: bool>(s: Scalars<T>, param: &mut [T], grad: &[T], sum: &mut [T]) {
        for ((p, &g), sum) in param.iter_mut().zip(grad).zip(sum) {
            let g = effective_grad(g, *p, s.maximize, s.weight_decay, s.grad_scale);
            *sum = *sum + g * g;
            let std = if IN_SQRT { (*sum + s.eps).sqrt() } else { sum.sqrt() + s.eps };
            *p = *p + s.neg_clr * g / std;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, wave};

    /// The lecture's `theta - eta (B_k + eps I)^{-1} g_k`, `B_k = sqrt(sum_{j<=k} g_j^2)`.
    #[test]
    fn matches_lecture_preconditioner() {
        let h = AdagradHyper {
            lr: 0.5,
            lr_decay: 0.0,
            weight_decay: 0.0,
            eps: 1e-10,
            maximize: false,
            eps_in_sqrt: false,
        };
        let n = 6;
        let mut theta = wave(n, 7);
        let mut sum = vec![0.0; n];
        let mut reference = theta.clone();
        let mut history: Vec<Vec<f64>> = Vec::new();
        for k in 1..=20 {
            let g = wave(n, k);
            history.push(g.clone());
            AdagradTensor::new(&h, k as f64, &mut theta, &g, &mut sum).update();
            for i in 0..n {
                let b = history.iter().map(|gj| gj[i] * gj[i]).sum::<f64>().sqrt();
                reference[i] -= h.lr * g[i] / (b + h.eps);
            }
            assert_close(&theta, &reference, 1e-12);
        }
    }

    /// Keras's `Adagrad`: `sum` starts at 0.1, `theta -= lr g / sqrt(sum + eps)`.
    #[test]
    fn eps_in_sqrt_is_keras_form() {
        let h = AdagradHyper {
            lr: 0.5,
            lr_decay: 0.0,
            weight_decay: 0.0,
            eps: 1e-3,
            maximize: false,
            eps_in_sqrt: true,
        };
        let n = 6;
        let mut theta = wave(n, 7);
        let mut sum = vec![0.1; n];
        let (mut reference, mut accumulator) = (theta.clone(), vec![0.1; n]);
        for k in 1..=20 {
            let g = wave(n, k);
            AdagradTensor::new(&h, k as f64, &mut theta, &g, &mut sum).update();
            for i in 0..n {
                accumulator[i] += g[i] * g[i];
                reference[i] -= h.lr * g[i] / (accumulator[i] + h.eps).sqrt();
            }
            assert_close(&theta, &reference, 1e-12);
        }
    }

    #[test]
    fn lr_decay_shrinks_the_step() {
        let h = AdagradHyper {
            lr: 1.0,
            lr_decay: 1.0,
            weight_decay: 0.0,
            eps: 0.0,
            maximize: false,
            eps_in_sqrt: false,
        };
        let (mut p, mut sum) = ([0.0f64], [0.0f64]);
        AdagradTensor::new(&h, 3.0, &mut p, &[2.0], &mut sum).update();
        assert_eq!(p[0], -1.0 / 3.0);
    }
}
