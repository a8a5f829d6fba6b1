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
//!
//! Other frameworks' numerics ([`AdamForm`], [`AdamHyper::eps_root`],
//! [`AdamHyper::amsgrad_max_corrected`]; see `docs/conventions.md`):
//!
//! ```text
//! explicit (optax scale_by_adam, the paper's Algorithm 1):
//!     m_hat <- m / (1 - beta1^t);  v_hat <- v / (1 - beta2^t)
//!     theta <- theta - lr * (m_hat / (sqrt(v_hat + eps_root) + eps))
//! eps_hat (Keras Adam; Kingma & Ba's epsilon-hat, end of section 2):
//!     theta <- theta - m * (lr sqrt(1 - beta2^t) / (1 - beta1^t)) / (sqrt(v) + eps)
//! amsgrad_max_corrected (optax scale_by_amsgrad):
//!     v_max <- max(v_max, v_hat), used in place of v_hat
//! ```
//!
//! `eps_root` is added to `v_hat` under the square root in every form (as
//! `eps_root (1 - beta2^t)` to the raw `v` where the correction is folded).

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
    /// Added to the bias-corrected second moment under the square root (optax's `eps_root`).
    pub eps_root: f64,
    /// Where the bias corrections and `eps` enter the update.
    pub form: AdamForm,
    /// AMSGrad keeps the maximum of the bias-corrected `v_hat` (optax) instead of the raw `v`
    /// (torch, Keras).
    pub amsgrad_max_corrected: bool,
}

/// How Adam's last line is computed: the same mathematics up to where `eps` sits, in the
/// order of operations of one framework.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdamForm {
    /// torch: `lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)`.
    Folded,
    /// optax and Algorithm 1: `lr * (m_hat / (sqrt(v_hat) + eps))` with elementwise `m_hat`, `v_hat`.
    Explicit,
    /// Keras: `eps` is the paper's epsilon-hat, added to `sqrt(v)` before the bias correction.
    EpsHat,
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
    bias_correction1: T,
    bias_correction2: T,
    neg_lr: T,
    /// Keras's `alpha = lr sqrt(1 - beta2^t) / (1 - beta1^t)`.
    alpha: T,
    /// `eps_root`, added to `v_hat`.
    eps_root: T,
    /// `eps_root (1 - beta2^t)`, added to the raw `v`.
    eps_root_raw: T,
    form: AdamForm,
    corrected_max: bool,
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
            bias_correction1: T::of(bias_correction1),
            bias_correction2: T::of(bias_correction2),
            neg_lr: T::of(-h.lr),
            alpha: T::of(h.lr * bias_correction2.sqrt() / bias_correction1),
            eps_root: T::of(h.eps_root),
            eps_root_raw: T::of(h.eps_root * bias_correction2),
            form: h.form,
            corrected_max: h.amsgrad_max_corrected,
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

