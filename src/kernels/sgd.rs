//! SGD with Polyak (heavy-ball) momentum, Nesterov momentum and dampening.
//!
//! torch's form, which the lecture's forms reduce to (Polyak 1964; Nesterov 1983;
//! Sutskever et al. 2013):
//!
//! ```text
//! g  <- -g if maximize;  g <- g + weight_decay * theta
//! b  <- g                                     (first step)
//! b  <- momentum * b + (1 - dampening) * g    (later steps)
//! g  <- g + momentum * b   if nesterov,  else  g <- b
//! theta <- theta - lr * g
//! ```
//!
//! With `dampening = 0` this is the lecture's heavy ball
//! `theta_{k+1} = theta_k + beta (theta_k - theta_{k-1}) - alpha grad L(theta_k)`,
//! and with `nesterov` the parameters follow the lecture's look-ahead sequence
//! `theta_hat_k`. With `momentum = 0` it is plain (minibatch) SGD.
//!
//! `lr_in_momentum` is the velocity form of Keras's SGD and of the heavy ball as
//! Sutskever et al. (2013) write it, where the buffer holds steps, not gradients:
//!
//! ```text
//! b  <- lr * g                                       (first step)
//! b  <- momentum * b + (1 - dampening) * lr * g      (later steps)
//! theta <- theta - (lr * g + momentum * b)  if nesterov,  else  theta <- theta - b
//! ```
//!
//! With a constant `lr` both forms take the same steps; they differ once `lr` changes.
//! Keras stores `-b` (its `m = momentum * m - lr * g`).

use super::state::{blocks, GranuleUpdate, State, FUSED};
use super::{effective_grad, GradScale, Real, ScaleGrad, Update};

/// SGD hyperparameters of one param group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdHyper {
    /// Learning rate `lr` (the lecture's alpha or eta).
    pub lr: f64,
    /// Momentum factor (the lecture's beta); 0 disables the buffer.
    pub momentum: f64,
    /// Dampening of the gradient entering the buffer.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Use Nesterov momentum.
    pub nesterov: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// The buffer accumulates `lr * g` (Keras, Sutskever et al.) instead of `g` (torch).
    pub lr_in_momentum: bool,
}

/// Per-step scalars in the element type.
#[derive(Clone, Copy, Debug)]
struct Scalars<T> {
    neg_lr: T,
    lr: T,
    momentum: T,
    one_minus_dampening: T,
    weight_decay: T,
    nesterov: bool,
    maximize: bool,
    lr_in_momentum: bool,
    grad_scale: GradScale<T>,
}

/// One tensor's SGD step, with its momentum buffer stored as `S` (see [`State`]).
#[derive(Debug)]
pub struct SgdTensor<'a, T, S = &'a mut [T]> {
    s: Scalars<T>,
    /// `true` when the momentum buffer was just created: it is set to the gradient.
    first: bool,
    param: &'a mut [T],
    grad: &'a [T],
    momentum_buffer: Option<S>,
}

impl<'a, T: Real> SgdTensor<'a, T> {
    /// Prepares a step. `momentum_buffer` must be `Some` exactly when `momentum != 0`;
    /// `first` says whether it holds no history yet.
    pub fn new(
        h: &SgdHyper,
        first: bool,
        param: &'a mut [T],
        grad: &'a [T],
        momentum_buffer: Option<&'a mut [T]>,
    ) -> Self {
        Self::with_state(h, first, param, grad, momentum_buffer)
    }
}

impl<'a, T: Real, S: State<T>> SgdTensor<'a, T, S> {
    /// [`SgdTensor::new`] with the momentum buffer stored as `S`.
    pub fn with_state(
        h: &SgdHyper,
        first: bool,
        param: &'a mut [T],
        grad: &'a [T],
        momentum_buffer: Option<S>,
    ) -> Self {
        let s = Scalars {
            neg_lr: T::of(-h.lr),
            lr: T::of(h.lr),
            momentum: T::of(h.momentum),
            one_minus_dampening: T::of(1.0 - h.dampening),
            weight_decay: T::of(h.weight_decay),
            nesterov: h.nesterov,
            maximize: h.maximize,
            lr_in_momentum: h.lr_in_momentum,
            grad_scale: GradScale::one(),
        };
        Self { s, first, param, grad, momentum_buffer }
    }
}

impl<T: Real, S: State<T>> ScaleGrad<T> for SgdTensor<'_, T, S> {
    fn scaled(mut self, scale: GradScale<T>) -> Self {
        self.s.grad_scale = scale;
        self
    }
}

chunk!(SgdTensor<S> { copy: s, first; cut: param, grad, momentum_buffer });

