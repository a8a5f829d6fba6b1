//! The Python-facing functions: extract and validate with the GIL, then run the
//! kernels with it released. The only place Python types appear.

pub mod arrays;
pub mod clip;
pub mod optimizers;
pub mod sampler;
pub mod stream;
pub mod threads;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::Error;
use crate::kernels::state::{rounding_key, Bf16};
use crate::kernels::{GradScale, Real, ScaleGrad, Update};
use crate::pool;
use arrays::{flats, write_back, At, Batch, Flat, SlotArray, Tensors};
use optimizers::{item_or, Bf16Tensor};

/// An algorithm's hyperparameters for one group, and how they turn one tensor's
/// slices into a kernel step.
pub trait Kernel: Sync + Sized {
    /// The state slots, in the order the Python layer passes them.
    const STATE: &'static [&'static str];
    /// The kernel's per-tensor work.
    type Tensor<'a, T: Real>: Update + ScaleGrad<T>
    where
        Self: 'a;
    /// Extracts the group's hyperparameters (and per-tensor scalars) from its dict.
    fn extract(group: &Bound<'_, PyDict>) -> PyResult<Self>;
    /// The step of tensor `position` of this group; `None` when a state array the
    /// settings need is missing.
    fn tensor<'a, T: Real>(
        &'a self,
        position: usize,
        param: &'a mut [T],
        grad: &'a [T],
        state: SlotArray<&'a mut [T]>,
    ) -> Option<Self::Tensor<'a, T>>;
    /// Whether the algorithm can keep its state as bfloat16 (`state_dtype="bfloat16"`).
    const BF16: bool = false;
    /// The step of tensor `position` of this group with its state stored as bfloat16;
    /// `None` when a state array is missing, or the algorithm has no such step.
    fn bf16_tensor<'a>(
        &'a self,
        _position: usize,
        _param: &'a mut [f32],
        _grad: &'a [f32],
        _state: SlotArray<Bf16<'a>>,
    ) -> Option<Bf16Tensor<'a>> {
        None
    }
}

/// A group's gradient multipliers (see [`GradScale`]): its loss scale `grad_scale`
/// (`None` is 1) and the clip coefficient `clip_coef` the Python layer computed from the
/// global gradient norm for its `max_grad_norm` (absent is 1, no clipping).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupScale {
    grad_scale: f64,
    clip_coef: f64,
}

impl GroupScale {
    /// Reads `grad_scale` and `clip_coef` from a group dict; a loss scale that is not a
    /// finite number > 0, or a coefficient outside `[0, 1]` (NaN aside: a NaN norm gives
    /// one, as in torch), is a `ValueError`.
    pub fn extract(g: &Bound<'_, PyDict>) -> PyResult<Self> {
        let grad_scale: f64 = item_or(g, pyo3::intern!(g.py(), "grad_scale"), 1.0)?;
        if !(grad_scale.is_finite() && grad_scale > 0.0) {
            return Err(Error::Malformed(format!(
                "grad_scale must be a finite number > 0, got {grad_scale}"
            ))
            .into());
        }
        let clip_coef: f64 = item_or(g, pyo3::intern!(g.py(), "clip_coef"), 1.0)?;
        if !(clip_coef.is_nan() || (0.0..=1.0).contains(&clip_coef)) {
            return Err(Error::Malformed(format!("clip_coef must be in [0, 1], got {clip_coef}")).into());
        }
        Ok(Self { grad_scale, clip_coef })
    }

    /// The multipliers in the element type.
    pub fn of<T: Real>(self) -> GradScale<T> {
        GradScale::new(self.grad_scale, self.clip_coef)
    }
}

fn missing_state<K: Kernel>(at: At) -> Error {
    Error::Malformed(format!(
        "{} is missing state its settings need (slots {})",
        at.site.param(),
        K::STATE.join(", ")
    ))
}

fn work<'a, K: Kernel, T: Real>(
    hypers: &'a [(K, GroupScale)],
    flats: &'a mut [Flat<'_, T>],
) -> Result<Vec<K::Tensor<'a, T>>, Error> {
    flats
        .iter_mut()
        .map(|f| {
            let at = f.at;
            let state = f.state.each_mut().map(|s| s.as_mut().map(|s| s.slice()));
            let (hyper, scale) = &hypers[at.slot];
            let tensor = hyper.tensor(at.position, f.param.slice(), f.grad.slice(), state);
            tensor.map(|t| t.scaled(scale.of())).ok_or_else(|| missing_state::<K>(at))
        })
        .collect()
}

/// The steps of the tensors whose state is bfloat16: state slot `i` of each rounds
/// with the stream keyed by the group's seed, the step, the parameter's position and `i`.
fn bf16_work<'a, K: Kernel>(
    hypers: &'a [(K, GroupScale)],
    flats: &'a mut [Flat<'_, f32, u16>],
) -> Result<Vec<Bf16Tensor<'a>>, Error> {
    flats
        .iter_mut()
        .map(|f| {
            let at = f.at;
            let (seed, step, param) = at.rounding.unwrap_or_default();
            let mut slot = 0u64..;
            let state = f.state.each_mut().map(|s| {
                let key = rounding_key(seed, step, param, slot.next().unwrap_or_default());
                s.as_mut().map(|s| Bf16::new(s.slice(), key))
            });
            let (hyper, scale) = &hypers[at.slot];
            (hyper.bf16_tensor(at.position, f.param.slice(), f.grad.slice(), state))
                .map(|t| t.scaled(scale.of()))
                .ok_or_else(|| missing_state::<K>(at))
        })
        .collect()
}

/// Each group's hyperparameters (by `extract`) and arrays; an error names the group.
pub fn extract_groups<'py, H>(
    groups: &[Bound<'py, PyDict>],
    extract: impl Fn(&Bound<'py, PyDict>) -> PyResult<H>,
) -> PyResult<(Vec<H>, Vec<Tensors<'py>>)> {
    let mut hypers = Vec::with_capacity(groups.len());
    let mut tensors = Vec::with_capacity(groups.len());
    for g in groups {
        let t = g.extract::<Tensors<'py>>()?;
        let h = extract(g).map_err(|e| {
            let py = g.py();
            PyErr::from_type(e.get_type(py), format!("param_groups[{}]: {}", t.group, e.value(py)))
        })?;
        hypers.push(h);
        tensors.push(t);
    }
    Ok((hypers, tensors))
}

/// One optimizer step over every group: all checks with the GIL, then the
/// layout copies, kernels and write-backs without it, one parallel region per dtype.
pub fn step<K: Kernel>(py: Python<'_>, groups: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
    let (hypers, tensors) = extract_groups(&groups, |g| Ok((K::extract(g)?, GroupScale::extract(g)?)))?;
    let mut batch = Batch::borrow(&tensors, K::STATE, K::BF16)?;
    let (views32, views64, views_bf16) = batch.views();
    // Every dtype's work is built before any runs, so a missing state array
    // in the float64 tensors cannot follow a float32 update.
    py.detach(|| {
        let mut flat32 = flats(views32);
        let mut flat64 = flats(views64);
        let mut flat_bf16 = flats(views_bf16);
        let work32 = work(&hypers, &mut flat32)?;
        let work64 = work(&hypers, &mut flat64)?;
        let work_bf16 = bf16_work(&hypers, &mut flat_bf16)?;
        pool::update_all(work32);
        pool::update_all(work64);
        pool::update_all(work_bf16);
        write_back(&mut flat32);
        write_back(&mut flat64);
        write_back(&mut flat_bf16);
        Ok::<(), Error>(())
    })?;
    Ok(())
}
