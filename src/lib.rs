//! ferroptim: deep-learning optimizers as Rust kernels that update NumPy arrays in place.
//!
//! `kernels` is the pure math, `pool` the parallel scheduler, `bindings` the
//! Python boundary; this file only declares the extension module.

pub mod bindings;
pub mod error;
pub mod kernels;
pub mod pool;
pub mod sampler;

use pyo3::prelude::*;

/// The compiled core of ferroptim: one step function per algorithm, the minibatch sampler, and thread settings.
#[pymodule]
mod _core {
    #[pymodule_export]
    use crate::bindings::arrays::check_params;
    #[pymodule_export]
    use crate::bindings::optimizers::{
        adadelta_step, adagrad_norm_step, adagrad_step, adam_step, rmsprop_step, sgd_step,
    };
    #[pymodule_export]
    use crate::bindings::sampler::{Batches, MinibatchSampler};
    #[pymodule_export]
    use crate::bindings::stream::stream_axpy;
    #[pymodule_export]
    use crate::bindings::threads::{get_num_threads, set_num_threads};
}
