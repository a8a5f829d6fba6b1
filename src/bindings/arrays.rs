//! Borrowing the arrays of a step and seeing each as a flat slice.
//!
//! Everything here runs with the GIL held and before any array is written:
//! a dtype, shape, read-only or overlap problem is reported while every
//! parameter and state array is still untouched.

use ndarray::{ArrayViewD, ArrayViewMutD};
use numpy::{BorrowError, Element, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyReadwriteArrayDyn};
use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyType};

use crate::error::Error;
use crate::kernels::Real;

/// The arrays of one param group handed to a step, extracted from the group's dict.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct Tensors<'py> {
    /// Index of the group in `param_groups`, for messages.
    pub group: usize,
    /// Index of each tensor in the group's `params`, for messages.
    pub index: Vec<usize>,
    /// Parameters, updated in place.
    pub params: Vec<Bound<'py, PyAny>>,
    /// Gradients, read only.
    pub grads: Vec<Bound<'py, PyAny>>,
    /// Per tensor, its state dict: the arrays of the slots in use are read from it by
    /// name (`opt.state[p]` itself, or the private copy of a step that creates state).
    pub state: Vec<Bound<'py, PyDict>>,
    /// The algorithm's state slots, each by name where the group's settings use it and
    /// `None` where they do not.
    pub slots: Vec<Option<Bound<'py, PyString>>>,
    /// How the state is stored: `"bfloat16"` for bfloat16 bits in uint16 arrays,
    /// anything else (or none) in the parameter's dtype.
    #[pyo3(default)]
    pub state_dtype: Option<String>,
    /// Seed of the stochastic rounding of bfloat16 state (read by [`Tensors::seed`]
    /// only for such state: a group whose state is not bfloat16 does not use it).
    #[pyo3(default)]
    pub seed: Option<Bound<'py, PyAny>>,
    /// With bfloat16 state, per tensor: its step number and its parameter's position
    /// in the optimizer, which with `seed` key its rounding streams.
    #[pyo3(default)]
    pub rounding: Vec<(u64, u64)>,
}

impl Tensors<'_> {
    /// Whether the group keeps its state as bfloat16.
    pub fn bf16(&self) -> bool {
        self.state_dtype.as_deref() == Some(BF16)
    }

    /// The group's `seed` (absent or `None`: 0); anything but an int in `[0, 2**64)` is
    /// a `ValueError` naming the group.
    pub fn seed(&self) -> Result<u64, Error> {
        match &self.seed {
            Some(seed) if !seed.is_none() => seed.extract::<u64>().map_err(|_| {
                Error::Malformed(format!(
                    "param_groups[{}]: Invalid seed value: {seed} (must be an int in [0, 2**64))",
                    self.group
                ))
            }),
            _ => Ok(0),
        }
    }
}

/// The `state_dtype` of groups whose state is stored as bfloat16 bits.
pub const BF16: &str = "bfloat16";

/// Where a tensor sits in the optimizer, for messages.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    group: usize,
    index: usize,
}

impl Site {
    /// The parameter, as the user knows it: `param_groups[g]['params'][i]`.
    pub fn param(self) -> String {
        format!("param_groups[{}]['params'][{}]", self.group, self.index)
    }
    fn grad(self) -> String {
        format!("the gradient of {}", self.param())
    }
    fn state(self, name: &str) -> String {
        format!("state '{name}' of {}", self.param())
    }
}

/// Where one tensor's data sits: in the step's lists, and in the optimizer.
#[derive(Clone, Copy, Debug)]
pub struct At {
    /// Position of the group in the list passed to the step.
    pub slot: usize,
    /// Position of the tensor within that group's lists.
    pub position: usize,
    /// The tensor in the optimizer, for messages.
    pub site: Site,
    /// With bfloat16 state: the seed, step number and parameter position of its
    /// rounding streams (see [`crate::kernels::state`]).
    pub rounding: Option<(u64, u64, u64)>,
}

