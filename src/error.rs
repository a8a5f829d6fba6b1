//! The one error type of the binding layer, and its one conversion to a Python exception.

use std::fmt;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::{create_exception, PyErr};

create_exception!(
    _core,
    StateMissing,
    PyValueError,
    "A state array that the group's settings use is absent from its parameter's state dict \
     (or None). The Python layer then takes its general path, which creates the optional \
     buffers an option switched on mid-run needs, and names a missing required one."
);

/// Everything that can be wrong with the arrays handed to a step or a clipping function.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// An array that is not float32/float64, or whose dtype differs from its parameter's.
    Dtype {
        /// The array, as the user knows it.
        what: String,
        /// Its dtype.
        found: String,
        /// What it should be.
        expected: &'static str,
    },
    /// An object that is not a NumPy array at all.
    NotAnArray {
        /// The object, as the user knows it.
        what: String,
        /// Its Python type.
        found: String,
    },
    /// A gradient or state array whose shape differs from its parameter's.
    Shape {
        /// The array, as the user knows it.
        what: String,
        /// Its shape.
        found: Vec<usize>,
        /// The parameter's shape.
        expected: Vec<usize>,
    },
    /// A parameter or state array that NumPy marks read-only.
    ReadOnly {
        /// The array, as the user knows it.
        what: String,
    },
    /// A layout the kernels cannot address element by element.
    Layout {
        /// The array, as the user knows it.
        what: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Memory shared with another array of the same call.
    Overlap {
        /// The array, as the user knows it.
        what: String,
    },
    /// An array borrowed by another call running in another thread (another optimizer's
    /// step that shares it, a clipping function): rust-numpy's borrow tracker refuses it
    /// even alone.
    InUse {
        /// The array, as the user knows it.
        what: String,
    },
    /// A `numpy.ma.MaskedArray`, whose mask the kernels would ignore.
    Masked {
        /// The array, as the user knows it.
        what: String,
    },
    /// Lists of different lengths, or a malformed argument.
    Malformed(String),
    /// A state array the settings use that the parameter's state dict lacks.
    StateMissing {
        /// The state array, as the user knows it.
        what: String,
    },
    /// A gradient norm that is NaN or infinite where the caller asked for an error
    /// (torch's `error_if_nonfinite`); a `RuntimeError`, as torch raises.
    NonFiniteNorm {
        /// The order `p` of the norm.
        norm_type: f64,
    },
}

/// Why a `numpy.ma.MaskedArray` is refused (`ferroptim.parameter.MASKED` says the same).
pub const MASKED: &str = "is a numpy.ma.MaskedArray; masked arrays are not supported (the \
     kernels would ignore the mask, updating masked elements and reading their values); pass the \
     plain array, e.g. a.filled(0) or np.ma.getdata(a)";

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dtype { what, found, expected } => {
                write!(f, "{what} has dtype {found}, expected {expected}")
            }
            Self::NotAnArray { what, found } => write!(f, "{what} must be a numpy.ndarray, got {found}"),
            Self::Shape { what, found, expected } => {
                write!(f, "{what} has shape {found:?}, expected {expected:?} (the parameter's shape)")
            }
            Self::Layout { what, problem } => write!(f, "{what} {problem}"),
            Self::ReadOnly { what } => write!(f, "{what} is read-only (its WRITEABLE flag is off)"),
            Self::Overlap { what } => write!(
                f,
                "{what} shares memory with another parameter, gradient or state array of this step \
                 (or interleaves with one, as column blocks of one matrix do, which the borrow checker \
                 cannot prove disjoint); pass each array once and keep parameters, gradients and \
                 state in separate memory"
            ),
            Self::InUse { what } => write!(
                f,
                "{what} is in use by another call running in another thread (another optimizer's \
                 step that shares it, or a clipping function), which is writing or reading it; an \
                 array can be written by one call at a time: wait for that call to return"
            ),
            Self::Masked { what } => write!(f, "{what} {MASKED}"),
            Self::Malformed(msg) => f.write_str(msg),
            Self::StateMissing { what } => write!(f, "{what} is missing"),
            Self::NonFiniteNorm { norm_type } => write!(
                f,
                "The total norm of order {norm_type:?} for gradients from `parameters` is non-finite, \
                 so it cannot be clipped. To disable this error and scale the gradients by the \
                 non-finite norm anyway, set `error_if_nonfinite=False`"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for PyErr {
    fn from(err: Error) -> Self {
        match err {
            Error::Dtype { .. } | Error::NotAnArray { .. } | Error::Masked { .. } => {
                PyTypeError::new_err(err.to_string())
            }
            Error::NonFiniteNorm { .. } => PyRuntimeError::new_err(err.to_string()),
            Error::StateMissing { .. } => StateMissing::new_err(err.to_string()),
            _ => PyValueError::new_err(err.to_string()),
        }
    }
}
