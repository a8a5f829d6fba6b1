//! `MinibatchSampler`: the epochs of `crate::sampler` as a Python iterable of index arrays.

use numpy::PyArray1;
use pyo3::exceptions::{PyMemoryError, PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::sampler;

/// A seeded, reproducible random partition of `range(m)` into minibatches, one
/// fresh permutation per epoch (the lecture's `Λ_k`).
#[pyclass(module = "ferroptim._core")]
pub struct MinibatchSampler {
    m: usize,
    batch_size: usize,
    seed: u64,
    drop_last: bool,
    epoch: u64,
}

/// An integer argument; one too large for an `i128` is kept as its decimal text, so that
/// [`non_negative`] refuses it with a `ValueError` naming the argument (not pyo3's
/// `OverflowError`).
pub struct Int(Result<i128, String>);

impl<'a, 'py> FromPyObject<'a, 'py> for Int {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<i128>() {
            Ok(number) => Ok(Self(Ok(number))),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Ok(Self(Err(obj.str()?.to_string()))),
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn non_negative<T: TryFrom<i128>>(name: &str, value: Int, at_least: i128) -> PyResult<T> {
    let fits = value.0.as_ref().ok().and_then(|&n| T::try_from(n).ok().filter(|_| n >= at_least));
    fits.ok_or_else(|| {
        let value = value.0.map_or_else(|text| text, |n| n.to_string());
        PyValueError::new_err(format!(
            "{name} must be an integer >= {at_least} that fits in 64 bits, got {value}"
        ))
    })
}

#[pymethods]
impl MinibatchSampler {
    #[new]
    #[pyo3(signature = (m, batch_size, seed = Int(Ok(0)), drop_last = false))]
    #[pyo3(text_signature = "(m, batch_size, seed=0, drop_last=False)")]
    fn new(m: Int, batch_size: Int, seed: Int, drop_last: bool) -> PyResult<Self> {
        Ok(Self {
            m: non_negative("m", m, 0)?,
            batch_size: non_negative("batch_size", batch_size, 1)?,
            seed: non_negative("seed", seed, 0)?,
            drop_last,
            epoch: 0,
        })
    }

    /// The number of samples `m` that each epoch partitions.
    #[getter]
    fn m(&self) -> usize {
        self.m
    }

    /// The size of every minibatch but possibly the last.
    #[getter]
    fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The seed that, with the epoch number, fixes every permutation.
    #[getter]
    fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether an epoch's last, smaller minibatch is dropped.
    #[getter]
    fn drop_last(&self) -> bool {
        self.drop_last
    }

    /// The epoch the next `iter()` draws; it counts up by one per `iter()`.
    #[getter]
    fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Makes the next `iter()` draw epoch `epoch` (as torch's `DistributedSampler.set_epoch`).
    fn set_epoch(&mut self, epoch: Int) -> PyResult<()> {
        self.epoch = non_negative("epoch", epoch, 0)?;
        Ok(())
    }

    /// The permutation of `range(m)` that epoch `epoch` visits, batch after batch.
    fn permutation<'py>(&self, py: Python<'py>, epoch: Int) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let order = draw(self.m, self.seed, non_negative("epoch", epoch, 0)?)?;
        Ok(PyArray1::from_vec(py, order))
    }

    /// The minibatches per epoch.
    fn __len__(&self) -> usize {
        sampler::batches(self.m, self.batch_size, self.drop_last)
    }

    /// The next epoch's minibatches, as int64 index arrays.
    fn __iter__(&mut self) -> PyResult<Batches> {
        let order = draw(self.m, self.seed, self.epoch)?;
        self.epoch += 1;
        let count = sampler::batches(self.m, self.batch_size, self.drop_last);
        Ok(Batches { order, batch_size: self.batch_size, next: 0, count })
    }

    fn __repr__(&self) -> String {
        format!(
            "MinibatchSampler(m={}, batch_size={}, seed={}, drop_last={}) at epoch {}",
            self.m,
            self.batch_size,
            self.seed,
            if self.drop_last { "True" } else { "False" },
            self.epoch
        )
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let this = slf.borrow();
        let args = (this.m, this.batch_size, this.seed, this.drop_last);
        (slf.get_type(), args, this.epoch).into_pyobject(slf.py())
    }

    fn __setstate__(&mut self, epoch: Int) -> PyResult<()> {
        self.set_epoch(epoch)
    }
}

fn draw(m: usize, seed: u64, epoch: u64) -> PyResult<Vec<i64>> {
    sampler::permutation(m, seed, epoch)
        .ok_or_else(|| PyMemoryError::new_err(format!("cannot allocate a permutation of {m} indices")))
}

/// One epoch of a `MinibatchSampler`: its minibatches in order.
#[pyclass(module = "ferroptim._core")]
pub struct Batches {
    order: Vec<i64>,
    batch_size: usize,
    next: usize,
    count: usize,
}

#[pymethods]
impl Batches {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyArray1<i64>>> {
        if self.next >= self.count {
            return None;
        }
        let start = self.next * self.batch_size;
        let end = self.order.len().min(start + self.batch_size);
        self.next += 1;
        self.order.get(start..end).map(|batch| PyArray1::from_slice(py, batch))
    }

    /// The minibatches left in this epoch.
    fn __len__(&self) -> usize {
        self.count - self.next
    }
}
