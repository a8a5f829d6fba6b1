//! Gradient clipping: the norm of a list of gradient arrays, and scaling or
//! clamping them in place (see [`crate::kernels::clip`]).
//!
//! As a step does, each function checks and borrows every array before it reads
//! or writes any (a wrong dtype, a layout the kernels cannot address, a read-only
//! array or two arrays sharing memory raise with nothing changed), then works
//! without the GIL. Each array is reduced in its own memory order; the partial
//! sums of its pieces are merged in a fixed order, so the norm does not depend on
//! the thread count.

use ndarray::{ArrayViewD, ArrayViewMutD};
use numpy::{Element, PyArrayDyn, PyReadonlyArrayDyn, PyReadwriteArrayDyn};
use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::arrays::{borrowing, check_layout, dtype_name, memory_axis_order, readable, type_name, unmasked};
use super::arrays::{writable, Lane, ReadLane, Refused};
use crate::error::Error;
use crate::kernels::clip::{clip_coef, tensor_norm, ClampTensor, FinitePiece, NormPiece, Order, ScaleTensor};
use crate::kernels::Real;
use crate::pool;

/// The arrays of one call, type-checked, float32 and float64 apart, each with its
/// position in the caller's list.
struct Typed<'py> {
    f32: Vec<(usize, Bound<'py, PyArrayDyn<f32>>)>,
    f64: Vec<(usize, Bound<'py, PyArrayDyn<f64>>)>,
}

impl<'py> Typed<'py> {
    /// Checks the dtype and layout of every array; `written` arrays must also be
    /// free of elements that share memory with each other.
    fn new(grads: &[Bound<'py, PyAny>], names: &[String], written: bool) -> Result<Self, Error> {
        if names.len() != grads.len() {
            return Err(Error::Malformed(format!("{} gradients but {} names", grads.len(), names.len())));
        }
        let mut typed = Typed { f32: Vec::new(), f64: Vec::new() };
        for (i, (g, name)) in grads.iter().zip(names).enumerate() {
            unmasked(g, || name.clone())?;
            if let Ok(a) = g.cast::<PyArrayDyn<f32>>() {
                typed.f32.push((i, a.clone()));
            } else if let Ok(a) = g.cast::<PyArrayDyn<f64>>() {
                typed.f64.push((i, a.clone()));
            } else {
                return Err(match dtype_name(g) {
                    Some(found) => Error::Dtype { what: name.clone(), found, expected: "float32 or float64" },
                    None => Error::NotAnArray { what: name.clone(), found: type_name(g) },
                });
            }
            if let Ok(a) = g.cast::<PyUntypedArray>() {
                check_layout(a, written, || name.clone())?;
            }
        }
        Ok(typed)
    }

    /// Whether the norm is a float64 one (torch's type promotion over the per-array norms).
    fn wide(&self) -> bool {
        !self.f64.is_empty()
    }
}

/// Borrows arrays for reading; only one being written elsewhere is refused.
fn read_all<'py, T: Element>(
    arrays: &[(usize, Bound<'py, PyArrayDyn<T>>)],
    names: &[String],
    refused: &mut Option<Refused<'py>>,
) -> Result<Vec<(usize, PyReadonlyArrayDyn<'py, T>)>, Error> {
    let name = |i: usize| names.get(i).cloned().unwrap_or_default();
    arrays.iter().map(|(i, a)| readable(a, || name(*i), refused).map(|r| (*i, r))).collect()
}

/// Borrows arrays for writing; rust-numpy's tracker refuses arrays sharing memory.
fn write_all<'py, T: Element>(
    arrays: &[(usize, Bound<'py, PyArrayDyn<T>>)],
    names: &[String],
    refused: &mut Option<Refused<'py>>,
) -> Result<Vec<(usize, PyReadwriteArrayDyn<'py, T>)>, Error> {
    let name = |i: usize| names.get(i).cloned().unwrap_or_default();
    arrays.iter().map(|(i, a)| writable(a, || name(*i), refused).map(|w| (*i, w))).collect()
}

/// Borrowed arrays of both dtypes, read only.
type Read<'py> = (Vec<(usize, PyReadonlyArrayDyn<'py, f32>)>, Vec<(usize, PyReadonlyArrayDyn<'py, f64>)>);
/// Borrowed arrays of both dtypes, writable.
type Written<'py> =
    (Vec<(usize, PyReadwriteArrayDyn<'py, f32>)>, Vec<(usize, PyReadwriteArrayDyn<'py, f64>)>);

impl<'py> Typed<'py> {
    /// Borrows every array for reading (see [`borrowing`]).
    fn read(&self, names: &[String]) -> PyResult<Read<'py>> {
        borrowing(|r| Ok((read_all(&self.f32, names, r)?, read_all(&self.f64, names, r)?)))
    }

    /// Borrows every array for writing (see [`borrowing`]).
    fn write(&self, names: &[String]) -> PyResult<Written<'py>> {
        borrowing(|r| Ok((write_all(&self.f32, names, r)?, write_all(&self.f64, names, r)?)))
    }
}

/// Views in each array's own memory order, so contiguous arrays of any axis order are slices.
fn read_views<'a, T: Element>(
    arrays: &'a [(usize, PyReadonlyArrayDyn<'_, T>)],
) -> Vec<(usize, ArrayViewD<'a, T>)> {
    arrays.iter().map(|(i, a)| (*i, a.as_array().permuted_axes(memory_axis_order(a.strides())))).collect()
}

