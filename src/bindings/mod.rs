//! The Python-facing functions: extract and validate with the GIL, then run the
//! kernels with it released. The only place Python types appear.

pub mod arrays;
pub mod optimizers;
pub mod sampler;
pub mod stream;
pub mod threads;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::Error;
use crate::kernels::{Real, Update};
use crate::pool;
use arrays::{flats, write_back, Batch, Flat, Tensors};

/// An algorithm's hyperparameters for one group, and how they turn one tensor's
/// slices into a kernel step.
pub trait Kernel: Sync + Sized {
    /// The state slots, in the order the Python layer passes them.
    const STATE: &'static [&'static str];
    /// The kernel's per-tensor work.
    type Tensor<'a, T: Real>: Update
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
        state: Vec<Option<&'a mut [T]>>,
    ) -> Option<Self::Tensor<'a, T>>;
}

fn work<'a, K: Kernel, T: Real>(
    hypers: &'a [K],
    flats: &'a mut [Flat<'_, T>],
) -> Result<Vec<K::Tensor<'a, T>>, Error> {
    flats
        .iter_mut()
        .map(|f| {
            let at = f.at;
            let state = f.state.iter_mut().map(|s| s.as_mut().map(|s| s.slice())).collect();
            hypers[at.slot].tensor(at.position, f.param.slice(), f.grad.slice(), state).ok_or_else(|| {
                Error::Malformed(format!(
                    "{} is missing state its settings need (slots {})",
                    at.site.param(),
                    K::STATE.join(", ")
                ))
            })
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
    let (hypers, tensors) = extract_groups(&groups, K::extract)?;
    let mut batch = Batch::borrow(&tensors, K::STATE)?;
    let (views32, views64) = batch.views();
    // Both dtypes' work is built before either runs, so a missing state array
    // in the float64 tensors cannot follow a float32 update.
    py.detach(|| {
        let mut flat32 = flats(views32);
        let mut flat64 = flats(views64);
        let work32 = work(&hypers, &mut flat32)?;
        let work64 = work(&hypers, &mut flat64)?;
        pool::update_all(work32);
        pool::update_all(work64);
        write_back(&mut flat32);
        write_back(&mut flat64);
        Ok::<(), Error>(())
    })?;
    Ok(())
}
