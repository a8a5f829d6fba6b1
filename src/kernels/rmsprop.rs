//! RMSprop (Hinton, Coursera lecture 6e, 2012), with momentum and centering
//! (Graves 2013).
//!
//! The lecture's `B_k = gamma B_{k-1} + (1 - gamma) g_k^2` (torch's `alpha` is the
//! lecture's gamma) and `theta <- theta - eta (B + eps I)^{-1/2} g`. torch puts eps
//! outside the square root, `g / (sqrt(B) + eps)`; `eps_in_sqrt` selects the
//! lecture's form `g / sqrt(B + eps)`.
//!
//! ```text
//! g <- -g if maximize;  g <- g + weight_decay * theta
//! B <- alpha B + (1 - alpha) g^2                    (square_avg)
//! a <- alpha a + (1 - alpha) g                      (grad_avg, centered only)
//! d <- sqrt(B - a^2) + eps   or   sqrt(B - a^2 + eps) with eps_in_sqrt   (a = 0 unless centered)
//! buf <- momentum buf + g / d;  theta <- theta - lr buf     (momentum > 0)
//! theta <- theta - lr g / d                                  (otherwise)
//! ```
//!
//! `lr_in_momentum` is Keras's and optax's momentum (optax `rmsprop` traces the
//! updates after `scale_by_learning_rate`): `buf <- momentum buf + lr g / d`,
//! `theta <- theta - buf`. The same steps while `lr` is constant.

use super::state::{blocks, GranuleUpdate, State, FUSED};
use super::{effective_grad, lerp, GradScale, Real, ScaleGrad, Update};

/// RMSprop hyperparameters of one param group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmspropHyper {
    /// Learning rate (the lecture's eta).
    pub lr: f64,
    /// Smoothing constant (the lecture's gamma).
    pub alpha: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor; 0 disables the buffer.
    pub momentum: f64,
    /// Normalize by the estimated variance instead of the second moment.
    pub centered: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// The lecture's `(B + eps I)^{-1/2}` instead of torch's `(sqrt(B) + eps)^{-1}`.
    pub eps_in_sqrt: bool,
    /// The momentum buffer accumulates `lr g / d` (Keras, optax) instead of `g / d` (torch).
    pub lr_in_momentum: bool,
}

#[derive(Clone, Copy, Debug)]
struct Scalars<T> {
    neg_lr: T,
    lr: T,
    alpha: T,
    one_minus_alpha: T,
    eps: T,
    weight_decay: T,
    momentum: T,
    maximize: bool,
    eps_in_sqrt: bool,
    lr_in_momentum: bool,
    grad_scale: GradScale<T>,
}

/// One tensor's RMSprop step, with its state stored as `S` (see [`State`]).
#[derive(Debug)]
pub struct RmspropTensor<'a, T, S = &'a mut [T]> {
    s: Scalars<T>,
    param: &'a mut [T],
    grad: &'a [T],
    square_avg: S,
    grad_avg: Option<S>,
    momentum_buffer: Option<S>,
}

impl<'a, T: Real> RmspropTensor<'a, T> {
    /// Prepares a step; `grad_avg` is `Some` exactly when centered and
    /// `momentum_buffer` exactly when `momentum > 0`.
    pub fn new(
        h: &RmspropHyper,
        param: &'a mut [T],
        grad: &'a [T],
        square_avg: &'a mut [T],
        grad_avg: Option<&'a mut [T]>,
        momentum_buffer: Option<&'a mut [T]>,
    ) -> Self {
        Self::with_state(h, param, grad, square_avg, grad_avg, momentum_buffer)
    }
}

impl<'a, T: Real, S: State<T>> RmspropTensor<'a, T, S> {
    /// [`RmspropTensor::new`] with the state stored as `S`.
    pub fn with_state(
        h: &RmspropHyper,
        param: &'a mut [T],
        grad: &'a [T],
        square_avg: S,
        grad_avg: Option<S>,
        momentum_buffer: Option<S>,
    ) -> Self {
        let s = Scalars {
            neg_lr: T::of(-h.lr),
            lr: T::of(h.lr),
            alpha: T::of(h.alpha),
            one_minus_alpha: T::of(1.0 - h.alpha),
            eps: T::of(h.eps),
            weight_decay: T::of(h.weight_decay),
            momentum: T::of(h.momentum),
            maximize: h.maximize,
            grad_scale: GradScale::one(),
            eps_in_sqrt: h.eps_in_sqrt,
            lr_in_momentum: h.lr_in_momentum,
        };
        Self { s, param, grad, square_avg, grad_avg, momentum_buffer }
    }
}

