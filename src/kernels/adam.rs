//! Adam and AdamW, with AMSGrad.
//!
//! Kingma & Ba 2015, Algorithm 1 (arXiv:1412.6980), in torch's order of operations;
//! AMSGrad from Reddi et al. 2018; decoupled weight decay (AdamW) from
//! Loshchilov & Hutter 2019:
//!
//! ```text
//! g <- -g if maximize
//! theta <- theta (1 - lr wd)     if decoupled,   else   g <- g + wd theta
//! m <- beta1 m + (1 - beta1) g                    (torch: m.lerp_(g, 1 - beta1))
//! v <- beta2 v + (1 - beta2) g^2
//! v_max <- max(v_max, v)                          (amsgrad; used in place of v below)
//! theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//! ```
//!
//! The last line is Algorithm 1's `theta - alpha m_hat / (sqrt(v_hat) + eps)` with the
//! bias corrections folded into scalars, as torch computes it.

use super::state::{blocks, GranuleUpdate, State, FUSED};
use super::{effective_grad, lerp, maximum, GradScale, Real, ScaleGrad, Update};

/// Adam hyperparameters of one param group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    /// Learning rate (Algorithm 1's alpha).
    pub lr: f64,
    /// Decay rate of the first moment.
    pub beta1: f64,
    /// Decay rate of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay: L2 on the gradient, or decoupled (AdamW).
    pub weight_decay: f64,
    /// Keep the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// Decay the weights directly (AdamW) instead of adding `wd * theta` to the gradient.
    pub decoupled_weight_decay: bool,
}

#[derive(Clone, Copy, Debug)]
struct Scalars<T> {
    decay_factor: T,
    l2: T,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    bias_correction2_sqrt: T,
    eps: T,
    neg_step_size: T,
    decoupled: bool,
    maximize: bool,
    grad_scale: GradScale<T>,
}

/// One tensor's Adam step, with its state stored as `S` (see [`State`]).
#[derive(Debug)]
pub struct AdamTensor<'a, T, S = &'a mut [T]> {
    s: Scalars<T>,
    param: &'a mut [T],
    grad: &'a [T],
    exp_avg: S,
    exp_avg_sq: S,
    max_exp_avg_sq: Option<S>,
}

impl<'a, T: Real> AdamTensor<'a, T> {
    /// Prepares step number `step` (already incremented, so 1 on the first step).
    pub fn new(
        h: &AdamHyper,
        step: f64,
        param: &'a mut [T],
        grad: &'a [T],
        exp_avg: &'a mut [T],
        exp_avg_sq: &'a mut [T],
        max_exp_avg_sq: Option<&'a mut [T]>,
    ) -> Self {
        Self::with_state(h, step, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
    }
}

impl<'a, T: Real, S: State<T>> AdamTensor<'a, T, S> {
    /// [`AdamTensor::new`] with state stored as `S`.
    pub fn with_state(
        h: &AdamHyper,
        step: f64,
        param: &'a mut [T],
        grad: &'a [T],
        exp_avg: S,
        exp_avg_sq: S,
        max_exp_avg_sq: Option<S>,
    ) -> Self {
        let bias_correction1 = 1.0 - h.beta1.powf(step);
        let bias_correction2 = 1.0 - h.beta2.powf(step);
        let decoupled = h.decoupled_weight_decay && h.weight_decay != 0.0;
        let s = Scalars {
            decay_factor: T::of(1.0 - h.lr * h.weight_decay),
            l2: T::of(if decoupled { 0.0 } else { h.weight_decay }),
            one_minus_beta1: T::of(1.0 - h.beta1),
            beta2: T::of(h.beta2),
            one_minus_beta2: T::of(1.0 - h.beta2),
            bias_correction2_sqrt: T::of(bias_correction2.powf(0.5)),
            eps: T::of(h.eps),
            neg_step_size: T::of(-(h.lr / bias_correction1)),
            decoupled,
            maximize: h.maximize,
            grad_scale: GradScale::one(),
        };
        Self { s, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq }
    }
}

impl<T: Real, S: State<T>> ScaleGrad<T> for AdamTensor<'_, T, S> {
    fn scaled(mut self, scale: GradScale<T>) -> Self {
        self.s.grad_scale = scale;
        self
    }
}

chunk!(AdamTensor<S> { copy: s; cut: param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq });

impl<T: Real, S: State<T>> AdamTensor<'_, T, S> {
    /// Everything up to the denominator's second moment; returns the parameter after
    /// decoupled weight decay. The parameter is passed and returned by value, so that
    /// it is loaded once and stored once per element (a conditional store to it would
    /// be vectorized as a masked store, followed by a reload that cannot be forwarded).
    #[inline(always)]
    fn moments(s: &Scalars<T>, p: T, g: T, m: &mut T, v: &mut T) -> T {
        let p = if s.decoupled { p * s.decay_factor } else { p };
        let g = effective_grad(g, p, s.maximize, s.l2, s.grad_scale);
        *m = lerp(*m, g, s.one_minus_beta1);
        *v = *v * s.beta2 + s.one_minus_beta2 * g * g;
        p
    }

    /// The parameter after the step.
    #[inline(always)]
    fn apply(s: &Scalars<T>, p: T, m: T, second_moment: T) -> T {
        let denom = second_moment.sqrt() / s.bias_correction2_sqrt + s.eps;
        p + s.neg_step_size * m / denom
    }

    /// The update of plain slices of equal length.
    #[inline(always)]
    fn run(
        s: &Scalars<T>,
        param: &mut [T],
        grad: &[T],
        exp_avg: &mut [T],
        exp_avg_sq: &mut [T],
        max_exp_avg_sq: Option<&mut [T]>,
    ) {
        let lanes = param.iter_mut().zip(grad).zip(exp_avg.iter_mut().zip(exp_avg_sq));
        match max_exp_avg_sq {
            None => {
                for ((p, &g), (m, v)) in lanes {
                    let theta = Self::moments(s, *p, g, m, v);
                    *p = Self::apply(s, theta, *m, *v);
                }
            }
            Some(max_sq) => {
                for (((p, &g), (m, v)), vmax) in lanes.zip(max_sq) {
                    let theta = Self::moments(s, *p, g, m, v);
                    *vmax = maximum(*vmax, *v);
                    *p = Self::apply(s, theta, *m, *vmax);
                }
            }
        }
    }
}

