//! ferroptim: deep-learning optimizers as Rust kernels that update NumPy arrays in place.
//!
//! `kernels` is the pure math, `pool` the parallel scheduler, `bindings` the
//! Python boundary; this file only declares the extension module.

pub mod bindings;
pub mod error;
pub mod kernels;
pub mod pool;
pub mod sampler;
pub mod simd;

use pyo3::prelude::*;

/// The compiled core of ferroptim: one step function per algorithm, gradient clipping,
/// the minibatch sampler, and thread and SIMD settings.
#[pymodule]
mod _core {
    #[pymodule_export]
    use crate::bindings::arrays::check_params;
    #[pymodule_export]
    use crate::bindings::clip::{
        clip_grad_norm, clip_grad_value, clip_grads_with_norm, grad_norm, grad_stats,
    };
    #[pymodule_export]
    use crate::bindings::commit::{call_holding, commit};
    #[pymodule_export]
    use crate::bindings::optimizers::{
        adadelta_step, adagrad_norm_step, adagrad_step, adam_step, adamax_step, lion_step, nadam_step,
        radam_step, rmsprop_step, sgd_step,
    };
    #[pymodule_export]
    use crate::bindings::sampler::{Batches, MinibatchSampler};
    #[pymodule_export]
    use crate::bindings::stream::stream_axpy;
    #[pymodule_export]
    use crate::bindings::threads::{get_num_threads, get_simd_level, set_num_threads, set_simd_level};
    #[pymodule_export]
    use crate::error::StateMissing;

    /// How a `numpy.ma.MaskedArray` is refused, after the array's name.
    #[pymodule_export]
    const MASKED: &str = crate::error::MASKED;
}
