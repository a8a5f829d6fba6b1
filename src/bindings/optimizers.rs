//! One `#[pyfunction]` per algorithm: each reads its group hyperparameters and
//! hands the tensors to the shared [`super::step`].

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::arrays::{flats, write_back, Batch, Flat, SlotArray};
use super::{step, GroupScale, Kernel};
use crate::error::Error;
use crate::kernels::adadelta::{AdadeltaHyper, AdadeltaTensor};
use crate::kernels::adagrad::{AdagradHyper, AdagradTensor};
use crate::kernels::adagrad_norm::{AdagradNormHyper, AdagradNormTensor, GradSquares};
use crate::kernels::adam::{AdamForm, AdamHyper, AdamTensor};
use crate::kernels::adamax::{AdamaxHyper, AdamaxTensor};
use crate::kernels::lion::{LionHyper, LionTensor};
use crate::kernels::nadam::{NadamHyper, NadamTensor};
use crate::kernels::radam::{RadamHyper, RadamTensor};
use crate::kernels::rmsprop::{RmspropHyper, RmspropTensor};
use crate::kernels::sgd::{SgdHyper, SgdTensor};
use crate::kernels::state::{Bf16, State};
use crate::kernels::{Chunk, GradScale, Real, ScaleGrad, Update};
use crate::pool;

/// `Kernel::tensor` and `Kernel::bf16_tensor` of a kernel whose tensor is generic over
/// its state storage (`crate::kernels::state`): both are its `with_state`, the second
/// wrapped in the `Bf16Tensor` variant named here.
macro_rules! storage_generic {
    ($variant:ident) => {
        fn tensor<'a, T: Real>(
            &'a self,
            position: usize,
            param: &'a mut [T],
            grad: &'a [T],
            state: SlotArray<&'a mut [T]>,
        ) -> Option<Self::Tensor<'a, T>> {
            self.with_state(position, param, grad, state)
        }

        const BF16: bool = true;

        fn bf16_tensor<'a>(
            &'a self,
            position: usize,
            param: &'a mut [f32],
            grad: &'a [f32],
            state: SlotArray<Bf16<'a>>,
        ) -> Option<Bf16Tensor<'a>> {
            self.with_state(position, param, grad, state).map(Bf16Tensor::$variant)
        }
    };
}

/// `group[key]`, converted; a missing key is a `KeyError` naming it. The key is
/// interned once per call site (`item!(group, "lr")`), so a step makes no strings.
pub(crate) fn item<'py, T: FromPyObjectOwned<'py>>(
    group: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
) -> PyResult<T> {
    let name = || key.to_str().unwrap_or("?").to_owned();
    let value = group
        .get_item(key)?
        .ok_or_else(|| PyKeyError::new_err(format!("param group has no '{}'", name())))?;
    value.extract::<T>().map_err(|e| {
        let (py, e): (_, PyErr) = (group.py(), e.into());
        if e.is_instance_of::<PyOverflowError>(py) {
            // an int such as 10**400 that no float holds: a bad value, as torch's checks word it
            return PyValueError::new_err(format!("'{}' does not fit in a float: {}", name(), e.value(py)));
        }
        PyErr::from_type(e.get_type(py), format!("'{}': {}", name(), e.value(py)))
    })
}

/// `item(group, key)` with `key` interned.
macro_rules! item {
    ($group:expr, $key:literal) => {
        item($group, pyo3::intern!($group.py(), $key))
    };
}

/// `group[key]`, converted, or `default` when the group has no such key (or `None`): the
/// settings of other frameworks' conventions, which a torch group (or state dict) lacks.
pub(crate) fn item_or<'py, T: FromPyObjectOwned<'py>>(
    group: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
    default: T,
) -> PyResult<T> {
    match group.get_item(key)? {
        Some(value) if !value.is_none() => item(group, key),
        _ => Ok(default),
    }
}

/// `item_or(group, key, default)` with `key` interned.
macro_rules! item_or {
    ($group:expr, $key:literal, $default:expr) => {
        item_or($group, pyo3::intern!($group.py(), $key), $default)
    };
}