/// [`AdamForm`] as the const parameter of the loops.
const FOLDED: u8 = 0;
const EXPLICIT: u8 = 1;
const EPS_HAT: u8 = 2;

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

    /// The parameter after the step, from `m` and the second moment the denominator
    /// uses: the raw `v` (or its running maximum), or with `CORRECTED` the bias-corrected
    /// `v_hat` (or its running maximum). `FORM` is an [`AdamForm`] as a number (`FOLDED`,
    /// ...), and `ROOT` whether `eps_root` is added, so that each combination is its own
    /// branch-free loop and torch's (`FOLDED`, no root) is exactly the operations it
    /// always was.
    #[inline(always)]
    fn apply<const FORM: u8, const CORRECTED: bool, const ROOT: bool>(
        s: &Scalars<T>,
        p: T,
        m: T,
        second_moment: T,
    ) -> T {
        match FORM {
            FOLDED => {
                let denom = if CORRECTED {
                    (second_moment + s.eps_root).sqrt() + s.eps
                } else if ROOT {
                    (second_moment + s.eps_root_raw).sqrt() / s.bias_correction2_sqrt + s.eps
                } else {
                    second_moment.sqrt() / s.bias_correction2_sqrt + s.eps
                };
                p + s.neg_step_size * m / denom
            }
            EXPLICIT => {
                // optax: m_hat / (sqrt(v_hat + eps_root) + eps), then scaled by -lr and added
                let v_hat = if CORRECTED { second_moment } else { second_moment / s.bias_correction2 };
                let m_hat = m / s.bias_correction1;
                p + s.neg_lr * (m_hat / ((v_hat + s.eps_root).sqrt() + s.eps))
            }
            _ => {
                // Keras: variable - m * alpha / (sqrt(v) + epsilon); the max of v_hat is refused
                let v = if ROOT { second_moment + s.eps_root_raw } else { second_moment };
                p - m * s.alpha / (v.sqrt() + s.eps)
            }
        }
    }

    /// The update of plain slices of equal length.
    #[inline(always)]
    fn run<const FORM: u8, const CORRECTED: bool, const ROOT: bool>(
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
                    *p = Self::apply::<FORM, false, ROOT>(s, theta, *m, *v);
                }
            }
            Some(max_sq) => {
                for (((p, &g), (m, v)), vmax) in lanes.zip(max_sq) {
                    let theta = Self::moments(s, *p, g, m, v);
                    let second_moment = if CORRECTED { *v / s.bias_correction2 } else { *v };
                    *vmax = maximum(*vmax, second_moment);
                    *p = Self::apply::<FORM, CORRECTED, ROOT>(s, theta, *m, *vmax);
                }
            }
        }
    }

    /// [`Self::run`] for the group's form, max target and `eps_root`, chosen once per block.
    #[inline(always)]
    fn dispatch(
        s: &Scalars<T>,
        param: &mut [T],
        grad: &[T],
        exp_avg: &mut [T],
        exp_avg_sq: &mut [T],
        max_exp_avg_sq: Option<&mut [T]>,
    ) {
        let root = s.eps_root != T::zero();
        let corrected = s.corrected_max && max_exp_avg_sq.is_some();
        match (s.form, corrected, root) {
            (AdamForm::Folded, false, false) => {
                Self::run::<FOLDED, false, false>(s, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
            }
            (AdamForm::Folded, false, true) => {
                Self::run::<FOLDED, false, true>(s, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
            }
            (AdamForm::Folded, true, _) => {
                Self::run::<FOLDED, true, false>(s, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
            }
            (AdamForm::Explicit, false, _) => {
                Self::run::<EXPLICIT, false, false>(s, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
            }
            (AdamForm::Explicit, true, _) => {
                Self::run::<EXPLICIT, true, false>(s, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
            }
            // the bindings refuse epsilon-hat with the max of v_hat; the raw max is used
            (AdamForm::EpsHat, _, false) => {
                Self::run::<EPS_HAT, false, false>(s, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
            }
            (AdamForm::EpsHat, _, true) => {
                Self::run::<EPS_HAT, false, true>(s, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
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
        AdamTensor::<T>::dispatch(self.s, &mut self.param[r.clone()], &self.grad[r], m, v, None);
    }
}

impl<T: Real> GranuleUpdate<T, 3> for Granules<'_, T> {
    #[inline(always)]
    fn granules(&mut self, at: usize, [m, v, vmax]: &mut [[T; FUSED]; 3]) {
        let r = at..at + FUSED;
        AdamTensor::<T>::dispatch(self.s, &mut self.param[r.clone()], &self.grad[r], m, v, Some(vmax));
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
            Self::dispatch(&s, &mut param[r.clone()], &grad[r.clone()], m, v, vmax);
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
            eps_root: 0.0,
            form: AdamForm::Folded,
            amsgrad_max_corrected: false,
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

    fn hyper(form: AdamForm, eps_root: f64, amsgrad: bool, corrected: bool) -> AdamHyper {
        AdamHyper {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-3,
            weight_decay: 0.0,
            amsgrad,
            maximize: false,
            decoupled_weight_decay: false,
            eps_root,
            form,
            amsgrad_max_corrected: corrected,
        }
    }

    /// Each form against its own transcription: optax's `scale_by_adam` / `scale_by_amsgrad`
    /// (explicit `m_hat`, `v_hat`, `eps_root`, max of `v_hat`) and Keras's epsilon-hat.
    #[test]
    fn other_frameworks_forms() {
        let n = 7;
        for (form, eps_root, amsgrad, corrected) in [
            (AdamForm::Explicit, 0.0, false, false),
            (AdamForm::Explicit, 1e-4, true, true),
            (AdamForm::Explicit, 0.0, true, false),
            (AdamForm::Folded, 1e-4, false, false),
            (AdamForm::Folded, 1e-4, true, true),
            (AdamForm::EpsHat, 0.0, true, false),
            (AdamForm::EpsHat, 1e-4, false, false),
        ] {
            let h = hyper(form, eps_root, amsgrad, corrected);
            let mut theta = wave(n, 5);
            let (mut m, mut v, mut vmax) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            let mut reference = theta.clone();
            let (mut rm, mut rv, mut rmax) = (vec![0.0; n], vec![0.0; n], vec![0.0f64; n]);
            for t in 1..=30 {
                let g = wave(n, t);
                let vmax_slot = amsgrad.then_some(&mut vmax[..]);
                AdamTensor::new(&h, t as f64, &mut theta, &g, &mut m, &mut v, vmax_slot).update();
                let (bc1, bc2) = (1.0 - h.beta1.powi(t as i32), 1.0 - h.beta2.powi(t as i32));
                for i in 0..n {
                    rm[i] = h.beta1 * rm[i] + (1.0 - h.beta1) * g[i];
                    rv[i] = h.beta2 * rv[i] + (1.0 - h.beta2) * g[i] * g[i];
                    let step = match (form, amsgrad, corrected) {
                        (AdamForm::EpsHat, _, _) => {
                            rmax[i] = rmax[i].max(rv[i]);
                            let second = if amsgrad { rmax[i] } else { rv[i] };
                            h.lr * bc2.sqrt() / bc1 * rm[i] / ((second + eps_root * bc2).sqrt() + h.eps)
                        }
                        (_, true, true) => {
                            rmax[i] = rmax[i].max(rv[i] / bc2);
                            h.lr * (rm[i] / bc1) / ((rmax[i] + eps_root).sqrt() + h.eps)
                        }
                        _ => {
                            rmax[i] = rmax[i].max(rv[i]);
                            let second = if amsgrad { rmax[i] } else { rv[i] };
                            h.lr * (rm[i] / bc1) / ((second / bc2 + eps_root).sqrt() + h.eps)
                        }
                    };
                    reference[i] -= step;
                }
                assert_close(&theta, &reference, 1e-10);
            }
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
            eps_root: 0.0,
            form: AdamForm::Folded,
            amsgrad_max_corrected: false,
        };
        let (mut p, mut m, mut v, mut vmax) = ([0.0f32], [0.0f32], [0.0f32], [0.0f32]);
        AdamTensor::new(&h, 1.0, &mut p, &[4.0], &mut m, &mut v, Some(&mut vmax)).update();
        AdamTensor::new(&h, 2.0, &mut p, &[0.0], &mut m, &mut v, Some(&mut vmax)).update();
        assert_eq!(vmax[0], 8.0);
        assert_eq!(v[0], 4.0);
    }
}
