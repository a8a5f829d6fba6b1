//! `set_num_threads` / `get_num_threads`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::pool;

/// Sets the number of threads every following step runs on.
#[pyfunction]
pub fn set_num_threads(threads: i64) -> PyResult<()> {
    let threads = usize::try_from(threads).ok().filter(|&n| n >= 1).ok_or_else(|| {
        PyValueError::new_err(format!("num_threads must be a positive integer, got {threads}"))
    })?;
    pool::set_num_threads(threads);
    Ok(())
}

/// The number of threads steps run on: `set_num_threads`, else the environment
/// variable `FERROPTIM_NUM_THREADS`, else the number of available cores.
#[pyfunction]
pub fn get_num_threads() -> usize {
    pool::num_threads()
}