/// The group's `convention` (absent: `"torch"`); an unknown name is a `ValueError`.
fn convention(group: &Bound<'_, PyDict>) -> PyResult<String> {
    let name: String = item_or!(group, "convention", "torch".to_owned())?;
    match name.as_str() {
        "torch" | "optax" | "keras" | "paper" => Ok(name),
        _ => Err(PyValueError::new_err(format!(
            "unknown convention {name:?} (expected 'torch', 'optax', 'keras' or 'paper')"
        ))),
    }
}

/// `group["betas"]` as `(beta1, beta2)`; anything but a pair is a `ValueError`.
fn betas(group: &Bound<'_, PyDict>) -> PyResult<(f64, f64)> {
    let betas: Vec<f64> = item!(group, "betas")?;
    let [beta1, beta2] = <[f64; 2]>::try_from(betas)
        .map_err(|b| PyValueError::new_err(format!("betas must be a pair, got {} values", b.len())))?;
    Ok((beta1, beta2))
}

/// The step of one tensor whose state is bfloat16, for the algorithms that offer it.
pub enum Bf16Tensor<'a> {
    /// SGD with momentum.
    Sgd(SgdTensor<'a, f32, Bf16<'a>>),
    /// AdaGrad.
    Adagrad(AdagradTensor<'a, f32, Bf16<'a>>),
    /// RMSprop.
    Rmsprop(RmspropTensor<'a, f32, Bf16<'a>>),
    /// Adam and AdamW.
    Adam(AdamTensor<'a, f32, Bf16<'a>>),
}

impl Chunk for Bf16Tensor<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Sgd(t) => t.len(),
            Self::Adagrad(t) => t.len(),
            Self::Rmsprop(t) => t.len(),
            Self::Adam(t) => t.len(),
        }
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        fn both<C, W>(pair: (C, C), wrap: fn(C) -> W) -> (W, W) {
            (wrap(pair.0), wrap(pair.1))
        }
        match self {
            Self::Sgd(t) => both(t.split_at(mid), Self::Sgd),
            Self::Adagrad(t) => both(t.split_at(mid), Self::Adagrad),
            Self::Rmsprop(t) => both(t.split_at(mid), Self::Rmsprop),
            Self::Adam(t) => both(t.split_at(mid), Self::Adam),
        }
    }
}

impl ScaleGrad<f32> for Bf16Tensor<'_> {
    fn scaled(self, scale: GradScale<f32>) -> Self {
        match self {
            Self::Sgd(t) => Self::Sgd(t.scaled(scale)),
            Self::Adagrad(t) => Self::Adagrad(t.scaled(scale)),
            Self::Rmsprop(t) => Self::Rmsprop(t.scaled(scale)),
            Self::Adam(t) => Self::Adam(t.scaled(scale)),
        }
    }
}

impl Update for Bf16Tensor<'_> {
    #[inline(always)]
    fn update(self) {
        match self {
            Self::Sgd(t) => t.update(),
            Self::Adagrad(t) => t.update(),
            Self::Rmsprop(t) => t.update(),
            Self::Adam(t) => t.update(),
        }
    }
}

/// SGD hyperparameters and, per tensor, whether its momentum buffer is new.
pub struct Sgd {
    h: SgdHyper,
    first: Vec<bool>,
}

impl Kernel for Sgd {
    const STATE: &'static [&'static str] = &["momentum_buffer"];
    type Tensor<'a, T: Real> = SgdTensor<'a, T>;

    fn extract(g: &Bound<'_, PyDict>) -> PyResult<Self> {
        let h = SgdHyper {
            lr: item!(g, "lr")?,
            momentum: item!(g, "momentum")?,
            dampening: item!(g, "dampening")?,
            weight_decay: item!(g, "weight_decay")?,
            nesterov: item!(g, "nesterov")?,
            maximize: item!(g, "maximize")?,
            lr_in_momentum: item_or!(g, "lr_in_momentum", false)?,
        };
        Ok(Self { h, first: item!(g, "first")? })
    }

    storage_generic!(Sgd);
}

impl Sgd {
    fn with_state<'a, T: Real, S: State<T>>(
        &'a self,
        position: usize,
        param: &'a mut [T],
        grad: &'a [T],
        state: SlotArray<S>,
    ) -> Option<SgdTensor<'a, T, S>> {
        let [momentum_buffer, None, None] = state else { return None };
        if (self.h.momentum != 0.0) != momentum_buffer.is_some() {
            return None;
        }
        let first = *self.first.get(position)?;
        Some(SgdTensor::with_state(&self.h, first, param, grad, momentum_buffer))
    }
}