/// The most state slots an algorithm has (Adam's and RMSprop's three).
pub const MAX_SLOTS: usize = 3;

/// One tensor's state, slot by slot (`None` for a slot not in use, and past the
/// algorithm's slots): a fixed array, so a step allocates nothing per tensor for it.
pub type SlotArray<X> = [Option<X>; MAX_SLOTS];

/// `a` with its results taken out: the first error, else every value.
fn transposed<X, E>(a: SlotArray<Result<X, E>>) -> Result<SlotArray<X>, E> {
    let mut out = SlotArray::default();
    for (o, r) in out.iter_mut().zip(a) {
        *o = r.transpose()?;
    }
    Ok(out)
}

/// One tensor's arrays, type-checked and borrowed; its state is stored as `S`.
pub struct Borrowed<'py, T: Element, S: Element = T> {
    at: At,
    param: PyReadwriteArrayDyn<'py, T>,
    grad: PyReadonlyArrayDyn<'py, T>,
    state: SlotArray<PyReadwriteArrayDyn<'py, S>>,
}

/// The borrowed tensors of a step, split by dtype.
pub struct Batch<'py> {
    /// float32 tensors.
    pub f32: Vec<Borrowed<'py, f32>>,
    /// float64 tensors.
    pub f64: Vec<Borrowed<'py, f64>>,
    /// float32 tensors whose state is bfloat16 bits.
    pub bf16: Vec<Borrowed<'py, f32, u16>>,
}

/// Refuses a `numpy.ma.MaskedArray` (an ndarray subclass, so the casts below accept it):
/// the kernels would ignore its mask. A plain ndarray costs one type comparison.
pub(crate) fn unmasked(obj: &Bound<'_, PyAny>, what: impl Fn() -> String) -> Result<(), Error> {
    static MASKED_ARRAY: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    if obj.is_exact_instance_of::<PyUntypedArray>() {
        return Ok(());
    }
    let masked = MASKED_ARRAY.import(obj.py(), "numpy.ma", "MaskedArray");
    if masked.is_ok_and(|t| obj.is_instance(t).unwrap_or(false)) {
        return Err(Error::Masked { what: what() });
    }
    Ok(())
}

pub(crate) fn dtype_name(obj: &Bound<'_, PyAny>) -> Option<String> {
    obj.cast::<PyUntypedArray>().ok().map(|a| a.dtype().to_string())
}

fn typed<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    expected: &'static str,
    what: impl Fn() -> String,
) -> Result<Bound<'py, PyArrayDyn<T>>, Error> {
    unmasked(obj, &what)?;
    match obj.cast::<PyArrayDyn<T>>() {
        Ok(a) => Ok(a.clone()),
        Err(_) => Err(match dtype_name(obj) {
            Some(found) => Error::Dtype { what: what(), found, expected },
            None => Error::NotAnArray { what: what(), found: type_name(obj) },
        }),
    }
}

/// The name of `obj`'s type, for error messages; a torch type with its module and a pointer
/// to `ferroptim.torch`, whose optimizers take tensors.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    let kind = obj.get_type();
    let name = kind.name().map_or_else(|_| "an unknown type".to_owned(), |n| n.to_string());
    match kind.module() {
        Ok(module) if module.to_string().split('.').next() == Some("torch") => {
            format!("{module}.{name} (for torch tensors use ferroptim.torch's optimizers)")
        }
        _ => name,
    }
}

fn same_shape<T: Element>(
    a: &Bound<'_, PyArrayDyn<T>>,
    expected: &[usize],
    what: impl Fn() -> String,
) -> Result<(), Error> {
    if a.shape() == expected {
        Ok(())
    } else {
        Err(Error::Shape { what: what(), found: a.shape().to_vec(), expected: expected.to_vec() })
    }
}

/// The most dimensions rust-numpy can view (NumPy 2 allows 64).
const MAX_DIMS: usize = 32;

