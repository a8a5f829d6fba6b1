//! Pure optimizer math on flat slices: no Python, no threads.
//!
//! Every algorithm is a `*Tensor` struct that holds one tensor's parameter,
//! gradient and state slices plus the per-step scalars, in the element type
//! `T` (`f32` or `f64`). It implements [`Chunk`], so the scheduler in
//! [`crate::pool`] can cut it into pieces and run them anywhere; the update
//! of one element never depends on another element, so any cut gives the
//! same bits. Adam, SGD, AdaGrad and RMSprop take their state buffers as any
//! [`state::State`] storage: `&mut [T]`, or bfloat16 bits ([`state::Bf16`]).
//!
//! Per-step scalars (bias corrections, step sizes) are computed once in `f64`
//! and rounded to `T`, and element operations follow torch's order, which is
//! what makes the parity tests tight.

/// Implements [`Chunk`] for a kernel's tensor struct: its length is the parameter's
/// (or that of the field named with `len:`), and a cut splits every slice field at
/// the same element and copies the scalars.
macro_rules! chunk {
    ($name:ident { copy: $($scalar:ident),+; cut: $($lane:ident),+ }) => {
        chunk!($name { len: param; copy: $($scalar),+; cut: $($lane),+ });
    };
    ($name:ident { len: $len:ident; copy: $($scalar:ident),+; cut: $($lane:ident),+ }) => {
        impl<T: $crate::kernels::Real> $crate::kernels::Chunk for $name<'_, T> {
            fn len(&self) -> usize {
                self.$len.len()
            }
            fn split_at(self, mid: usize) -> (Self, Self) {
                use $crate::kernels::Cut;
                $(let $lane = self.$lane.cut(mid);)+
                (
                    Self { $($scalar: self.$scalar,)+ $($lane: $lane.0,)+ },
                    Self { $($scalar: self.$scalar,)+ $($lane: $lane.1,)+ },
                )
            }
        }
    };
    // A kernel whose state buffers are of a storage type `S` (see [`state::State`]).
    ($name:ident<S> { copy: $($scalar:ident),+; cut: $($lane:ident),+ }) => {
        impl<T: $crate::kernels::Real, S: $crate::kernels::state::State<T>> $crate::kernels::Chunk
            for $name<'_, T, S>
        {
            fn len(&self) -> usize {
                self.param.len()
            }
            fn split_at(self, mid: usize) -> (Self, Self) {
                use $crate::kernels::Cut;
                $(let $lane = self.$lane.cut(mid);)+
                (
                    Self { $($scalar: self.$scalar,)+ $($lane: $lane.0,)+ },
                    Self { $($scalar: self.$scalar,)+ $($lane: $lane.1,)+ },
                )
            }
        }
    };
}

pub mod adadelta;
pub mod adagrad;
pub mod adagrad_norm;
pub mod adam;
pub mod adamax;
pub mod clip;
pub mod lion;
pub mod nadam;
pub mod radam;
pub mod rmsprop;
pub mod sgd;
pub mod state;
pub mod stream;

/// The floating-point element types the kernels are written for.
pub trait Real: num_traits::Float + Send + Sync + 'static {
    /// Rounds an `f64` hyperparameter to this type, as torch does with Python scalars.
    fn of(x: f64) -> Self;
    /// Widens to `f64`, exactly.
    fn widen(self) -> f64;
}

impl Real for f32 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn widen(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }
}

/// A piece of elementwise work that can be cut in two at any element.
pub trait Chunk: Send + Sized {
    /// Number of elements.
    fn len(&self) -> usize;
    /// Whether there is nothing to do.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The first `mid` elements and the rest; `mid <= self.len()`.
    fn split_at(self, mid: usize) -> (Self, Self);
}

/// A chunk that updates its parameters in place.
pub trait Update: Chunk {
    /// Applies the optimizer step to every element of the chunk.
    fn update(self);
}

/// Splitting a borrowed slice (or an optional one) at an element.
pub trait Cut: Sized {
    /// The first `mid` elements and the rest.
    fn cut(self, mid: usize) -> (Self, Self);
}

impl<T> Cut for &mut [T] {
    #[inline]
    fn cut(self, mid: usize) -> (Self, Self) {
        self.split_at_mut(mid)
    }
}

impl<T> Cut for &[T] {
    #[inline]
    fn cut(self, mid: usize) -> (Self, Self) {
        self.split_at(mid)
    }
}

impl<S: Cut> Cut for Option<S> {
    #[inline]
    fn cut(self, mid: usize) -> (Self, Self) {
        match self {
            Some(s) => {
                let (a, b) = s.cut(mid);
                (Some(a), Some(b))
            }
            None => (None, None),
        }
    }
}