/// AdaGrad hyperparameters and per-tensor step numbers.
pub struct Adagrad {
    h: AdagradHyper,
    step: Vec<f64>,
}

impl Kernel for Adagrad {
    const STATE: &'static [&'static str] = &["sum"];
    type Tensor<'a, T: Real> = AdagradTensor<'a, T>;

    fn extract(g: &Bound<'_, PyDict>) -> PyResult<Self> {
        let h = AdagradHyper {
            lr: item!(g, "lr")?,
            lr_decay: item!(g, "lr_decay")?,
            weight_decay: item!(g, "weight_decay")?,
            eps: item!(g, "eps")?,
            maximize: item!(g, "maximize")?,
            eps_in_sqrt: item_or!(g, "eps_in_sqrt", false)?,
        };
        Ok(Self { h, step: item!(g, "step")? })
    }

    storage_generic!(Adagrad);
}

impl Adagrad {
    fn with_state<'a, T: Real, S: State<T>>(
        &'a self,
        position: usize,
        param: &'a mut [T],
        grad: &'a [T],
        state: SlotArray<S>,
    ) -> Option<AdagradTensor<'a, T, S>> {
        let [sum, None, None] = state else { return None };
        Some(AdagradTensor::with_state(&self.h, *self.step.get(position)?, param, grad, sum?))
    }
}

/// RMSprop hyperparameters.
pub struct Rmsprop {
    h: RmspropHyper,
}

impl Kernel for Rmsprop {
    const STATE: &'static [&'static str] = &["square_avg", "grad_avg", "momentum_buffer"];
    type Tensor<'a, T: Real> = RmspropTensor<'a, T>;

    fn extract(g: &Bound<'_, PyDict>) -> PyResult<Self> {
        let h = RmspropHyper {
            lr: item!(g, "lr")?,
            alpha: item!(g, "alpha")?,
            eps: item!(g, "eps")?,
            weight_decay: item!(g, "weight_decay")?,
            momentum: item!(g, "momentum")?,
            centered: item!(g, "centered")?,
            maximize: item!(g, "maximize")?,
            eps_in_sqrt: item!(g, "eps_in_sqrt")?,
            lr_in_momentum: item_or!(g, "lr_in_momentum", false)?,
        };
        Ok(Self { h })
    }

    storage_generic!(Rmsprop);
}

impl Rmsprop {
    fn with_state<'a, T: Real, S: State<T>>(
        &'a self,
        _position: usize,
        param: &'a mut [T],
        grad: &'a [T],
        state: SlotArray<S>,
    ) -> Option<RmspropTensor<'a, T, S>> {
        let [square_avg, grad_avg, momentum_buffer] = state;
        if self.h.centered != grad_avg.is_some() || (self.h.momentum > 0.0) != momentum_buffer.is_some() {
            return None;
        }
        Some(RmspropTensor::with_state(&self.h, param, grad, square_avg?, grad_avg, momentum_buffer))
    }
}

/// AdaDelta hyperparameters.
pub struct Adadelta {
    h: AdadeltaHyper,
}

impl Kernel for Adadelta {
    const STATE: &'static [&'static str] = &["square_avg", "acc_delta"];
    type Tensor<'a, T: Real> = AdadeltaTensor<'a, T>;

    fn extract(g: &Bound<'_, PyDict>) -> PyResult<Self> {
        let h = AdadeltaHyper {
            lr: item!(g, "lr")?,
            rho: item!(g, "rho")?,
            eps: item!(g, "eps")?,
            weight_decay: item!(g, "weight_decay")?,
            maximize: item!(g, "maximize")?,
        };
        Ok(Self { h })
    }

    fn tensor<'a, T: Real>(
        &'a self,
        _position: usize,
        param: &'a mut [T],
        grad: &'a [T],
        state: SlotArray<&'a mut [T]>,
    ) -> Option<Self::Tensor<'a, T>> {
        let [square_avg, acc_delta, None] = state else { return None };
        Some(AdadeltaTensor::new(&self.h, param, grad, square_avg?, acc_delta?))
    }
}

/// Adam hyperparameters and per-tensor step numbers.
pub struct Adam {
    h: AdamHyper,
    step: Vec<f64>,
}

