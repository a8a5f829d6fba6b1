//! How steps run: `set_num_threads` / `get_num_threads`, and the SIMD level.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::sampler::{non_negative, Int};
use crate::{pool, simd};

/// Sets the number of threads every following step runs on.
#[pyfunction]
pub fn set_num_threads(threads: Int) -> PyResult<()> {
    let threads: usize = non_negative("num_threads", threads, 1)?;
    pool::set_num_threads(threads);
    Ok(())
}

/// The number of threads steps run on: `set_num_threads`, else the environment
/// variable `FERROPTIM_NUM_THREADS`, else the number of physical cores.
#[pyfunction]
pub fn get_num_threads() -> usize {
    pool::num_threads()
}

/// The instruction set the kernels run with: `"avx512"`, `"avx2"` or `"baseline"`.
#[pyfunction]
pub fn get_simd_level() -> &'static str {
    simd::level().name()
}

/// Caps the instruction set the kernels run with (`"avx512"`, `"avx2"` or
/// `"baseline"`) and returns the level now used, which is never above what the CPU
/// supports. Every level gives the same bits; this exists for benchmarks.
#[pyfunction]
pub fn set_simd_level(level: &str) -> PyResult<&'static str> {
    let cap = simd::parse(level).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown SIMD level {level:?}: expected 'avx512', 'avx2' or 'baseline'"
        ))
    })?;
    Ok(simd::set_level(cap).name())
}