/// Whether distinct indices of an array can reach the same memory. The test is
/// sufficient, not exact: with axes sorted by stride, each stride must step over
/// everything the smaller axes span. Every layout NumPy slicing produces passes.
fn may_self_overlap(shape: &[usize], strides: &[isize], itemsize: usize) -> bool {
    if shape.contains(&0) {
        return false;
    }
    let mut axes: Vec<(usize, usize)> =
        shape.iter().zip(strides).filter(|(&n, _)| n > 1).map(|(&n, &s)| (s.unsigned_abs(), n)).collect();
    axes.sort_unstable();
    let mut span = itemsize;
    for (stride, n) in axes {
        if stride < span {
            return true;
        }
        span += stride * (n - 1);
    }
    false
}

/// An array the kernels cannot address element by element: misaligned (its strides
/// or start are not multiples of the element size), too many dimensions, or, when
/// it is written, with elements that share memory with each other.
pub(crate) fn check_layout(
    a: &Bound<'_, PyUntypedArray>,
    written: bool,
    what: impl Fn() -> String,
) -> Result<(), Error> {
    let problem = if !a.is_aligned() {
        "is not aligned (its start or strides are not multiples of its element size, as in a \
         field of a packed structured array); pass an aligned copy"
    } else if a.ndim() > MAX_DIMS {
        "has more than 32 dimensions; reshape it"
    } else if written && !a.is_contiguous() && may_self_overlap(a.shape(), a.strides(), a.dtype().itemsize())
    {
        "has elements that share memory with each other (a zero or overlapping stride, as from \
         np.broadcast_to or as_strided), so an update could not be stored; pass a copy"
    } else {
        return Ok(());
    };
    Err(Error::Layout { what: what(), problem })
}

pub(crate) fn writable<'py, T: Element>(
    a: &Bound<'py, PyArrayDyn<T>>,
    what: impl Fn() -> String,
    refused: &mut Option<Refused<'py>>,
) -> Result<PyReadwriteArrayDyn<'py, T>, Error> {
    a.try_readwrite().map_err(|e| match e {
        BorrowError::NotWriteable => Error::ReadOnly { what: what() },
        _ => Refused::record(refused, a.as_any(), true, what()),
    })
}

pub(crate) fn readable<'py, T: Element>(
    a: &Bound<'py, PyArrayDyn<T>>,
    what: impl Fn() -> String,
    refused: &mut Option<Refused<'py>>,
) -> Result<PyReadonlyArrayDyn<'py, T>, Error> {
    a.try_readonly().map_err(|_| Refused::record(refused, a.as_any(), false, what()))
}

/// An array whose borrow rust-numpy's tracker refused: it shares memory with an array
/// this call already borrowed, or another call running in another thread holds it. Which
/// one, [`borrowing`] asks once this call's borrows are released.
pub(crate) struct Refused<'py> {
    array: Bound<'py, PyAny>,
    write: bool,
    what: String,
}

impl<'py> Refused<'py> {
    /// Keeps the refused array in `refused`; the error to raise unless another call holds it.
    fn record(refused: &mut Option<Self>, array: &Bound<'py, PyAny>, write: bool, what: String) -> Error {
        *refused = Some(Self { array: array.clone(), write, what: what.clone() });
        Error::Overlap { what }
    }

    /// Whether the tracker refuses the array alone, so that another call holds it.
    fn held_elsewhere(&self) -> bool {
        fn alone<T: Element>(a: &Bound<'_, PyAny>, write: bool) -> Option<bool> {
            let a = a.cast::<PyArrayDyn<T>>().ok()?;
            Some(if write { a.try_readwrite().is_err() } else { a.try_readonly().is_err() })
        }
        let (a, write) = (&self.array, self.write);
        alone::<f32>(a, write).or_else(|| alone::<f64>(a, write)).or_else(|| alone::<u16>(a, write))
            == Some(true)
    }
}

