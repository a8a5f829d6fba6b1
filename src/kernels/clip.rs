//! Gradient clipping, as `torch.nn.utils.clip_grad_norm_` and `clip_grad_value_`.
//!
//! Clipping by the global norm (Pascanu, Mikolov & Bengio 2013, "On the difficulty
//! of training recurrent neural networks", Algorithm 1), in torch's form:
//!
//! ```text
//! n_i = ||g_i||_p                    per gradient array, rounded to its dtype
//! N   = ||(n_1, ..., n_k)||_p        in the widest dtype of the arrays
//! c   = min(max_norm / (N + 1e-6), 1)
//! g_i <- c g_i
//! ```
//!
//! Clipping by value: `g <- clamp(g, -clip_value, clip_value)`.
//!
//! `||x||_p` is `(sum |x|^p)^(1/p)` for `p > 0`, `max |x|` for `p = inf` and the
//! number of nonzero entries for `p = 0`, as `torch.linalg.vector_norm`. A NaN
//! anywhere makes the norm NaN. Each array is reduced in pieces of fixed size
//! whose partial results are accumulated in `f64` and combined in piece order,
//! so the norm has the same bits for any number of threads, and an `f32`
//! array's `sum g^2` cannot overflow before its square root is taken.

use super::{maximum, Real, Update};

/// Which vector norm: torch's `norm_type`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Order {
    /// `p = 0`: the number of nonzero entries.
    Count,
    /// `p = 1`: `sum |x|`.
    One,
    /// `p = 2`: `sqrt(sum x^2)`, the Euclidean norm.
    Two,
    /// `p = inf`: `max |x|`.
    Max,
    /// Any other `p > 0`: `(sum |x|^p)^(1/p)`.
    P(f64),
}

impl Order {
    /// The order of `norm_type`; `None` for a negative or NaN one.
    pub fn new(norm_type: f64) -> Option<Self> {
        Some(match norm_type {
            0.0 => Self::Count,
            1.0 => Self::One,
            2.0 => Self::Two,
            f64::INFINITY => Self::Max,
            p if p > 0.0 => Self::P(p),
            _ => return None,
        })
    }

    /// What one entry contributes to the accumulator.
    #[inline(always)]
    fn term(self, x: f64) -> f64 {
        match self {
            Self::Count => f64::from(u8::from(x != 0.0)),
            Self::One | Self::Max => x.abs(),
            Self::Two => x * x,
            Self::P(p) => x.abs().powf(p),
        }
    }

    /// Merges two accumulators: `max` for the inf norm (NaN wins), else `+`.
    #[inline(always)]
    pub fn combine(self, a: f64, b: f64) -> f64 {
        match self {
            Self::Max => maximum(a, b),
            _ => a + b,
        }
    }

    /// The norm of an accumulator.
    fn finish(self, acc: f64) -> f64 {
        match self {
            Self::Count | Self::One | Self::Max => acc,
            Self::Two => acc.sqrt(),
            Self::P(p) => acc.powf(p.recip()),
        }
    }

    /// The accumulator of no entries.
    pub const EMPTY: f64 = 0.0;

    /// Merges the accumulators of the pieces of one array, in order, into its norm.
    pub fn norm_of_pieces(self, pieces: impl IntoIterator<Item = f64>) -> f64 {
        self.finish(pieces.into_iter().fold(Self::EMPTY, |a, b| self.combine(a, b)))
    }

    /// The norm of a list of values, taken left to right (used on the per-array norms).
    pub fn norm(self, values: impl IntoIterator<Item = f64>) -> f64 {
        self.norm_of_pieces(values.into_iter().map(|x| self.term(x)))
    }
}

/// One piece of a gradient array whose norm is being taken.
#[derive(Debug)]
pub struct NormPiece<'a, T> {
    order: Order,
    scale: T,
    grad: &'a [T],
}

impl<'a, T: Real> NormPiece<'a, T> {
    /// Prepares the reduction of a whole array (cut into pieces by the scheduler).
    pub fn new(order: Order, grad: &'a [T]) -> Self {
        Self::scaled(order, grad, T::one())
    }

    /// The reduction of the array `scale * g` (each product rounded to `T`), without writing it.
    pub fn scaled(order: Order, grad: &'a [T], scale: T) -> Self {
        Self { order, scale, grad }
    }