impl<T: Real, S: State<T>> ScaleGrad<T> for RmspropTensor<'_, T, S> {
    fn scaled(mut self, scale: GradScale<T>) -> Self {
        self.s.grad_scale = scale;
        self
    }
}

chunk!(RmspropTensor<S> { copy: s; cut: param, grad, square_avg, grad_avg, momentum_buffer });

/// `B - a^2`, the centered second moment. `a^2 <= B` holds exactly, so when a huge
/// gradient has overflowed `B` to infinity the variance is infinite too: `a * a` may
/// also overflow, and `inf - inf` must not turn the step into NaN. torch's fused
/// `addcmul` (an FMA, whose product cannot overflow) gives the same.
#[inline(always)]
fn centered_variance<T: Real>(square_avg: T, grad_avg: T) -> T {
    if square_avg == T::infinity() && grad_avg.is_finite() {
        square_avg
    } else {
        square_avg + -grad_avg * grad_avg
    }
}

impl<T: Real> Scalars<T> {
    /// One element's step; `grad_avg` and `momentum_buffer` are `Some` in the loops
    /// of the settings that use them, so every loop is branch-free after inlining.
    /// `IN_SQRT` is `eps_in_sqrt` and `LR_IN` is `lr_in_momentum`, loop constants, so that no
    /// select stops vectorization.
    #[inline(always)]
    fn apply<const IN_SQRT: bool, const LR_IN: bool>(
        &self,
        p: &mut T,
        g: T,
        sq: &mut T,
        grad_avg: Option<&mut T>,
        momentum_buffer: Option<&mut T>,
    ) {
        let g = effective_grad(g, *p, self.maximize, self.weight_decay, self.grad_scale);
        *sq = *sq * self.alpha + self.one_minus_alpha * g * g;
        // torch: square_avg.addcmul(grad_avg, grad_avg, value=-1)
        let variance = match grad_avg {
            Some(a) => {
                *a = lerp(*a, g, self.one_minus_alpha);
                centered_variance(*sq, *a)
            }
            None => *sq,
        };
        let denom = if IN_SQRT { (variance + self.eps).sqrt() } else { variance.sqrt() + self.eps };
        match momentum_buffer {
            Some(buf) if LR_IN => {
                // Keras: momentum = momentum * mu + lr * g / sqrt(denominator); variable -= momentum
                *buf = *buf * self.momentum + self.lr * g / denom;
                *p = *p - *buf;
            }
            Some(buf) => {
                *buf = *buf * self.momentum + g / denom;
                *p = *p + self.neg_lr * *buf;
            }
            None => *p = *p + self.neg_lr * g / denom,
        }
    }
}

/// One block's slices: parameter, gradient, `square_avg`, `grad_avg`, `momentum_buffer`.
type Slices<'b, T> = (&'b mut [T], &'b [T], &'b mut [T], Option<&'b mut [T]>, Option<&'b mut [T]>);

impl<T: Real, S: State<T>> RmspropTensor<'_, T, S> {
    #[inline(always)]
    fn run<const IN_SQRT: bool, const LR_IN: bool>(
        s: Scalars<T>,
        (param, grad, square_avg, grad_avg, momentum_buffer): Slices<'_, T>,
    ) {
        let lanes = param.iter_mut().zip(grad).zip(square_avg);
        match (grad_avg, momentum_buffer) {
            (None, None) => lanes.for_each(|((p, &g), sq)| s.apply::<IN_SQRT, LR_IN>(p, g, sq, None, None)),
            (Some(avg), None) => lanes
                .zip(avg)
                .for_each(|(((p, &g), sq), a)| s.apply::<IN_SQRT, LR_IN>(p, g, sq, Some(a), None)),
            (None, Some(buf)) => lanes
                .zip(buf)
                .for_each(|(((p, &g), sq), b)| s.apply::<IN_SQRT, LR_IN>(p, g, sq, None, Some(b))),
            (Some(avg), Some(buf)) => lanes
                .zip(avg.iter_mut().zip(buf))
                .for_each(|(((p, &g), sq), (a, b))| s.apply::<IN_SQRT, LR_IN>(p, g, sq, Some(a), Some(b))),
        }
    }
}