/// Runs `borrow`, which borrows a call's arrays with [`writable`] and [`readable`]. When
/// the tracker refused one, its verdict is asked again for that array alone after
/// `borrow` returned (so this call's own borrows are released): refused again, the array
/// is in use by another call ([`Error::InUse`]); else it shares memory with another array
/// of this call (the [`Error::Overlap`] `borrow` raised).
pub(crate) fn borrowing<'py, R>(
    borrow: impl FnOnce(&mut Option<Refused<'py>>) -> PyResult<R>,
) -> PyResult<R> {
    let mut refused = None;
    borrow(&mut refused).map_err(|err| match refused {
        Some(r) if r.held_elsewhere() => Error::InUse { what: r.what }.into(),
        _ => err,
    })
}

/// What the state arrays of a plain group must be.
const SAME_DTYPE: &str = "the parameter's dtype";
/// What the state arrays of a group with bfloat16 state must be.
const BF16_BITS: &str = "uint16 (bfloat16 bits, as the group's state_dtype is 'bfloat16')";

/// Whether `slots` (a group's, see [`Tensors::slots`]) names the algorithm's slots
/// `names` in order, with `None` for any not in use.
fn slots_match(slots: &[Option<Bound<'_, PyString>>], names: &[&str]) -> bool {
    slots.len() == names.len()
        && names.len() <= MAX_SLOTS
        && slots.iter().zip(names).all(|(s, name)| s.as_ref().is_none_or(|s| *s == *name))
}

fn borrow_tensor<'py, T: Element, S: Element>(
    (names, slots, state_dtype): (&[&'static str], &[Option<Bound<'py, PyString>>], &'static str),
    at: At,
    param: &Bound<'py, PyArrayDyn<T>>,
    grad: &Bound<'py, PyAny>,
    state: &Bound<'py, PyDict>,
    refused: &mut Option<Refused<'py>>,
) -> PyResult<Borrowed<'py, T, S>> {
    let site = at.site;
    let shape = param.shape();
    check_layout(param.as_untyped(), true, || site.param())?;
    let grad = typed::<T>(grad, SAME_DTYPE, || site.grad())?;
    same_shape(&grad, shape, || site.grad())?;
    check_layout(grad.as_untyped(), false, || site.grad())?;
    let mut arrays: SlotArray<Bound<'py, PyArrayDyn<S>>> = SlotArray::default();
    for ((key, name), array) in slots.iter().zip(names).zip(&mut arrays) {
        let Some(key) = key else { continue };
        let s = match state.get_item(key)? {
            Some(s) if !s.is_none() => s,
            _ => return Err(Error::StateMissing { what: site.state(name) }.into()),
        };
        let s = typed::<S>(&s, state_dtype, || site.state(name))?;
        same_shape(&s, shape, || site.state(name))?;
        check_layout(s.as_untyped(), true, || site.state(name))?;
        *array = Some(s);
    }
    // Borrow only once every check passed; rust-numpy's borrow tracker then
    // catches any memory shared between arrays of this step.
    let param = writable(param, || site.param(), refused)?;
    let grad = readable(&grad, || site.grad(), refused)?;
    let mut names = names.iter();
    let mut state = SlotArray::default();
    for (borrowed, s) in state.iter_mut().zip(&arrays) {
        let name = names.next().copied().unwrap_or_default();
        if let Some(s) = s {
            *borrowed = Some(writable(s, || site.state(name), refused)?);
        }
    }
    Ok(Borrowed { at, param, grad, state })
}

impl<'py> Batch<'py> {
    /// Type-checks and borrows every tensor of every group. `names` are the
    /// algorithm's state slots; `bf16` says whether it can keep them as bfloat16.
    /// A state array that a group's settings use and its state dict lacks is an
    /// [`Error::StateMissing`].
    pub fn borrow(groups: &[Tensors<'py>], names: &[&'static str], bf16: bool) -> PyResult<Self> {
        borrowing(|refused| Self::borrow_all(groups, names, bf16, refused))
    }