impl<T: Real, S: State<T>> SgdTensor<'_, T, S> {
    /// The update of plain slices of equal length; `LR_IN` is `lr_in_momentum`, a loop
    /// constant, so torch's loop (`false`) is the operations it always was.
    #[inline(always)]
    fn run<const LR_IN: bool>(
        s: Scalars<T>,
        first: bool,
        param: &mut [T],
        grad: &[T],
        momentum_buffer: Option<&mut [T]>,
    ) {
        match momentum_buffer {
            None => {
                for (p, &g) in param.iter_mut().zip(grad) {
                    let g = effective_grad(g, *p, s.maximize, s.weight_decay, s.grad_scale);
                    *p = *p + s.neg_lr * g;
                }
            }
            Some(buf) if LR_IN => {
                // Keras: m = m * momentum - g * lr; variable += m (here b = -m, bit for bit)
                for ((p, &g), b) in param.iter_mut().zip(grad).zip(buf) {
                    let g = effective_grad(g, *p, s.maximize, s.weight_decay, s.grad_scale);
                    let step = g * s.lr;
                    *b = if first { step } else { *b * s.momentum + s.one_minus_dampening * step };
                    let d = if s.nesterov { *b * s.momentum + step } else { *b };
                    *p = *p - d;
                }
            }
            Some(buf) => {
                for ((p, &g), b) in param.iter_mut().zip(grad).zip(buf) {
                    let g = effective_grad(g, *p, s.maximize, s.weight_decay, s.grad_scale);
                    *b = if first { g } else { *b * s.momentum + s.one_minus_dampening * g };
                    let d = if s.nesterov { g + s.momentum * *b } else { *b };
                    *p = *p + s.neg_lr * d;
                }
            }
        }
    }

    #[inline(always)]
    fn dispatch(s: Scalars<T>, first: bool, param: &mut [T], grad: &[T], momentum_buffer: Option<&mut [T]>) {
        if s.lr_in_momentum {
            Self::run::<true>(s, first, param, grad, momentum_buffer)
        } else {
            Self::run::<false>(s, first, param, grad, momentum_buffer)
        }
    }
}

/// SGD's update of whole granules, for [`State::fused`].
struct Granules<'s, T> {
    s: Scalars<T>,
    first: bool,
    param: &'s mut [T],
    grad: &'s [T],
}

impl<T: Real> GranuleUpdate<T, 1> for Granules<'_, T> {
    #[inline(always)]
    fn granules(&mut self, at: usize, [buf]: &mut [[T; FUSED]; 1]) {
        let r = at..at + FUSED;
        SgdTensor::<T>::dispatch(self.s, self.first, &mut self.param[r.clone()], &self.grad[r], Some(buf));
    }
}

impl<T: Real, S: State<T>> Update for SgdTensor<'_, T, S> {
    #[inline(always)]
    fn update(self) {
        let Self { s, first, param, grad, mut momentum_buffer } = self;
        let Some(buf) = momentum_buffer.as_mut() else {
            return Self::dispatch(s, first, param, grad, None);
        };
        // Storage with a one-pass update (bfloat16) does the leading whole granules so.
        let done = S::fused([&mut *buf], &mut Granules { s, first, param: &mut *param, grad });
        let mut scratch = Default::default();
        for r in blocks(param.len() - done, S::BLOCK) {
            let r = r.start + done..r.end + done;
            let b = buf.open(r.clone(), &mut scratch);
            Self::dispatch(s, first, &mut param[r.clone()], &grad[r.clone()], Some(b));
            buf.close(r, &mut scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, wave};
    use crate::kernels::Chunk;

    fn hyper(momentum: f64, nesterov: bool) -> SgdHyper {
        SgdHyper {
            lr: 0.1,
            momentum,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov,
            maximize: false,
            lr_in_momentum: false,
        }
    }

    /// Heavy ball: theta_{k+1} = theta_k + beta (theta_k - theta_{k-1}) - alpha g_k.
    #[test]
    fn momentum_is_polyak_heavy_ball() {
        let (alpha, beta) = (0.1, 0.9);
        let mut theta = wave(7, 99);
        let mut buf = vec![0.0; 7];
        let (mut cur, mut prev) = (theta.clone(), theta.clone());
        for k in 0..20 {
            let g = wave(7, k);
            SgdTensor::new(&hyper(beta, false), k == 0, &mut theta, &g, Some(&mut buf)).update();
            let next: Vec<f64> = (0..7).map(|i| cur[i] + beta * (cur[i] - prev[i]) - alpha * g[i]).collect();
            prev = std::mem::replace(&mut cur, next);
            assert_close(&theta, &cur, 1e-12);
        }
    }

    /// Sutskever et al.'s velocity `v <- beta v - alpha g`, `theta <- theta + v`, with an `lr`
    /// that changes every step (where it differs from torch's form), and Nesterov's
    /// `theta <- theta + beta v - alpha g` (Keras's SGD).
    #[test]
    fn lr_in_momentum_is_the_velocity_form() {
        let beta = 0.9;
        for nesterov in [false, true] {
            let mut theta = wave(7, 99);
            let mut buf = vec![0.0; 7];
            let (mut reference, mut velocity) = (theta.clone(), vec![0.0; 7]);
            for k in 0..20 {
                let alpha = 0.1 / (1.0 + k as f64);
                let h = SgdHyper { lr: alpha, lr_in_momentum: true, ..hyper(beta, nesterov) };
                let g = wave(7, k);
                SgdTensor::new(&h, k == 0, &mut theta, &g, Some(&mut buf)).update();
                for i in 0..7 {
                    velocity[i] = beta * velocity[i] - alpha * g[i];
                    reference[i] += if nesterov { beta * velocity[i] - alpha * g[i] } else { velocity[i] };
                }
                assert_close(&theta, &reference, 1e-12);
                assert_close(&buf, &velocity.iter().map(|v| -v).collect::<Vec<_>>(), 1e-12);
            }
        }
    }

    #[test]
    fn plain_sgd_and_chunking_agree() {
        let h = SgdHyper { weight_decay: 0.01, maximize: true, ..hyper(0.0, false) };
        let mut a = wave(10, 1);
        let mut b = a.clone();
        let g = wave(10, 2);
        SgdTensor::new(&h, true, &mut a, &g, None).update();
        let (x, y) = SgdTensor::new(&h, true, &mut b, &g, None).split_at(3);
        x.update();
        y.update();
        assert_eq!(a, b);
        let want: Vec<f64> =
            (0..10).map(|i| wave(10, 1)[i] - 0.1 * (-g[i] + 0.01 * wave(10, 1)[i])).collect();
        assert_close(&a, &want, 1e-15);
    }
}