    /// The accumulator of this piece (`sum |g|^p`, or `max |g|`), in `f64`, left to right.
    pub fn accumulate(self) -> f64 {
        let (order, scale) = (self.order, self.scale);
        self.grad.iter().fold(Order::EMPTY, |acc, &g| order.combine(acc, order.term((g * scale).widen())))
    }
}

chunk!(NormPiece { len: grad; copy: order, scale; cut: grad });

/// One piece of a gradient array checked for NaN and infinite entries, after multiplying
/// each by `scale` (a loss scale's `1 / S`, rounded to `T`).
#[derive(Debug)]
pub struct FinitePiece<'a, T> {
    scale: T,
    grad: &'a [T],
}

impl<'a, T: Real> FinitePiece<'a, T> {
    /// Prepares the check of a whole array (cut into pieces by the scheduler).
    pub fn new(grad: &'a [T], scale: T) -> Self {
        Self { scale, grad }
    }

    /// 1 when some `scale * g` of this piece is NaN or infinite, else 0: a branch-free
    /// `or` over the entries, which the compiler vectorizes.
    pub fn count(self) -> f64 {
        let scale = self.scale;
        let bad = self.grad.iter().fold(false, |bad, &g| bad | !(g * scale).is_finite());
        f64::from(u8::from(bad))
    }
}

chunk!(FinitePiece { len: grad; copy: scale; cut: grad });

/// An array's norm from its accumulator, rounded to its dtype as torch's per-tensor
/// `vector_norm` returns it.
pub fn tensor_norm<T: Real>(order: Order, acc: f64) -> f64 {
    T::of(order.finish(acc)).widen()
}

/// torch's clip coefficient `min(max_norm / (total_norm + 1e-6), 1)` in the dtype `D`
/// of the total norm; torch evaluates `max_norm / t` as `t.reciprocal() * max_norm`.
/// A NaN total norm gives a NaN coefficient, an infinite one gives 0.
pub fn clip_coef<D: Real>(max_norm: f64, total_norm: D) -> D {
    let coef = (total_norm + D::of(1e-6)).recip() * D::of(max_norm);
    if coef > D::one() {
        D::one()
    } else {
        coef
    }
}

/// `g <- coef * g` on one gradient array.
#[derive(Debug)]
pub struct ScaleTensor<'a, T> {
    coef: T,
    grad: &'a mut [T],
}

impl<'a, T: Real> ScaleTensor<'a, T> {
    /// Prepares the scaling; the `f64` coefficient is rounded to `T`, as torch's `mul_`
    /// rounds its scalar tensor.
    pub fn new(coef: f64, grad: &'a mut [T]) -> Self {
        Self { coef: T::of(coef), grad }
    }
}

chunk!(ScaleTensor { len: grad; copy: coef; cut: grad });

impl<T: Real> Update for ScaleTensor<'_, T> {
    fn update(self) {
        for g in self.grad.iter_mut() {
            *g = *g * self.coef;
        }
    }
}

/// `g <- clamp(g, -clip_value, clip_value)` on one gradient array; NaN stays NaN.
#[derive(Debug)]
pub struct ClampTensor<'a, T> {
    clip_value: T,
    grad: &'a mut [T],
}

impl<'a, T: Real> ClampTensor<'a, T> {
    /// Prepares the clamp with `clip_value >= 0`, rounded to `T`.
    pub fn new(clip_value: f64, grad: &'a mut [T]) -> Self {
        Self { clip_value: T::of(clip_value), grad }
    }
}

chunk!(ClampTensor { len: grad; copy: clip_value; cut: grad });