    fn borrow_all(
        groups: &[Tensors<'py>],
        names: &[&'static str],
        bf16: bool,
        refused: &mut Option<Refused<'py>>,
    ) -> PyResult<Self> {
        let total = groups.iter().map(|t| t.params.len()).sum();
        let mut batch = Batch { f32: Vec::with_capacity(total), f64: Vec::new(), bf16: Vec::new() };
        for (slot, t) in groups.iter().enumerate() {
            let n = t.params.len();
            if t.grads.len() != n || t.state.len() != n || t.index.len() != n {
                return Err(Error::Malformed(format!(
                    "param_groups[{}]: {} params but {} gradients and {} state entries",
                    t.group,
                    n,
                    t.grads.len(),
                    t.state.len()
                ))
                .into());
            }
            if !slots_match(&t.slots, names) {
                return Err(Error::Malformed(format!(
                    "param_groups[{}]: the state slots in use must name the slots {} in order \
                     (None for one not in use), got {} entries",
                    t.group,
                    names.join(", "),
                    t.slots.len(),
                ))
                .into());
            }
            if t.bf16() && !bf16 {
                return Err(Error::Malformed(format!(
                    "param_groups[{}]: this optimizer cannot keep its state as bfloat16 \
                     (state_dtype='bfloat16' is for Adam, AdamW, SGD, Adagrad and RMSprop)",
                    t.group
                ))
                .into());
            }
            if t.bf16() && t.rounding.len() != n {
                return Err(Error::Malformed(format!(
                    "param_groups[{}]: {} params but {} rounding keys",
                    t.group,
                    n,
                    t.rounding.len()
                ))
                .into());
            }
            let seed = if t.bf16() { t.seed()? } else { 0 };
            for position in 0..n {
                let site = Site { group: t.group, index: t.index[position] };
                let (param, grad, state) = (&t.params[position], &t.grads[position], &t.state[position]);
                let rounding = t.bf16().then(|| (seed, t.rounding[position].0, t.rounding[position].1));
                let at = At { slot, position, site, rounding };
                unmasked(param, || site.param())?;
                if t.bf16() {
                    let p = param.cast::<PyArrayDyn<f32>>().map_err(|_| match dtype_name(param) {
                        Some(found) => Error::Dtype {
                            what: site.param(),
                            found,
                            expected: "float32 (the group's state_dtype is 'bfloat16')",
                        },
                        None => Error::NotAnArray { what: site.param(), found: type_name(param) },
                    })?;
                    batch.bf16.push(borrow_tensor(
                        (names, &t.slots, BF16_BITS),
                        at,
                        p,
                        grad,
                        state,
                        refused,
                    )?);
                } else if let Ok(p) = param.cast::<PyArrayDyn<f32>>() {
                    batch.f32.push(borrow_tensor(
                        (names, &t.slots, SAME_DTYPE),
                        at,
                        p,
                        grad,
                        state,
                        refused,
                    )?);
                } else if let Ok(p) = param.cast::<PyArrayDyn<f64>>() {
                    batch.f64.push(borrow_tensor(
                        (names, &t.slots, SAME_DTYPE),
                        at,
                        p,
                        grad,
                        state,
                        refused,
                    )?);
                } else {
                    return Err(match dtype_name(param) {
                        Some(found) => {
                            Error::Dtype { what: site.param(), found, expected: "float32 or float64" }
                        }
                        None => Error::NotAnArray { what: site.param(), found: type_name(param) },
                    }
                    .into());
                }
            }
        }
        Ok(batch)
    }
}

/// A writable array seen as a slice in the parameter's memory order: the
/// array's own memory when its layout allows, else a copy written back later.
pub enum Lane<'a, T> {
    /// The array's memory itself (the fast, zero-copy path).
    Direct(&'a mut [T]),
    /// A copy of an array with a different layout, and the view to write it back to.
    /// (Boxed: the rare case stays out of the size of every lane.)
    Staged(Box<(ArrayViewMutD<'a, T>, Vec<T>)>),
}

impl<'a, T: Copy> Lane<'a, T> {
    /// The array's memory when its layout is standard, else a copy.
    pub(crate) fn new(view: ArrayViewMutD<'a, T>) -> Self {
        if !view.is_standard_layout() {
            let copy = view.iter().copied().collect();
            return Lane::Staged(Box::new((view, copy)));
        }
        match view.into_slice() {
            Some(s) => Lane::Direct(s),
            // `into_slice` succeeds exactly for standard layouts, checked above.
            None => unreachable!("a standard-layout view is a slice"),
        }
    }

    /// The elements, in the tensor's canonical order.
    pub fn slice(&mut self) -> &mut [T] {
        match self {
            Lane::Direct(s) => s,
            Lane::Staged(staged) => &mut staged.1,
        }
    }

    /// The elements, read only.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Lane::Direct(s) => s,
            Lane::Staged(staged) => &staged.1,
        }
    }

    /// Copies a staged copy back into the user's array.
    pub fn write_back(&mut self) {
        if let Lane::Staged(staged) = self {
            let (view, copy) = &mut **staged;
            view.iter_mut().zip(copy.iter()).for_each(|(dst, &src)| *dst = src);
        }
    }
}

/// A read-only array as a slice in the parameter's memory order.
pub enum ReadLane<'a, T> {
    /// The array's memory itself.
    Direct(&'a [T]),
    /// A copy in the parameter's order.
    Copied(Vec<T>),
}

impl<'a, T: Real> ReadLane<'a, T> {
    pub(crate) fn new(view: ArrayViewD<'a, T>) -> Self {
        match view.to_slice() {
            Some(s) => ReadLane::Direct(s),
            None => ReadLane::Copied(view.iter().copied().collect()),
        }
    }

    /// The elements, in the tensor's canonical order.
    pub fn slice(&self) -> &[T] {
        match self {
            ReadLane::Direct(s) => s,
            ReadLane::Copied(v) => v,
        }
    }
}

/// One tensor's arrays, ready to become flat lanes without the GIL: slices already,
/// when every array is contiguous in the parameter's order (the usual case, and the
/// cheap one), else views whose axes are permuted into the parameter's memory order.
pub enum Views<'a, T, S = T> {
    /// Every array is contiguous in one order (C or F): its memory, as is.
    Slices(Flat<'a, T, S>),
    /// Some array has another layout: views in the parameter's memory order (boxed:
    /// the rare case stays out of the size of every tensor's views).
    Permuted(Box<Permuted<'a, T, S>>),
}

/// One tensor's arrays as views whose axes are permuted into the parameter's memory order.
pub struct Permuted<'a, T, S = T> {
    /// Where the tensor sits.
    at: At,
    /// The parameter.
    param: ArrayViewMutD<'a, T>,
    /// Its gradient.
    grad: ArrayViewD<'a, T>,
    /// Its state, slot by slot.
    state: SlotArray<ArrayViewMutD<'a, S>>,
}

/// One tensor's arrays as flat lanes that all index elements the same way.
pub struct Flat<'a, T, S = T> {
    /// Where the tensor sits.
    pub at: At,
    /// The parameter.
    pub param: Lane<'a, T>,
    /// Its gradient.
    pub grad: ReadLane<'a, T>,
    /// Its state, slot by slot.
    pub state: SlotArray<Lane<'a, S>>,
}

/// The axis order in which `strides` walk memory from the outermost axis in:
/// a C- or F-contiguous (or any transposed contiguous) parameter becomes
/// C-contiguous once its axes are permuted this way.
pub(crate) fn memory_axis_order(strides: &[isize]) -> Vec<usize> {
    let mut axes: Vec<usize> = (0..strides.len()).collect();
    axes.sort_by_key(|&a| std::cmp::Reverse(strides[a].unsigned_abs()));
    axes
}

/// Whether `a` is contiguous in C order (`c`) or in Fortran order (`!c`).
fn contiguous<T: Element>(a: &Bound<'_, PyArrayDyn<T>>, c: bool) -> bool {
    if c {
        a.is_c_contiguous()
    } else {
        a.is_fortran_contiguous()
    }
}

impl<'py, T: Real + Element, S: Element> Borrowed<'py, T, S> {
    /// Whether every array is contiguous in the same order as the parameter, so that
    /// equal indices are equal offsets and each array's memory is its lane.
    fn all_contiguous(&self) -> bool {
        [true, false].into_iter().any(|c| {
            contiguous(&self.param, c)
                && contiguous(&self.grad, c)
                && self.state.iter().flatten().all(|s| contiguous(s, c))
        })
    }