impl Kernel for Adam {
    const STATE: &'static [&'static str] = &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"];
    type Tensor<'a, T: Real> = AdamTensor<'a, T>;

    fn extract(g: &Bound<'_, PyDict>) -> PyResult<Self> {
        let (beta1, beta2) = betas(g)?;
        let h = AdamHyper {
            lr: item!(g, "lr")?,
            beta1,
            beta2,
            eps: item!(g, "eps")?,
            weight_decay: item!(g, "weight_decay")?,
            amsgrad: item!(g, "amsgrad")?,
            maximize: item!(g, "maximize")?,
            decoupled_weight_decay: item!(g, "decoupled_weight_decay")?,
            eps_root: item_or!(g, "eps_root", 0.0)?,
            form: AdamForm::Folded,
            amsgrad_max_corrected: false,
        };
        if h.eps_root.is_nan() || h.eps_root < 0.0 {
            return Err(PyValueError::new_err(format!("Invalid eps_root value: {}", h.eps_root)));
        }
        let eps_hat: bool = item_or!(g, "eps_hat", false)?;
        let corrected = match item_or!(g, "amsgrad_max", "v".to_owned())?.as_str() {
            "v" => false,
            "v_hat" => true,
            other => {
                return Err(PyValueError::new_err(format!(
                    "amsgrad_max must be 'v' or 'v_hat', got {other:?}"
                )))
            }
        };
        if eps_hat && corrected {
            return Err(PyValueError::new_err(
                "eps_hat (Keras) takes AMSGrad's maximum of the raw v: amsgrad_max must be 'v'",
            ));
        }
        // optax and Algorithm 1 divide m and v by their corrections elementwise; torch folds them
        let form = match (eps_hat, convention(g)?.as_str()) {
            (true, _) => AdamForm::EpsHat,
            (false, "optax" | "paper") => AdamForm::Explicit,
            _ => AdamForm::Folded,
        };
        let h = AdamHyper { form, amsgrad_max_corrected: corrected, ..h };
        Ok(Self { h, step: item!(g, "step")? })
    }

    storage_generic!(Adam);
}

impl Adam {
    fn with_state<'a, T: Real, S: State<T>>(
        &'a self,
        position: usize,
        param: &'a mut [T],
        grad: &'a [T],
        state: SlotArray<S>,
    ) -> Option<AdamTensor<'a, T, S>> {
        let [exp_avg, exp_avg_sq, max_exp_avg_sq] = state;
        if self.h.amsgrad != max_exp_avg_sq.is_some() {
            return None;
        }
        let step = *self.step.get(position)?;
        Some(AdamTensor::with_state(&self.h, step, param, grad, exp_avg?, exp_avg_sq?, max_exp_avg_sq))
    }
}

/// NAdam hyperparameters, per-tensor step numbers and running products of `mu`.
pub struct Nadam {
    h: NadamHyper,
    step: Vec<f64>,
    mu_product: Vec<f64>,
}

impl Kernel for Nadam {
    const STATE: &'static [&'static str] = &["exp_avg", "exp_avg_sq"];
    type Tensor<'a, T: Real> = NadamTensor<'a, T>;

    fn extract(g: &Bound<'_, PyDict>) -> PyResult<Self> {
        let (beta1, beta2) = betas(g)?;
        let h = NadamHyper {
            lr: item!(g, "lr")?,
            beta1,
            beta2,
            eps: item!(g, "eps")?,
            weight_decay: item!(g, "weight_decay")?,
            momentum_decay: item!(g, "momentum_decay")?,
            maximize: item!(g, "maximize")?,
            decoupled_weight_decay: item!(g, "decoupled_weight_decay")?,
        };
        Ok(Self { h, step: item!(g, "step")?, mu_product: item!(g, "mu_product")? })
    }

    fn tensor<'a, T: Real>(
        &'a self,
        position: usize,
        param: &'a mut [T],
        grad: &'a [T],
        state: SlotArray<&'a mut [T]>,
    ) -> Option<Self::Tensor<'a, T>> {
        let [exp_avg, exp_avg_sq, None] = state else { return None };
        let (step, mu_product) = (*self.step.get(position)?, *self.mu_product.get(position)?);
        Some(NadamTensor::new(&self.h, step, mu_product, param, grad, exp_avg?, exp_avg_sq?))
    }
}