/// The multipliers of the raw gradient of one group, in the element type: the loss-scale
/// unscaling `1 / grad_scale`, then the clip coefficient `min(max_norm / (N + 1e-6), 1)`.
///
/// They are applied one after the other, `(g * unscale) * clip`, as torch's
/// `GradScaler.unscale_` then `clip_grad_norm_` round each product to the gradient's
/// dtype; multiplying by 1 is exact, so [`GradScale::one`] leaves every bit as it was.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradScale<T> {
    /// `1 / grad_scale`, computed in `f64` and rounded to `T`.
    pub unscale: T,
    /// The clip coefficient, rounded to `T`.
    pub clip: T,
}

impl<T: Real> GradScale<T> {
    /// No scaling: both multipliers are 1.
    pub fn one() -> Self {
        Self { unscale: T::one(), clip: T::one() }
    }

    /// Dividing by the loss scale `grad_scale` (> 0), then clipping by `clip_coef`.
    pub fn new(grad_scale: f64, clip_coef: f64) -> Self {
        Self { unscale: T::of(grad_scale.recip()), clip: T::of(clip_coef) }
    }

    /// `(g * unscale) * clip`.
    #[inline(always)]
    pub fn apply(self, g: T) -> T {
        g * self.unscale * self.clip
    }
}

/// A step whose raw gradient is first unscaled and clipped.
pub trait ScaleGrad<T>: Sized {
    /// The same step on the gradient multiplied by `scale` (see [`GradScale`]).
    fn scaled(self, scale: GradScale<T>) -> Self;
}

/// The gradient the update sees: unscaled and clipped by `scale`, `-g` when maximizing,
/// then `+ weight_decay * p` (torch's `grad.add(param, alpha=weight_decay)`; L2
/// regularization).
#[inline(always)]
pub fn effective_grad<T: Real>(g: T, p: T, maximize: bool, weight_decay: T, scale: GradScale<T>) -> T {
    let g = scale.apply(g);
    let g = if maximize { -g } else { g };
    if weight_decay != T::zero() {
        g + weight_decay * p
    } else {
        g
    }
}

/// torch's `lerp_(end, weight)`: `start + w (end - start)` for `w < 0.5`,
/// else `end - (end - start)(1 - w)`.
#[inline(always)]
pub fn lerp<T: Real>(start: T, end: T, weight: T) -> T {
    if weight < T::of(0.5) {
        start + weight * (end - start)
    } else {
        end - (end - start) * (T::one() - weight)
    }
}

/// torch's `maximum`: the larger value, NaN if either is NaN.
#[inline(always)]
pub fn maximum<T: Real>(a: T, b: T) -> T {
    if b > a || b.is_nan() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lerp_rounds_like_torch() {
        // start + w (end - start) gives 2.56335f32 here; torch.lerp gives 2.5633502f32
        assert_eq!(super::lerp(0.123f32, 4.56, 0.55), 2.563_350_2f32);
    }

    #[test]
    fn grad_scale_rounds_each_product_like_torch() {
        use super::GradScale;
        let g = 1234.5f32;
        let unscale = (1.0f64 / 1000.0) as f32;
        assert_eq!(GradScale::<f32>::new(1000.0, 0.3).apply(g), (g * unscale) * 0.3f32);
        assert_eq!(GradScale::<f64>::one().apply(0.1), 0.1);
        // unscaled and clipped first, then negated (maximize), then + wd * p
        assert_eq!(super::effective_grad(2.0f64, 1.0, true, 0.5, GradScale::new(4.0, 0.5)), 0.25);
    }

    #[test]
    fn maximum_propagates_nan_like_torch() {
        assert!(super::maximum(f64::NAN, 1.0).is_nan() && super::maximum(1.0, f64::NAN).is_nan());
        assert_eq!(super::maximum(1.0f32, 2.0), 2.0);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Small helpers shared by the kernel unit tests.

    /// A deterministic pseudo-random gradient sequence (no `rand` needed).
    pub fn wave(n: usize, k: usize) -> Vec<f64> {
        (0..n).map(|i| ((i as f64 + 1.0) * 0.731 + k as f64 * 1.37).sin() * (1.0 + i as f64 * 0.1)).collect()
    }

    /// Asserts two slices agree to a relative tolerance.
    pub fn assert_close(a: &[f64], b: &[f64], rtol: f64) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let scale = x.abs().max(y.abs()).max(1e-300);
            assert!((x - y).abs() <= rtol * scale, "element {i}: {x} vs {y}");
        }
    }
}