    /// Every array as a lane of the same element order: its own memory when all are
    /// contiguous alike, else views in the parameter's memory order, so that arrays
    /// laid out like the parameter still become plain slices.
    pub fn views(&mut self) -> Views<'_, T, S> {
        if self.all_contiguous() {
            let slices = (
                self.param.as_slice_mut(),
                self.grad.as_slice(),
                transposed(self.state.each_mut().map(|s| s.as_mut().map(|s| s.as_slice_mut()))),
            );
            return match slices {
                (Ok(param), Ok(grad), Ok(state)) => Views::Slices(Flat {
                    at: self.at,
                    param: Lane::Direct(param),
                    grad: ReadLane::Direct(grad),
                    state: state.map(|s| s.map(Lane::Direct)),
                }),
                // `as_slice` asks for exactly the contiguity checked above.
                _ => unreachable!("a contiguous array is a slice"),
            };
        }
        let axes = memory_axis_order(self.param.strides());
        let axes = axes.as_slice();
        Views::Permuted(Box::new(Permuted {
            at: self.at,
            param: self.param.as_array_mut().permuted_axes(axes),
            grad: self.grad.as_array().permuted_axes(axes),
            state: self.state.each_mut().map(|s| s.as_mut().map(|s| s.as_array_mut().permuted_axes(axes))),
        }))
    }
}