/// RAdam hyperparameters and per-tensor step numbers.
pub struct Radam {
    h: RadamHyper,
    step: Vec<f64>,
}

impl Kernel for Radam {
    const STATE: &'static [&'static str] = &["exp_avg", "exp_avg_sq"];
    type Tensor<'a, T: Real> = RadamTensor<'a, T>;

    fn extract(g: &Bound<'_, PyDict>) -> PyResult<Self> {
        let (beta1, beta2) = betas(g)?;
        let h = RadamHyper {
            lr: item!(g, "lr")?,
            beta1,
            beta2,
            eps: item!(g, "eps")?,
            weight_decay: item!(g, "weight_decay")?,
            maximize: item!(g, "maximize")?,
            decoupled_weight_decay: item!(g, "decoupled_weight_decay")?,
        };
        Ok(Self { h, step: item!(g, "step")? })
    }

    fn tensor<'a, T: Real>(
        &'a self,
        position: usize,
        param: &'a mut [T],
        grad: &'a [T],
        state: SlotArray<&'a mut [T]>,
    ) -> Option<Self::Tensor<'a, T>> {
        let [exp_avg, exp_avg_sq, None] = state else { return None };
        Some(RadamTensor::new(&self.h, *self.step.get(position)?, param, grad, exp_avg?, exp_avg_sq?))
    }
}

/// Adamax hyperparameters and per-tensor step numbers.
pub struct Adamax {
    h: AdamaxHyper,
    step: Vec<f64>,
}

impl Kernel for Adamax {
    const STATE: &'static [&'static str] = &["exp_avg", "exp_inf"];
    type Tensor<'a, T: Real> = AdamaxTensor<'a, T>;

    fn extract(g: &Bound<'_, PyDict>) -> PyResult<Self> {
        let (beta1, beta2) = betas(g)?;
        let h = AdamaxHyper {
            lr: item!(g, "lr")?,
            beta1,
            beta2,
            eps: item!(g, "eps")?,
            weight_decay: item!(g, "weight_decay")?,
            maximize: item!(g, "maximize")?,
            eps_in_max: item_or!(g, "eps_in_max", true)?,
        };
        Ok(Self { h, step: item!(g, "step")? })
    }

    fn tensor<'a, T: Real>(
        &'a self,
        position: usize,
        param: &'a mut [T],
        grad: &'a [T],
        state: SlotArray<&'a mut [T]>,
    ) -> Option<Self::Tensor<'a, T>> {
        let [exp_avg, exp_inf, None] = state else { return None };
        Some(AdamaxTensor::new(&self.h, *self.step.get(position)?, param, grad, exp_avg?, exp_inf?))
    }
}

/// Lion hyperparameters.
pub struct Lion {
    h: LionHyper,
}

impl Kernel for Lion {
    const STATE: &'static [&'static str] = &["exp_avg"];
    type Tensor<'a, T: Real> = LionTensor<'a, T>;

    fn extract(g: &Bound<'_, PyDict>) -> PyResult<Self> {
        let (beta1, beta2) = betas(g)?;
        let h = LionHyper {
            lr: item!(g, "lr")?,
            beta1,
            beta2,
            weight_decay: item!(g, "weight_decay")?,
            maximize: item!(g, "maximize")?,
        };
        Ok(Self { h })
    }

    fn tensor<'a, T: Real>(
        &'a self,
        _position: usize,
        param: &'a mut [T],
        grad: &'a [T],
        state: SlotArray<&'a mut [T]>,
    ) -> Option<Self::Tensor<'a, T>> {
        let [exp_avg, None, None] = state else { return None };
        Some(LionTensor::new(&self.h, param, grad, exp_avg?))
    }
}

/// SGD, with or without (Nesterov) momentum, on every group.
#[pyfunction]
pub fn sgd_step(py: Python<'_>, groups: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
    step::<Sgd>(py, groups)
}

/// AdaGrad on every group.
#[pyfunction]
pub fn adagrad_step(py: Python<'_>, groups: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
    step::<Adagrad>(py, groups)
}

/// RMSprop on every group.
#[pyfunction]
pub fn rmsprop_step(py: Python<'_>, groups: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
    step::<Rmsprop>(py, groups)
}