/// RMSprop's update of whole granules, for [`State::fused`]: the buffers are
/// `square_avg`, then `grad_avg` (centered) and `momentum_buffer` where present.
struct Granules<'s, T> {
    s: Scalars<T>,
    param: &'s mut [T],
    grad: &'s [T],
    centered: bool,
}

impl<T: Real> GranuleUpdate<T, 1> for Granules<'_, T> {
    #[inline(always)]
    fn granules(&mut self, at: usize, [sq]: &mut [[T; FUSED]; 1]) {
        let r = at..at + FUSED;
        RmspropTensor::<T>::dispatch(self.s, (&mut self.param[r.clone()], &self.grad[r], sq, None, None));
    }
}

impl<T: Real> GranuleUpdate<T, 2> for Granules<'_, T> {
    #[inline(always)]
    fn granules(&mut self, at: usize, [sq, other]: &mut [[T; FUSED]; 2]) {
        let r = at..at + FUSED;
        let (avg, buf) =
            if self.centered { (Some(&mut other[..]), None) } else { (None, Some(&mut other[..])) };
        RmspropTensor::<T>::dispatch(self.s, (&mut self.param[r.clone()], &self.grad[r], sq, avg, buf));
    }
}

impl<T: Real> GranuleUpdate<T, 3> for Granules<'_, T> {
    #[inline(always)]
    fn granules(&mut self, at: usize, [sq, avg, buf]: &mut [[T; FUSED]; 3]) {
        let r = at..at + FUSED;
        let slices =
            (&mut self.param[r.clone()], &self.grad[r], &mut sq[..], Some(&mut avg[..]), Some(&mut buf[..]));
        RmspropTensor::<T>::dispatch(self.s, slices);
    }
}

impl<T: Real, S: State<T>> RmspropTensor<'_, T, S> {
    /// [`Self::run`] for the group's `eps_in_sqrt` and `lr_in_momentum`.
    #[inline(always)]
    fn dispatch(s: Scalars<T>, slices: Slices<'_, T>) {
        match (s.eps_in_sqrt, s.lr_in_momentum && slices.4.is_some()) {
            (false, false) => Self::run::<false, false>(s, slices),
            (true, false) => Self::run::<true, false>(s, slices),
            (false, true) => Self::run::<false, true>(s, slices),
            (true, true) => Self::run::<true, true>(s, slices),
        }
    }
}