impl<'a, T: Real, S: Copy> Views<'a, T, S> {
    /// The arrays as flat lanes: in place when laid out like the parameter, else
    /// copied (matched by index). This is where odd layouts cost a copy, so it
    /// runs without the GIL.
    pub fn flat(self) -> Flat<'a, T, S> {
        match self {
            Views::Slices(flat) => flat,
            Views::Permuted(views) => {
                let Permuted { at, param, grad, state } = *views;
                Flat {
                    at,
                    param: Lane::new(param),
                    grad: ReadLane::new(grad),
                    state: state.map(|s| s.map(Lane::new)),
                }
            }
        }
    }
}

impl<T: Real, S: Copy> Flat<'_, T, S> {
    /// Copies staged copies back into the user's arrays.
    pub fn write_back(&mut self) {
        self.param.write_back();
        self.state.iter_mut().flatten().for_each(Lane::write_back);
    }
}

/// A step's views: float32, float64, and float32 with bfloat16 state.
pub type AllViews<'a> = (Vec<Views<'a, f32>>, Vec<Views<'a, f64>>, Vec<Views<'a, f32, u16>>);

impl<'py> Batch<'py> {
    /// Every tensor's views, by dtype and state storage.
    pub fn views(&mut self) -> AllViews<'_> {
        (
            self.f32.iter_mut().map(Borrowed::views).collect(),
            self.f64.iter_mut().map(Borrowed::views).collect(),
            self.bf16.iter_mut().map(Borrowed::views).collect(),
        )
    }
}