/// AdaDelta on every group.
#[pyfunction]
pub fn adadelta_step(py: Python<'_>, groups: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
    step::<Adadelta>(py, groups)
}

/// Adam / AdamW / AMSGrad on every group.
#[pyfunction]
pub fn adam_step(py: Python<'_>, groups: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
    step::<Adam>(py, groups)
}

/// NAdam / NAdamW on every group.
#[pyfunction]
pub fn nadam_step(py: Python<'_>, groups: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
    step::<Nadam>(py, groups)
}

/// RAdam on every group.
#[pyfunction]
pub fn radam_step(py: Python<'_>, groups: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
    step::<Radam>(py, groups)
}

/// Adamax on every group.
#[pyfunction]
pub fn adamax_step(py: Python<'_>, groups: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
    step::<Adamax>(py, groups)
}

/// Lion on every group.
#[pyfunction]
pub fn lion_step(py: Python<'_>, groups: Vec<Bound<'_, PyDict>>) -> PyResult<()> {
    step::<Lion>(py, groups)
}

type NormGroup = (AdagradNormHyper, Vec<usize>, GroupScale);

/// Pass 1: each tensor's sum of squares, added to its accumulator in tensor order.
fn add_squares<T: Real>(hypers: &[NormGroup], flats: &[Flat<'_, T>], b_sq: &mut [f64]) {
    let work = flats
        .iter()
        .map(|f| {
            let (h, _, scale) = &hypers[f.at.slot];
            GradSquares::new(h, f.param.as_slice(), f.grad.slice()).scaled(scale.of())
        })
        .collect();
    for (f, s) in flats.iter().zip(pool::sum_all(work, GradSquares::sum)) {
        b_sq[hypers[f.at.slot].1[f.at.position]] += s;
    }
}

/// Pass 2: `theta <- theta - lr / b * g` with each tensor's new `b`.
fn apply_norm_step<T: Real>(hypers: &[NormGroup], flats: &mut [Flat<'_, T>], b_sq: &[f64]) {
    let work = flats
        .iter_mut()
        .map(|f| {
            let (h, accumulator, scale) = &hypers[f.at.slot];
            AdagradNormTensor::new(h, b_sq[accumulator[f.at.position]], f.param.slice(), f.grad.slice())
                .scaled(scale.of())
        })
        .collect();
    pool::update_all(work);
    write_back(flats);
}

fn norm_hyper(g: &Bound<'_, PyDict>) -> PyResult<NormGroup> {
    let h = AdagradNormHyper {
        lr: item!(g, "lr")?,
        weight_decay: item!(g, "weight_decay")?,
        maximize: item!(g, "maximize")?,
    };
    Ok((h, item!(g, "accumulator")?, GroupScale::extract(g)?))
}

/// Scalar AdaGrad (AdaGrad-Norm) on every group.
///
/// Each tensor names the accumulator it adds its `||g||^2` to (its scope);
/// `b_sq` holds the accumulators' current values. Returns their new values.
#[pyfunction]
pub fn adagrad_norm_step(
    py: Python<'_>,
    groups: Vec<Bound<'_, PyDict>>,
    b_sq: Vec<f64>,
) -> PyResult<Vec<f64>> {
    let (hypers, tensors) = super::extract_groups(&groups, norm_hyper)?;
    for ((_, accumulator, _), t) in hypers.iter().zip(&tensors) {
        if accumulator.len() != t.params.len() || accumulator.iter().any(|&a| a >= b_sq.len()) {
            return Err(Error::Malformed(format!(
                "param_groups[{}]: accumulator indices do not match its {} params and {} accumulators",
                t.group,
                t.params.len(),
                b_sq.len()
            ))
            .into());
        }
    }
    let mut batch = Batch::borrow(&tensors, &[], false)?;
    let (views32, views64, _) = batch.views();
    let b_sq = py.detach(move || {
        let (mut flat32, mut flat64) = (flats(views32), flats(views64));
        let mut b_sq = b_sq;
        add_squares(&hypers, &flat32, &mut b_sq);
        add_squares(&hypers, &flat64, &mut b_sq);
        apply_norm_step(&hypers, &mut flat32, &b_sq);
        apply_norm_step(&hypers, &mut flat64, &b_sq);
        b_sq
    });
    Ok(b_sq)
}