impl<T: Real, S: State<T>> Update for RmspropTensor<'_, T, S> {
    #[inline(always)]
    fn update(self) {
        let Self { s, param, grad, mut square_avg, mut grad_avg, mut momentum_buffer } = self;
        // Storage with a one-pass update (bfloat16) does the leading whole granules so.
        let mut granules = Granules { s, param: &mut *param, grad, centered: grad_avg.is_some() };
        let done = match (grad_avg.as_mut(), momentum_buffer.as_mut()) {
            (None, None) => S::fused([&mut square_avg], &mut granules),
            (Some(avg), None) => S::fused([&mut square_avg, avg], &mut granules),
            (None, Some(buf)) => S::fused([&mut square_avg, buf], &mut granules),
            (Some(avg), Some(buf)) => S::fused([&mut square_avg, avg, buf], &mut granules),
        };
        let (mut sq_scratch, mut avg_scratch, mut buf_scratch) = Default::default();
        for r in blocks(param.len() - done, S::BLOCK) {
            let r = r.start + done..r.end + done;
            let sq = square_avg.open(r.clone(), &mut sq_scratch);
            let avg = grad_avg.as_mut().map(|x| x.open(r.clone(), &mut avg_scratch));
            let buf = momentum_buffer.as_mut().map(|x| x.open(r.clone(), &mut buf_scratch));
            Self::dispatch(s, (&mut param[r.clone()], &grad[r.clone()], sq, avg, buf));
            square_avg.close(r.clone(), &mut sq_scratch);
            if let Some(x) = grad_avg.as_mut() {
                x.close(r.clone(), &mut avg_scratch);
            }
            if let Some(x) = momentum_buffer.as_mut() {
                x.close(r, &mut buf_scratch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, wave};
    use crate::kernels::Chunk;

    fn hyper(eps_in_sqrt: bool) -> RmspropHyper {
        RmspropHyper {
            lr: 1e-2,
            alpha: 0.9,
            eps: 1e-3,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
            eps_in_sqrt,
            lr_in_momentum: false,
        }
    }

    /// The lecture's `theta - eta (B_k + eps I)^{-1/2} g_k`.
    #[test]
    fn eps_in_sqrt_is_the_lecture_form() {
        let h = hyper(true);
        let n = 5;
        let mut theta = wave(n, 3);
        let mut sq = vec![0.0; n];
        let (mut reference, mut b) = (theta.clone(), vec![0.0; n]);
        for k in 1..=20 {
            let g = wave(n, k);
            RmspropTensor::new(&h, &mut theta, &g, &mut sq, None, None).update();
            for i in 0..n {
                b[i] = h.alpha * b[i] + (1.0 - h.alpha) * g[i] * g[i];
                reference[i] -= h.lr * g[i] / (b[i] + h.eps).sqrt();
            }
            assert_close(&theta, &reference, 1e-12);
        }
    }

    /// Keras's RMSprop with momentum (eps inside the root, `lr` inside the buffer), with an
    /// `lr` that changes every step.
    #[test]
    fn lr_in_momentum_is_keras_form() {
        let n = 5;
        let mut theta = wave(n, 4);
        let (mut sq, mut buf) = (vec![0.0; n], vec![0.0; n]);
        let (mut reference, mut velocity, mut momentum) = (theta.clone(), vec![0.0; n], vec![0.0; n]);
        for k in 1..=20 {
            let lr = 1e-2 / k as f64;
            let h = RmspropHyper { lr, momentum: 0.8, lr_in_momentum: true, ..hyper(true) };
            let g = wave(n, k);
            RmspropTensor::new(&h, &mut theta, &g, &mut sq, None, Some(&mut buf)).update();
            for i in 0..n {
                velocity[i] = h.alpha * velocity[i] + (1.0 - h.alpha) * g[i] * g[i];
                momentum[i] = 0.8 * momentum[i] + lr * g[i] / (velocity[i] + h.eps).sqrt();
                reference[i] -= momentum[i];
            }
            assert_close(&theta, &reference, 1e-12);
        }
    }

    #[test]
    fn centered_variance_of_an_overflowed_moment_is_infinite() {
        // g = 1e30 in f32: B = 0.01 g^2 overflows, a^2 = (0.01 g)^2 overflows as well
        let h = RmspropHyper { centered: true, ..hyper(false) };
        let (mut p, mut sq, mut avg) = ([0.5f32], [0.0f32], [0.0f32]);
        RmspropTensor::new(&h, &mut p, &[1e30], &mut sq, Some(&mut avg), None).update();
        assert_eq!(sq[0], f32::INFINITY);
        assert_eq!(p[0], 0.5); // g / inf = 0: no step, as torch, instead of NaN
    }

    #[test]
    fn centered_with_momentum_splits_like_whole() {
        let h = RmspropHyper { centered: true, momentum: 0.5, ..hyper(false) };
        let n = 11;
        let g = wave(n, 1);
        let mut a = (wave(n, 2), vec![0.1; n], vec![0.0; n], vec![0.0; n]);
        let mut b = a.clone();
        RmspropTensor::new(&h, &mut a.0, &g, &mut a.1, Some(&mut a.2), Some(&mut a.3)).update();
        let (x, y) =
            RmspropTensor::new(&h, &mut b.0, &g, &mut b.1, Some(&mut b.2), Some(&mut b.3)).split_at(4);
        y.update();
        x.update();
        assert_eq!(a, b);
    }
}
