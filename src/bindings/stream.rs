//! `_stream_axpy`: the bandwidth probe of `benches/bench_step.py`.

use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::arrays::{borrowing, readable, unmasked, writable};
use crate::error::Error;
use crate::kernels::stream::AxpyTensor;
use crate::kernels::Real;
use crate::pool;

/// `y += a * x` in place, on the optimizers' thread pool with the GIL released,
/// cut into pieces exactly as an optimizer step is.
///
/// A benchmark helper, not API: `benches/bench_step.py` times it as the streaming
/// bandwidth ceiling (read `x`, read `y`, write `y`: 12 bytes per float32 element).
/// `y` and `x` are C-contiguous, aligned arrays of one shape and one dtype (float32
/// or float64), in separate memory.
#[pyfunction]
#[pyo3(name = "_stream_axpy")]
pub fn stream_axpy(py: Python<'_>, y: &Bound<'_, PyAny>, x: &Bound<'_, PyAny>, a: f64) -> PyResult<()> {
    unmasked(y, || "y".into())?;
    unmasked(x, || "x".into())?;
    if let Ok(y) = y.cast::<PyArrayDyn<f32>>() {
        axpy(py, y, x, a)
    } else if let Ok(y) = y.cast::<PyArrayDyn<f64>>() {
        axpy(py, y, x, a)
    } else {
        Err(not_float(y, "y", "float32 or float64").into())
    }
}

fn axpy<T: Real + Element>(
    py: Python<'_>,
    y: &Bound<'_, PyArrayDyn<T>>,
    x: &Bound<'_, PyAny>,
    a: f64,
) -> PyResult<()> {
    let x = x.cast::<PyArrayDyn<T>>().map_err(|_| not_float(x, "x", "the dtype of y"))?;
    if x.shape() != y.shape() {
        return Err(Error::Shape {
            what: "x".into(),
            found: x.shape().to_vec(),
            expected: y.shape().to_vec(),
        }
        .into());
    }
    let (mut y, x) = borrowing(|r| Ok((writable(y, || "y".into(), r)?, readable(x, || "x".into(), r)?)))?;
    let problem = "is not a C-contiguous, aligned array; pass np.ascontiguousarray(...)";
    // `as_slice` also accepts F order, which would pair the wrong elements of x and y.
    let c_order = |a: &Bound<'_, PyUntypedArray>| a.is_aligned() && a.is_c_contiguous();
    if !c_order(x.as_untyped()) {
        return Err(Error::Layout { what: "x".into(), problem }.into());
    }
    if !c_order(y.as_untyped()) {
        return Err(Error::Layout { what: "y".into(), problem }.into());
    }
    let xs = x.as_slice().map_err(|_| Error::Layout { what: "x".into(), problem })?;
    let ys = y.as_slice_mut().map_err(|_| Error::Layout { what: "y".into(), problem })?;
    py.detach(|| pool::update_all(vec![AxpyTensor::new(a, ys, xs)]));
    Ok(())
}

/// The error for an argument that is not an array of the expected dtype.
fn not_float(obj: &Bound<'_, PyAny>, what: &str, expected: &'static str) -> Error {
    match obj.cast::<PyUntypedArray>() {
        Ok(a) => Error::Dtype { what: what.into(), found: a.dtype().to_string(), expected },
        Err(_) => Error::NotAnArray {
            what: what.into(),
            found: obj.get_type().name().map_or_else(|_| "an unknown type".to_owned(), |n| n.to_string()),
        },
    }
}