fn write_views<'a, T: Element>(
    arrays: &'a mut [(usize, PyReadwriteArrayDyn<'_, T>)],
) -> Vec<(usize, ArrayViewMutD<'a, T>)> {
    arrays
        .iter_mut()
        .map(|(i, a)| {
            let axes = memory_axis_order(a.strides());
            (*i, a.as_array_mut().permuted_axes(axes))
        })
        .collect()
}

/// Each array's norm, rounded to its dtype, stored at its position in `norms`.
fn tensor_norms<T: Real>(order: Order, grads: &[(usize, &[T])], norms: &mut [f64]) {
    let work = grads.iter().map(|(_, g)| NormPiece::new(order, g)).collect();
    let accumulated = pool::fold_all(work, Order::EMPTY, NormPiece::accumulate, |a, b| order.combine(a, b));
    for ((i, _), acc) in grads.iter().zip(accumulated) {
        norms[*i] = tensor_norm::<T>(order, acc);
    }
}

/// [`tensor_norms`] of read-only views, copying those not contiguous in memory order.
fn read_norms<T: Real>(order: Order, views: Vec<(usize, ArrayViewD<'_, T>)>, norms: &mut [f64]) {
    let lanes: Vec<_> = views.into_iter().map(|(i, v)| (i, ReadLane::new(v))).collect();
    tensor_norms(order, &lanes.iter().map(|(i, l)| (*i, l.slice())).collect::<Vec<_>>(), norms);
}

/// The norm of the per-array norms, in float64 when `wide`, else rounded to float32.
fn total_norm(order: Order, norms: &[f64], wide: bool) -> f64 {
    let total = order.norm(norms.iter().copied());
    if wide {
        total
    } else {
        f32::of(total).widen()
    }
}

/// The clip coefficient in the dtype of the total norm, widened.
fn coef(max_norm: f64, total: f64, wide: bool) -> f64 {
    if wide {
        clip_coef(max_norm, total)
    } else {
        clip_coef(max_norm, f32::of(total)).widen()
    }
}

/// `value` when it is `>= 0` (infinity included), else an error naming it.
fn non_negative(value: f64, name: &str) -> Result<f64, Error> {
    if value >= 0.0 {
        Ok(value)
    } else {
        Err(Error::Malformed(format!("{name} must be >= 0, got {value}")))
    }
}

fn order_of(norm_type: f64) -> Result<Order, Error> {
    Order::new(norm_type)
        .ok_or_else(|| Error::Malformed(format!("norm_type must be >= 0 or inf, got {norm_type}")))
}

fn slices<'s, 'a, T: Real>(lanes: &'s [(usize, Lane<'a, T>)]) -> Vec<(usize, &'s [T])> {
    lanes.iter().map(|(i, l)| (*i, l.as_slice())).collect()
}