impl<T: Real> Update for ClampTensor<'_, T> {
    fn update(self) {
        let (lo, hi) = (-self.clip_value, self.clip_value);
        for g in self.grad.iter_mut() {
            if *g < lo {
                *g = lo;
            } else if *g > hi {
                *g = hi;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_close, wave};
    use crate::kernels::Chunk;

    fn norm<T: Real>(order: Order, g: &[T]) -> f64 {
        tensor_norm::<T>(order, NormPiece::new(order, g).accumulate())
    }

    #[test]
    fn orders_are_torchs_norm_types() {
        assert_eq!(Order::new(-0.0), Some(Order::Count));
        assert_eq!(Order::new(2.0), Some(Order::Two));
        assert_eq!(Order::new(f64::INFINITY), Some(Order::Max));
        assert_eq!(Order::new(3.5), Some(Order::P(3.5)));
        assert_eq!(Order::new(-1.0), None);
        assert_eq!(Order::new(f64::NEG_INFINITY), None);
        assert_eq!(Order::new(f64::NAN), None);
    }

    #[test]
    fn vector_norms_match_their_definitions() {
        let g = wave(50, 3);
        let abs: Vec<f64> = g.iter().map(|x| x.abs()).collect();
        assert_close(&[norm(Order::One, &g)], &[abs.iter().sum()], 1e-14);
        assert_close(&[norm(Order::Two, &g)], &[g.iter().map(|x| x * x).sum::<f64>().sqrt()], 1e-14);
        let p3 = abs.iter().map(|x| x.powf(3.5)).sum::<f64>().powf(1.0 / 3.5);
        assert_close(&[norm(Order::P(3.5), &g)], &[p3], 1e-14);
        assert_eq!(norm(Order::Max, &g), abs.iter().cloned().fold(0.0, f64::max));
        assert_eq!(norm(Order::Count, &[0.0, 1.0, -0.0, 2.0, f64::NAN]), 3.0);
    }

    #[test]
    fn pieces_combine_in_order_into_the_whole_norm() {
        let g = wave(40, 1);
        for order in [Order::One, Order::Two, Order::Max, Order::P(3.0)] {
            let (a, b) = NormPiece::new(order, &g[..]).split_at(17);
            let merged = order.norm_of_pieces([a.accumulate(), b.accumulate()]);
            assert_close(&[merged], &[norm(order, &g)], 1e-14);
        }
    }

    #[test]
    fn nan_makes_the_norm_nan_and_inf_makes_it_inf() {
        for order in [Order::One, Order::Two, Order::Max, Order::P(3.0)] {
            assert!(norm(order, &[1.0f32, f32::NAN, 2.0]).is_nan());
            assert!(norm(order, &[f32::NAN, f32::INFINITY]).is_nan());
            assert_eq!(norm(order, &[1.0f64, f64::NEG_INFINITY]), f64::INFINITY);
        }
    }

    #[test]
    fn f32_norms_do_not_overflow_before_the_root() {
        let g = [3e20f32, 4e20];
        assert_eq!(norm(Order::Two, &g), f64::from(5e20f32));
    }

    #[test]
    fn scaled_norms_and_finiteness_see_the_unscaled_gradient() {
        let g = [6.0f32, 8.0];
        let n = tensor_norm::<f32>(Order::Two, NormPiece::scaled(Order::Two, &g, 0.5).accumulate());
        assert_eq!(n, 5.0);
        assert_eq!(FinitePiece::new(&g, 0.5f32).count(), 0.0);
        // finite entries that overflow once multiplied count as infinite
        assert_eq!(FinitePiece::new(&[3e38f32, 1.0], 2.0).count(), 1.0);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let g = [1.0, 2.0, bad, 4.0];
            let (a, b) = FinitePiece::new(&g, 1.0).split_at(2);
            assert_eq!((a.count(), b.count()), (0.0, 1.0));
        }
    }

    #[test]
    fn clip_coef_is_torchs() {
        assert_eq!(clip_coef(1.0, 0.5f64), 1.0);
        assert_eq!(clip_coef(1.0, 4.0f64), (4.0f64 + 1e-6).recip());
        assert_eq!(clip_coef(2.0, 4.0f32), (4.0f32 + 1e-6).recip() * 2.0);
        assert_eq!(clip_coef(1.0, f64::INFINITY), 0.0);
        assert!(clip_coef(1.0, f64::NAN).is_nan());
    }

    #[test]
    fn clamp_and_scale_act_elementwise() {
        let mut g = [-3.0f64, -0.5, 0.0, 2.0, f64::NAN];
        ClampTensor::new(1.0, &mut g).update();
        assert_eq!(&g[..4], &[-1.0, -0.5, 0.0, 1.0]);
        assert!(g[4].is_nan());
        let mut g = [2.0f32, -4.0];
        ScaleTensor::new(0.25, &mut g).update();
        assert_eq!(g, [0.5, -1.0]);
    }
}