/// Every tensor as flat lanes.
pub fn flats<T: Real, S: Copy>(views: Vec<Views<'_, T, S>>) -> Vec<Flat<'_, T, S>> {
    views.into_iter().map(Views::flat).collect()
}

/// Copies every staged copy back into the user's arrays.
pub fn write_back<T: Real, S: Copy>(flats: &mut [Flat<'_, T, S>]) {
    flats.iter_mut().for_each(Flat::write_back);
}

/// Checks the parameters of an optimizer as a step will: each must be laid out so
/// the kernels can address it (see [`check_layout`]), and rust-numpy's borrow tracker
/// must let all be borrowed mutably together. Returns the position of the first
/// array the tracker refuses, for the Python layer to word, or `None`; an array that a
/// call running in another thread holds is an [`Error::InUse`].
///
/// The tracker is conservative: two views whose elements interleave in memory
/// (column blocks of one matrix) count as overlapping. Asking it at construction
/// refuses such parameters there, with the verdict a step would give.
#[pyfunction]
pub fn check_params(arrays: Vec<Bound<'_, PyAny>>, names: Vec<String>) -> PyResult<Option<usize>> {
    fn hold<'py, T: Element>(
        a: &Bound<'py, PyArrayDyn<T>>,
        guards: &mut Vec<PyReadwriteArrayDyn<'py, T>>,
    ) -> bool {
        match a.try_readwrite() {
            Ok(guard) => {
                guards.push(guard);
                true
            }
            Err(e) => !matches!(e, BorrowError::AlreadyBorrowed),
        }
    }
    let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| format!("parameter {i}"));
    for (i, a) in arrays.iter().enumerate() {
        unmasked(a, || name(i))?;
        if let Ok(a) = a.cast::<PyUntypedArray>() {
            check_layout(a, true, || name(i))?;
        }
    }
    let conflict = {
        let (mut f32s, mut f64s) = (Vec::new(), Vec::new());
        arrays.iter().position(|a| {
            let ok = if let Ok(a) = a.cast::<PyArrayDyn<f32>>() {
                hold(a, &mut f32s)
            } else if let Ok(a) = a.cast::<PyArrayDyn<f64>>() {
                hold(a, &mut f64s)
            } else {
                true
            };
            !ok
        })
    };
    // The guards are released: an array refused alone is held by a call in another thread.
    if let Some(i) = conflict {
        let refused = Refused { array: arrays[i].clone(), write: true, what: name(i) };
        if refused.held_elsewhere() {
            return Err(Error::InUse { what: refused.what }.into());
        }
    }
    Ok(conflict)
}

#[cfg(test)]
mod tests {
    use super::{may_self_overlap, memory_axis_order};

    #[test]
    fn memory_axis_order_is_outermost_first() {
        assert_eq!(memory_axis_order(&[32, 8]), vec![0, 1]);
        assert_eq!(memory_axis_order(&[8, 40]), vec![1, 0]);
        assert_eq!(memory_axis_order(&[-64, 16]), vec![0, 1]);
        assert_eq!(memory_axis_order(&[8, 96, 32]), vec![1, 2, 0]);
    }

    #[test]
    fn self_overlap_is_found_for_broadcast_and_windowed_layouts() {
        assert!(!may_self_overlap(&[3, 4], &[32, 8], 8)); // C order
        assert!(!may_self_overlap(&[3, 4], &[8, 24], 8)); // F order
        assert!(!may_self_overlap(&[2, 2], &[-64, 16], 8)); // reversed, strided
        assert!(!may_self_overlap(&[5, 1], &[8, 0], 8)); // size-1 axes do not matter
        assert!(!may_self_overlap(&[0, 3], &[0, 0], 8)); // no elements
        assert!(may_self_overlap(&[4], &[0], 8)); // np.broadcast_to
        assert!(may_self_overlap(&[3, 4], &[16, 8], 8)); // overlapping windows
        assert!(may_self_overlap(&[3], &[4], 8)); // stride below the element size
    }
}