/// Adam's update of whole granules, for [`State::fused`].
struct Granules<'s, T> {
    s: &'s Scalars<T>,
    param: &'s mut [T],
    grad: &'s [T],
}

impl<T: Real> GranuleUpdate<T, 2> for Granules<'_, T> {
    #[inline(always)]
    fn granules(&mut self, at: usize, [m, v]: &mut [[T; FUSED]; 2]) {
        let r = at..at + FUSED;
        AdamTensor::<T>::run(self.s, &mut self.param[r.clone()], &self.grad[r], m, v, None);
    }
}

impl<T: Real> GranuleUpdate<T, 3> for Granules<'_, T> {
    #[inline(always)]
    fn granules(&mut self, at: usize, [m, v, vmax]: &mut [[T; FUSED]; 3]) {
        let r = at..at + FUSED;
        AdamTensor::<T>::run(self.s, &mut self.param[r.clone()], &self.grad[r], m, v, Some(vmax));
    }
}

impl<T: Real, S: State<T>> Update for AdamTensor<'_, T, S> {
    #[inline(always)]
    fn update(self) {
        let Self { s, param, grad, mut exp_avg, mut exp_avg_sq, mut max_exp_avg_sq } = self;
        // Storage with a one-pass update (bfloat16) does the leading whole granules so.
        let mut granules = Granules { s: &s, param: &mut *param, grad };
        let done = match max_exp_avg_sq.as_mut() {
            None => S::fused([&mut exp_avg, &mut exp_avg_sq], &mut granules),
            Some(vmax) => S::fused([&mut exp_avg, &mut exp_avg_sq, vmax], &mut granules),
        };
        let (mut m_scratch, mut v_scratch, mut vmax_scratch) = Default::default();
        for r in blocks(param.len() - done, S::BLOCK) {
            let r = r.start + done..r.end + done;
            let m = exp_avg.open(r.clone(), &mut m_scratch);
            let v = exp_avg_sq.open(r.clone(), &mut v_scratch);
            let vmax = max_exp_avg_sq.as_mut().map(|x| x.open(r.clone(), &mut vmax_scratch));
            Self::run(&s, &mut param[r.clone()], &grad[r.clone()], m, v, vmax);
            exp_avg.close(r.clone(), &mut m_scratch);
            exp_avg_sq.close(r.clone(), &mut v_scratch);
            if let Some(x) = max_exp_avg_sq.as_mut() {
                x.close(r, &mut vmax_scratch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, wave};

    /// Algorithm 1 of Kingma & Ba, transcribed literally.
    #[test]
    fn matches_algorithm_1() {
        let h = AdamHyper {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
            decoupled_weight_decay: false,
        };
        let n = 9;
        let mut theta = wave(n, 50);
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        let mut reference = theta.clone();
        let (mut rm, mut rv) = (vec![0.0; n], vec![0.0; n]);
        for t in 1..=25 {
            let g = wave(n, t);
            AdamTensor::new(&h, t as f64, &mut theta, &g, &mut m, &mut v, None).update();
            for i in 0..n {
                rm[i] = h.beta1 * rm[i] + (1.0 - h.beta1) * g[i];
                rv[i] = h.beta2 * rv[i] + (1.0 - h.beta2) * g[i] * g[i];
                let m_hat = rm[i] / (1.0 - h.beta1.powi(t as i32));
                let v_hat = rv[i] / (1.0 - h.beta2.powi(t as i32));
                reference[i] -= h.lr * m_hat / (v_hat.sqrt() + h.eps);
            }
            assert_close(&theta, &reference, 1e-9);
        }
    }

    #[test]
    fn amsgrad_never_lets_the_denominator_shrink() {
        let h = AdamHyper {
            lr: 1e-2,
            beta1: 0.0,
            beta2: 0.5,
            eps: 0.0,
            weight_decay: 0.0,
            amsgrad: true,
            maximize: false,
            decoupled_weight_decay: false,
        };
        let (mut p, mut m, mut v, mut vmax) = ([0.0f32], [0.0f32], [0.0f32], [0.0f32]);
        AdamTensor::new(&h, 1.0, &mut p, &[4.0], &mut m, &mut v, Some(&mut vmax)).update();
        AdamTensor::new(&h, 2.0, &mut p, &[0.0], &mut m, &mut v, Some(&mut vmax)).update();
        assert_eq!(vmax[0], 8.0);
        assert_eq!(v[0], 4.0);
    }
}