fn lanes<T: Real>(views: Vec<(usize, ArrayViewMutD<'_, T>)>) -> Vec<(usize, Lane<'_, T>)> {
    views.into_iter().map(|(i, v)| (i, Lane::new(v))).collect()
}

/// `g <- coef g` on every lane, then the staged copies go back to their arrays.
fn scale<T: Real>(coef: f64, lanes: &mut [(usize, Lane<'_, T>)]) {
    pool::update_all(lanes.iter_mut().map(|(_, l)| ScaleTensor::new(coef, l.slice())).collect());
    lanes.iter_mut().for_each(|(_, l)| l.write_back());
}

/// The total `norm_type`-norm of `grads` (torch's `get_total_norm`): returns the norm
/// and whether it is a float64 one (any array is float64) rather than float32. With
/// `error_if_nonfinite`, a NaN or infinite norm raises `RuntimeError`.
#[pyfunction]
pub fn grad_norm(
    py: Python<'_>,
    grads: Vec<Bound<'_, PyAny>>,
    names: Vec<String>,
    norm_type: f64,
    error_if_nonfinite: bool,
) -> PyResult<(f64, bool)> {
    let order = order_of(norm_type)?;
    let typed = Typed::new(&grads, &names, false)?;
    let (r32, r64) = typed.read(&names)?;
    let (v32, v64) = (read_views(&r32), read_views(&r64));
    let (wide, count) = (typed.wide(), grads.len());
    let total = py.detach(|| {
        let mut norms = vec![0.0; count];
        read_norms(order, v32, &mut norms);
        read_norms(order, v64, &mut norms);
        total_norm(order, &norms, wide)
    });
    if error_if_nonfinite && !total.is_finite() {
        return Err(Error::NonFiniteNorm { norm_type }.into());
    }
    Ok((total, wide))
}

/// Clips `grads` in place to a total `norm_type`-norm of at most `max_norm`
/// (torch's `clip_grad_norm_`). Returns the total norm before clipping and whether
/// it is a float64 one. With `error_if_nonfinite`, a NaN or infinite norm raises
/// `RuntimeError` and no array is changed.
#[pyfunction]
pub fn clip_grad_norm(
    py: Python<'_>,
    grads: Vec<Bound<'_, PyAny>>,
    names: Vec<String>,
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
) -> PyResult<(f64, bool)> {
    let max_norm = non_negative(max_norm, "max_norm")?;
    let order = order_of(norm_type)?;
    let typed = Typed::new(&grads, &names, true)?;
    let (mut w32, mut w64) = typed.write(&names)?;
    let (v32, v64) = (write_views(&mut w32), write_views(&mut w64));
    let (wide, count) = (typed.wide(), grads.len());
    let total = py.detach(|| {
        let (mut l32, mut l64) = (lanes(v32), lanes(v64));
        let mut norms = vec![0.0; count];
        tensor_norms(order, &slices(&l32), &mut norms);
        tensor_norms(order, &slices(&l64), &mut norms);
        let total = total_norm(order, &norms, wide);
        if error_if_nonfinite && !total.is_finite() {
            return Err(Error::NonFiniteNorm { norm_type });
        }
        let coef = coef(max_norm, total, wide);
        scale(coef, &mut l32);
        scale(coef, &mut l64);
        Ok(total)
    })?;
    Ok((total, wide))
}

/// Scales `grads` in place by torch's `min(max_norm / (total_norm + 1e-6), 1)`, computed
/// in float64 when `wide`, else in float32 (torch's `clip_grads_with_norm_`).
#[pyfunction]
pub fn clip_grads_with_norm(
    py: Python<'_>,
    grads: Vec<Bound<'_, PyAny>>,
    names: Vec<String>,
    max_norm: f64,
    total_norm: f64,
    wide: bool,
) -> PyResult<()> {
    let max_norm = non_negative(max_norm, "max_norm")?;
    let typed = Typed::new(&grads, &names, true)?;
    let (mut w32, mut w64) = typed.write(&names)?;
    let (v32, v64) = (write_views(&mut w32), write_views(&mut w64));
    py.detach(|| {
        let coef = coef(max_norm, total_norm, wide);
        scale(coef, &mut lanes(v32));
        scale(coef, &mut lanes(v64));
    });
    Ok(())
}

/// Per array of one dtype, its multiplier `1 / grad_scale` rounded to `T`.
fn unscales<T: Real>(views: &[(usize, ArrayViewD<'_, T>)], grad_scales: &[f64]) -> Vec<T> {
    views.iter().map(|(i, _)| T::of(grad_scales.get(*i).map_or(1.0, |s| s.recip()))).collect()
}

/// Whether some entry of the `lanes` to `check`, multiplied by its array's `unscale`, is NaN
/// or infinite.
fn any_nonfinite<T: Real>(lanes: &[(usize, ReadLane<'_, T>)], unscale: &[T], check: &[bool]) -> bool {
    let work = (lanes.iter().zip(unscale))
        .filter(|((i, _), _)| check.get(*i).copied().unwrap_or(false))
        .map(|((_, l), &u)| FinitePiece::new(l.slice(), u))
        .collect();
    pool::fold_all(work, 0.0, FinitePiece::count, |a, b| a + b).iter().any(|&bad| bad > 0.0)
}

/// Each array's 2-norm of `unscale * g`, rounded to its dtype, stored at its position in `norms`.
fn unscaled_norms<T: Real>(lanes: &[(usize, ReadLane<'_, T>)], unscale: &[T], norms: &mut [f64]) {
    let order = Order::Two;
    let work = lanes.iter().zip(unscale).map(|((_, l), &u)| NormPiece::scaled(order, l.slice(), u)).collect();
    let accumulated = pool::fold_all(work, Order::EMPTY, NormPiece::accumulate, |a, b| order.combine(a, b));
    for ((i, _), acc) in lanes.iter().zip(accumulated) {
        norms[*i] = tensor_norm::<T>(order, acc);
    }
}

/// What an optimizer step with `skip_nonfinite` or `max_grad_norm` needs to know of its
/// gradients, each first multiplied by `1 / grad_scales[i]` (rounded to its dtype, as
/// torch's `GradScaler.unscale_` does), without writing them: whether every entry of the
/// arrays whose `check_finite` flag is set is finite, the total 2-norm of all of them (torch's
/// `get_total_norm`; computed only when `max_norms` is not empty), whether that norm is a
/// float64 one, and for each of `max_norms` torch's clip coefficient
/// `min(max_norm / (norm + 1e-6), 1)` in the norm's dtype.
#[pyfunction]
pub fn grad_stats(
    py: Python<'_>,
    grads: Vec<Bound<'_, PyAny>>,
    names: Vec<String>,
    grad_scales: Vec<f64>,
    check_finite: Vec<bool>,
    max_norms: Vec<f64>,
) -> PyResult<(bool, f64, bool, Vec<f64>)> {
    if grad_scales.len() != grads.len() {
        return Err(Error::Malformed(format!(
            "{} gradients but {} grad_scales",
            grads.len(),
            grad_scales.len()
        ))
        .into());
    }
    if let Some(bad) = grad_scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(Error::Malformed(format!("grad_scale must be a finite number > 0, got {bad}")).into());
    }
    let max_norms =
        max_norms.into_iter().map(|m| non_negative(m, "max_grad_norm")).collect::<Result<Vec<_>, _>>()?;
    let typed = Typed::new(&grads, &names, false)?;
    let (r32, r64) = typed.read(&names)?;
    let (v32, v64) = (read_views(&r32), read_views(&r64));
    let (u32_, u64_) = (unscales(&v32, &grad_scales), unscales(&v64, &grad_scales));
    let (wide, count) = (typed.wide(), grads.len());
    let stats = py.detach(|| {
        let l32: Vec<_> = v32.into_iter().map(|(i, v)| (i, ReadLane::new(v))).collect();
        let l64: Vec<_> = v64.into_iter().map(|(i, v)| (i, ReadLane::new(v))).collect();
        let finite =
            !(any_nonfinite(&l32, &u32_, &check_finite) || any_nonfinite(&l64, &u64_, &check_finite));
        if max_norms.is_empty() {
            return (finite, 0.0, wide, Vec::new());
        }
        let mut norms = vec![0.0; count];
        unscaled_norms(&l32, &u32_, &mut norms);
        unscaled_norms(&l64, &u64_, &mut norms);
        let total = total_norm(Order::Two, &norms, wide);
        (finite, total, wide, max_norms.iter().map(|&m| coef(m, total, wide)).collect())
    });
    Ok(stats)
}

/// Clamps every entry of `grads` in place to `[-clip_value, clip_value]`
/// (torch's `clip_grad_value_`); NaN stays NaN.
#[pyfunction]
pub fn clip_grad_value(
    py: Python<'_>,
    grads: Vec<Bound<'_, PyAny>>,
    names: Vec<String>,
    clip_value: f64,
) -> PyResult<()> {
    fn clamp<T: Real>(clip_value: f64, mut lanes: Vec<(usize, Lane<'_, T>)>) {
        pool::update_all(lanes.iter_mut().map(|(_, l)| ClampTensor::new(clip_value, l.slice())).collect());
        lanes.iter_mut().for_each(|(_, l)| l.write_back());
    }
    let clip_value = non_negative(clip_value, "clip_value")?;
    let typed = Typed::new(&grads, &names, true)?;
    let (mut w32, mut w64) = typed.write(&names)?;
    let (v32, v64) = (write_views(&mut w32), write_views(&mut w64));
    py.detach(|| {
        clamp(clip_value, lanes(v32));
        clamp(clip_value, lanes(v64));
    });
    Ok(())
}
