//! The Python-facing functions: extract and validate with the GIL, then run the
//! kernels with it released. The only place Python types appear.

pub mod arrays;
pub mod optimizers;
pub mod threads;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::Error;
use crate::kernels::{Real, Update};
use crate::pool;
use arrays::{write_back, Batch, Flat, Tensors};

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
    names: &[&str],
    hypers: &'a [K],
    groups: &[Tensors<'_>],
    flats: &'a mut [Flat<'_, T>],
) -> Result<Vec<K::Tensor<'a, T>>, Error> {
    flats
        .iter_mut()
        .map(|f| {
            let (slot, position) = (f.slot, f.position);
            let state = f.state.iter_mut().map(|s| s.as_mut().map(|s| s.slice())).collect();
            hypers[slot].tensor(position, f.param.slice(), f.grad.slice(), state).ok_or_else(|| {
                Error::Malformed(format!(
                    "param_groups[{}]['params'][{}] is missing state its settings need (slots {})",
                    groups[slot].group,
                    groups[slot].index[position],
                    names.join(", ")
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

/// One optimizer step over every group: all checks first, then one GIL-free
/// parallel region per dtype.
pub fn step<K: Kernel>(py: Python<'_>, groups: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
    let (hypers, tensors) = extract_groups(&groups, K::extract)?;
    let mut batch = Batch::borrow(&tensors, K::STATE)?;
    let (mut flat32, mut flat64) = batch.flats();
    {
        let work32 = work(K::STATE, &hypers, &tensors, &mut flat32)?;
        let work64 = work(K::STATE, &hypers, &tensors, &mut flat64)?;
        py.detach(|| {
            pool::update_all(work32);
            pool::update_all(work64);
        });
    }
    write_back(&mut flat32);
    write_back(&mut flat64);
    Ok(())
}
