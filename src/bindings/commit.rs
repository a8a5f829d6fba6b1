//! The bookkeeping of a step, written by the native call that ran its kernel.
//!
//! A step changes more than its arrays: `step` counters, new state dicts, NAdam's
//! `mu_product`, AdaGrad-Norm's `b_sq`, the optimizer's `last_step_skipped`. Python
//! prepares all of it beforehand, without changing anything, as a [`Commit`]; the step
//! function writes it once the kernel succeeded, with the GIL re-acquired and before it
//! returns. An asynchronous exception (Ctrl-C's `KeyboardInterrupt`, any signal handler
//! that raises, a `sys.settrace` function that raises) is raised only between two
//! bytecodes of Python code, and none runs inside this call: a step is therefore seen
//! either not at all or whole. The same call without a kernel ([`commit`]) makes the
//! multi-object changes of `load_state_dict` and `add_param_group` one step as well.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

/// A Python object.
type Object<'py> = Bound<'py, PyAny>;
/// A Python dict.
type Dict<'py> = Bound<'py, PyDict>;

/// Writes into Python dicts and lists, made in this order by [`Commit::apply`]; from a
/// dict with any of these keys (typed as `_Commit` in `_core.pyi`).
#[derive(Default)]
pub struct Commit<'py> {
    /// `(mapping, key, value)`: `mapping[key] = value` (a new state's entry in
    /// `opt.state`, an attribute in the optimizer's `__dict__`).
    pub set: Vec<(Dict<'py>, Object<'py>, Object<'py>)>,
    /// `(state, contents)`: `state.clear(); state.update(contents)`, so that a state dict
    /// the user holds stays the parameter's state.
    pub replace: Vec<(Dict<'py>, Dict<'py>)>,
    /// `(states, key, values)`: `states[i][key] = values[i]` for every `i` (the `step`
    /// counters of the states a step updated in place).
    pub column: Vec<(Vec<Dict<'py>>, Object<'py>, Vec<Object<'py>>)>,
    /// `(list, items)`: `list[:] = items` (`param_groups`).
    pub splice: Vec<(Bound<'py, PyList>, Bound<'py, PyList>)>,
}

impl<'py> FromPyObject<'_, 'py> for Commit<'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        let dict = obj.cast::<PyDict>()?;
        fn entry<'py, T: FromPyObjectOwned<'py> + Default>(
            dict: &Bound<'py, PyDict>,
            key: &Bound<'py, PyString>,
        ) -> PyResult<T> {
            dict.get_item(key)?.map_or_else(|| Ok(T::default()), |v| v.extract().map_err(Into::into))
        }
        let py = obj.py();
        Ok(Self {
            set: entry(&dict, pyo3::intern!(py, "set"))?,
            replace: entry(&dict, pyo3::intern!(py, "replace"))?,
            column: entry(&dict, pyo3::intern!(py, "column"))?,
            splice: entry(&dict, pyo3::intern!(py, "splice"))?,
        })
    }
}

impl Commit<'_> {
    /// Raises, before anything is written, for what [`Commit::apply`] could not do
    /// whole: an unhashable key, a column whose lists differ in length.
    pub fn check(&self) -> PyResult<()> {
        for (_, key, _) in &self.set {
            key.hash()?;
        }
        for (states, key, values) in &self.column {
            key.hash()?;
            if states.len() != values.len() {
                return Err(PyValueError::new_err(format!(
                    "commit: {} states but {} values",
                    states.len(),
                    values.len()
                )));
            }
        }
        Ok(())
    }

    /// Makes every write; runs no Python code (the keys were hashed by [`Commit::check`]).
    pub fn apply(&self) -> PyResult<()> {
        for (mapping, key, value) in &self.set {
            mapping.set_item(key, value)?;
        }
        for (state, contents) in &self.replace {
            if state.is(contents) {
                continue; // already its own contents; clearing it first would lose them
            }
            state.clear();
            state.update(contents.as_mapping())?;
        }
        for (states, key, values) in &self.column {
            for (state, value) in states.iter().zip(values) {
                state.set_item(key, value)?;
            }
        }
        for (list, items) in &self.splice {
            list.set_slice(0, list.len(), items)?;
        }
        Ok(())
    }
}

/// Makes the writes of `commit` in one native call: no Python code, so no asynchronous
/// exception, runs between the first and the last.
#[pyfunction]
pub fn commit(commit: Commit<'_>) -> PyResult<()> {
    commit.check()?;
    commit.apply()
}

/// Calls `function(*args, **kwargs)` holding `lock` (a `threading.Lock` or `RLock`), which
/// this native call acquires and releases itself. In Python, `with lock:` runs bytecode
/// between the body and `lock.__exit__` (a line event, a signal check), where an
/// asynchronous exception would leave the lock held; here nothing runs between them.
/// Acquiring waits with the GIL released, and a signal handler that raises meanwhile
/// leaves the lock free and `function` uncalled.
#[pyfunction]
#[pyo3(signature = (lock, function, /, *args, **kwargs))]
pub fn call_holding<'py>(
    lock: &Bound<'py, PyAny>,
    function: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = lock.py();
    lock.call_method0(intern!(py, "acquire"))?;
    let result = function.call(args, kwargs);
    let released = lock.call_method0(intern!(py, "release"));
    let value = result?;
    released?;
    Ok(value)
}
