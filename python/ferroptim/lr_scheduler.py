"""Learning-rate schedulers with torch.optim.lr_scheduler's names, arguments and numbers.

A scheduler owns the ``lr`` of every param group of a ferroptim optimizer: it writes
``group["lr"]`` when it is built (step 0) and at every ``step()``, and remembers each
group's starting lr as ``group["initial_lr"]`` and ``base_lrs``. Call
``scheduler.step()`` after ``optimizer.step()``, as in torch.

Each schedule is written down twice, as torch does. ``step()`` follows torch's
*chainable* form, which updates the lr the group has now (``lr_k = lr_{k-1} * gamma``),
with torch's arithmetic, so the stepped lrs are torch's to the last bit and several
schedulers can act on one optimizer. :meth:`LRScheduler.lr_at` evaluates the *closed
form* (``lr_k = base_lr * gamma**k``) at any step without stepping or changing anything;
its numbers can differ from the stepped ones by rounding (a few ulps after hundreds of
steps). State dicts are plain data (ints, floats, strs, None, lists and dicts), so
they can be written to any format.

>>> import numpy as np, ferroptim as fo
>>> opt = fo.SGD([np.zeros(3)], lr=0.1)
>>> sched = fo.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
>>> sched.lr_at(45)
[0.010000000000000002]
"""

from __future__ import annotations

import math
import types
import warnings
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, SupportsFloat

import numpy as np

from .optimizer import Optimizer

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
    "WarmupCosineLR",
]

#: Keys of torch's scheduler state dicts that hold nothing ferroptim keeps; ignored on load.
TORCH_ONLY_KEYS = frozenset(
    {"_step_count", "_is_initial", "_get_lr_called_within_step", "verbose", "_scale_fn_ref"}
)

_EPOCH_DEPRECATED = (
    "passing an epoch to step() is deprecated, as in torch: the scheduler jumps to that "
    "epoch using its closed form where it has one; use lr_at(epoch) to read a schedule"
)


# --- argument checks ------------------------------------------------------------------
def _integer(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _real(value: Any, name: str) -> Any:
    """A finite real number, kept as the caller's int or float (NumPy scalars become Python's)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value.item() if isinstance(value, np.generic) else value


def _in_range(value: Any, name: str, low: float, high: float, *, open_low: bool = False) -> Any:
    value = _real(value, name)
    if not (low < value <= high if open_low else low <= value <= high):
        raise ValueError(f"{name} must be in {'(' if open_low else '['}{low}, {high}], got {value}")
    return value


def _per_group(name: str, optimizer: Optimizer, value: Any) -> list[Any]:
    """``value`` for each param group: one number for all, or a list or tuple with one per group."""
    groups = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(
                f"{name} must have one value per param group: got {len(value)}, "
                f"the optimizer has {groups} param groups"
            )
        return [_real(v, f"{name}[{i}]") for i, v in enumerate(value)]
    return [_real(value, name)] * groups


def _check_optimizer(optimizer: Any) -> None:
    # the wrappers of ferroptim.distributed, which show the full param_groups, count too
    if not isinstance(optimizer, Optimizer) and not getattr(type(optimizer), "_ferroptim_wrapper", False):
        raise TypeError(f"{type(optimizer).__name__} is not a ferroptim Optimizer")


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain data (a new container); raises ``TypeError`` for anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {_plain(k, where): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(f"{where} is a {type(value).__name__}; a scheduler's state must be plain data")


def _mapping(state_dict: Any) -> Mapping[str, Any]:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"a scheduler's state dict must be a dict, got {type(state_dict).__name__}")
    return state_dict


def _callable_state(fn: Callable[..., Any]) -> dict[str, Any] | None:
    """What torch saves of a user's callable: the attributes of a callable object, or ``None``
    for a function or lambda (which cannot be saved as data)."""
    if isinstance(fn, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        return None
    attributes = getattr(fn, "__dict__", None)
    return None if attributes is None else dict(attributes)


class LRScheduler:
    r"""Base class: ``lr_k`` of each param group as a function of ``k = last_epoch``.

    ``step()`` advances ``last_epoch`` and sets each group's ``lr`` to
    :meth:`get_lr`; the scheduler's constructor takes step 0. A subclass states its
    schedule in the chainable form (``_next_lrs(epoch, lrs)``, the lrs at ``epoch``
    from the lrs of ``epoch - 1``, with torch's arithmetic) and the closed form
    (``_closed_form(epoch)``, read by :meth:`lr_at`); a schedule that sets the lr
    outright (``LambdaLR``, ``CyclicLR``, ...) states only the closed form. A
    subclass written for torch, which overrides ``get_lr()``, works unchanged.

    Args:
        optimizer: the ferroptim optimizer whose lrs are scheduled.
        last_epoch: the index of the last step taken; ``-1`` (the default) starts
            afresh and sets ``group["initial_lr"]``. Resuming with ``last_epoch >= 0``
            needs ``initial_lr`` in every group (load the optimizer's state dict first).

    Attributes: ``optimizer``, ``base_lrs`` (the groups' ``initial_lr``), ``last_epoch``.
    """

    #: Per-group lists of the state, checked against the number of param groups on load.
    _per_group_state: ClassVar[tuple[str, ...]] = ("base_lrs", "_last_lr")
    #: Attributes that are not part of the state dict.
    _not_state: ClassVar[tuple[str, ...]] = ("optimizer", "_is_initial")
    #: Whether ``step(epoch)`` and ``SequentialLR``'s milestones jump with the closed form
    #: (torch's ``_get_closed_form_lr``) rather than with ``get_lr()``.
    _closed_form_jumps: ClassVar[bool] = False

    optimizer: Optimizer
    base_lrs: list[Any]
    last_epoch: int
    _last_lr: list[Any]
    _is_initial: bool = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        last_epoch = _integer(last_epoch, "last_epoch", -1)
        if last_epoch >= 0:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when resuming a "
                        "scheduler with last_epoch >= 0; load the optimizer's state dict first"
                    )
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    # --- torch's interface -------------------------------------------------------------
    def step(self, epoch: int | None = None) -> None:
        """Advances one step and sets every group's ``lr``. Passing ``epoch`` (deprecated,
        as in torch) jumps to it instead."""
        if epoch is not None:
            warnings.warn(_EPOCH_DEPRECATED, UserWarning, stacklevel=2)
            epoch = _integer(epoch, "epoch", 0)
        self._update_lr(epoch)

    def get_last_lr(self) -> list[Any]:
        """The lrs the last step set, one per param group."""
        return list(self._last_lr)

    def get_lr(self) -> list[Any]:
        """The lrs of the current ``last_epoch``, computed (as torch does) from the
        groups' current lrs; ``step()`` calls it. To read the lrs, use :meth:`get_last_lr`."""
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self._is_initial:
            return self._first_lrs(self.last_epoch, lrs)
        return self._next_lrs(self.last_epoch, lrs)

    def lr_at(self, step: int) -> list[float]:
        """The lrs :meth:`get_last_lr` returns when ``last_epoch == step`` (after ``step``
        calls of ``step()`` on a scheduler built with the default ``last_epoch=-1``),
        from the closed form: nothing is stepped or changed.

        The closed form can differ from the stepped (chainable) lrs by rounding, a
        relative 1e-13 or so after hundreds of steps, and it assumes nothing else
        changed the lrs. ``ReduceLROnPlateau`` has none (its lrs depend on the metrics).
        """
        return self._closed_form(_integer(step, "step", 0))

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state as plain data (ints, floats, strs, None, lists, dicts),
        with torch's keys; the optimizer is not included."""
        return {key: _plain(value, key) for key, value in vars(self).items() if key not in self._not_state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores a :meth:`state_dict` (or a torch scheduler's state dict of the same
        class): continuing then gives the same lrs. Everything is checked before
        anything changes."""
        self._apply_state(self._parse_state(_mapping(state_dict)))

    # --- what subclasses provide ------------------------------------------------------
    def _next_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        """The lrs at ``epoch`` given the lrs at ``epoch - 1`` (torch's ``get_lr``). By
        default a schedule sets the lr outright from its closed form."""
        return self._closed_form(epoch)

    def _first_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        """The lrs the constructor's step sets (torch's ``get_lr`` in its initial step);
        schedules that keep the current lr there (it is already right when resuming)
        override this."""
        return self._next_lrs(epoch, lrs)

    def _closed_form(self, epoch: int) -> list[Any]:
        raise NotImplementedError(f"{type(self).__name__} states no closed form, so it has no lr_at()")

    def _lr_at_restarted(self, epoch: int, previous: Callable[[], list[Any]]) -> list[Any]:
        """The closed form ``epoch`` steps after ``SequentialLR`` restarted this schedule,
        ``previous()`` being the lrs it took over."""
        return self._closed_form(epoch)

    # --- plumbing -----------------------------------------------------------------------
    def _initial_step(self) -> None:
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def _update_lr(self, epoch: int | None = None) -> None:
        """One step (``epoch is None``) or a jump to ``epoch``; nothing changes if it raises."""
        previous = self.last_epoch
        self.last_epoch = previous + 1 if epoch is None else epoch
        try:
            if epoch is not None and self._closed_form_jumps:
                lrs = self._closed_form(epoch)
            else:
                lrs = self.get_lr()
            if len(lrs) != len(self.optimizer.param_groups):
                raise ValueError(
                    f"{type(self).__name__} computed {len(lrs)} lrs for "
                    f"{len(self.optimizer.param_groups)} param groups"
                )
        except BaseException:
            self.last_epoch = previous
            raise
        self._set_lrs(lrs)

    def _set_lrs(self, lrs: Sequence[Any]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _undo_step(self) -> None:
        """Takes ``last_epoch`` back one step (``SequentialLR`` re-runs the first step)."""
        self.last_epoch -= 1

    def _parse_state(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """The checked, copied attributes a state dict (a mapping) sets."""
        known = set(vars(self)) - set(self._not_state)
        parsed = {}
        for key, value in state_dict.items():
            if key in TORCH_ONLY_KEYS:
                continue
            if key not in known:
                raise ValueError(f"{type(self).__name__} has no state {key!r}")
            parsed[key] = _plain(value, key)
        groups = len(self.optimizer.param_groups)
        for key in self._per_group_state:
            if key in parsed and (not isinstance(parsed[key], list) or len(parsed[key]) != groups):
                raise ValueError(
                    f"loaded {key} must be a list with one entry per param group ({groups}), "
                    f"got {parsed[key]!r}"
                )
        if "last_epoch" in parsed:
            parsed["last_epoch"] = _integer(parsed["last_epoch"], "loaded last_epoch", -1)
        return parsed

    def _apply_state(self, parsed: dict[str, Any]) -> None:
        for key, value in parsed.items():
            setattr(self, key, value)


# --- schedules that set the lr outright from a user's function --------------------------
class _LambdaScheduler(LRScheduler):
    """Keeps one user function per param group; saves what torch saves of them."""

    _not_state = (*LRScheduler._not_state, "lr_lambdas")

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        groups = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != groups:
                raise ValueError(
                    f"Expected {groups} lr_lambdas (one per param group), but got {len(lr_lambda)}"
                )
            lambdas = list(lr_lambda)
        else:
            lambdas = [lr_lambda] * groups
        for fn in lambdas:
            if not callable(fn):
                raise TypeError(f"lr_lambda should be a function, but got {type(fn).__name__}")
        self.lr_lambdas: list[Callable[[int], float]] = lambdas
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict[str, Any]:
        """The state as plain data; ``lr_lambdas`` holds the attributes of each callable
        object and ``None`` for each function or lambda, which are not saved (as torch)."""
        state = super().state_dict()
        state["lr_lambdas"] = [_plain(_callable_state(fn), "lr_lambdas") for fn in self.lr_lambdas]
        return state

    def _parse_state(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        saved = state_dict.get("lr_lambdas")
        parsed = super()._parse_state({k: v for k, v in state_dict.items() if k != "lr_lambdas"})
        if saved is not None:
            if not isinstance(saved, (list, tuple)) or len(saved) != len(self.lr_lambdas):
                raise ValueError(f"loaded lr_lambdas must be a list of {len(self.lr_lambdas)} entries")
            for i, entry in enumerate(saved):
                if entry is not None and not isinstance(entry, Mapping):
                    raise ValueError(f"loaded lr_lambdas[{i}] must be None or a dict of attributes")
            parsed["lr_lambdas"] = [_plain(entry, f"lr_lambdas[{i}]") for i, entry in enumerate(saved)]
        return parsed

    def _apply_state(self, parsed: dict[str, Any]) -> None:
        for fn, attributes in zip(self.lr_lambdas, parsed.pop("lr_lambdas", [])):
            if attributes is not None:
                fn.__dict__.update(attributes)
        super()._apply_state(parsed)


class LambdaLR(_LambdaScheduler):
    r"""``lr_k = base_lr * lr_lambda(k)``.

    Args:
        optimizer: the optimizer.
        lr_lambda: a function of the step ``k``, or a list with one per param group.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    def _closed_form(self, epoch: int) -> list[Any]:
        return [base_lr * fn(epoch) for fn, base_lr in zip(self.lr_lambdas, self.base_lrs)]


class MultiplicativeLR(_LambdaScheduler):
    r"""``lr_k = lr_{k-1} * lr_lambda(k)``, so ``lr_k = base_lr * prod_{j=1..k} lr_lambda(j)``.

    ``lr_at(k)`` evaluates the lambdas at ``1..k`` (in the same order, so it equals the
    stepped lrs exactly).

    Args:
        optimizer: the optimizer.
        lr_lambda: a function of the step ``k`` giving the factor, or a list with one per
            param group.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    def _next_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        return [lr * fn(epoch) for fn, lr in zip(self.lr_lambdas, lrs)]

    def _first_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        return list(lrs)

    def _closed_form(self, epoch: int) -> list[Any]:
        return self._multiply(list(self.base_lrs), 1, epoch)

    def _lr_at_restarted(self, epoch: int, previous: Callable[[], list[Any]]) -> list[Any]:
        # torch restarts it at a milestone with get_lr() at step 0, which multiplies the
        # lr it took over by lr_lambda(0).
        return self._multiply(previous(), 0, epoch)

    def _multiply(self, lrs: list[Any], first: int, last: int) -> list[Any]:
        for epoch in range(first, last + 1):
            lrs = self._next_lrs(epoch, lrs)
        return lrs


# --- multiplicative decays --------------------------------------------------------------
class StepLR(LRScheduler):
    r"""``lr_k = base_lr * gamma ** floor(k / step_size)``.

    Stepped as torch does: ``lr_k = lr_{k-1} * gamma`` when ``k`` is a positive multiple
    of ``step_size``, else ``lr_k = lr_{k-1}``.

    Args:
        optimizer: the optimizer.
        step_size: the period of the decay, in steps (a positive int).
        gamma: the factor of each decay. Default 0.1.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    _closed_form_jumps = True

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.step_size = _integer(step_size, "step_size", 1)
        self.gamma = _real(gamma, "gamma")
        super().__init__(optimizer, last_epoch)

    def _next_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        if epoch == 0 or epoch % self.step_size != 0:
            return list(lrs)
        return [lr * self.gamma for lr in lrs]

    def _closed_form(self, epoch: int) -> list[Any]:
        return [base_lr * self.gamma ** (epoch // self.step_size) for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    r"""``lr_k = base_lr * gamma ** (number of milestones <= k)``.

    Stepped as torch does: ``lr_k = lr_{k-1} * gamma ** c`` at a milestone listed ``c``
    times, else ``lr_k = lr_{k-1}``.

    Args:
        optimizer: the optimizer.
        milestones: the steps at which the lr decays (ints; a repeated one decays twice).
        gamma: the factor of each decay. Default 0.1.
        last_epoch: the index of the last step (``-1``: start afresh).

    The state dict lists the milestones sorted, with repeats (torch keeps a ``Counter``,
    which is also accepted on load).
    """

    _closed_form_jumps = True
    _not_state = (*LRScheduler._not_state, "milestones")

    def __init__(
        self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.milestones = self._counter(milestones)
        self.gamma = _real(gamma, "gamma")
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _counter(milestones: Any) -> Counter[int]:
        if isinstance(milestones, Mapping):  # torch's Counter
            items = [
                m for m, count in milestones.items() for _ in range(_integer(count, "milestone count", 0))
            ]
        elif isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
            raise TypeError(f"milestones must be an iterable of ints, got {milestones!r}")
        else:
            items = list(milestones)
        return Counter(_integer(m, "milestone", 0) for m in items)

    def state_dict(self) -> dict[str, Any]:
        """The state as plain data, with ``milestones`` as a sorted list."""
        return {**super().state_dict(), "milestones": sorted(self.milestones.elements())}

    def _parse_state(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        parsed = super()._parse_state({k: v for k, v in state_dict.items() if k != "milestones"})
        if "milestones" in state_dict:
            parsed["milestones"] = self._counter(state_dict["milestones"])
        return parsed

    def _next_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        if epoch not in self.milestones:
            return list(lrs)
        return [lr * self.gamma ** self.milestones[epoch] for lr in lrs]

    def _closed_form(self, epoch: int) -> list[Any]:
        decays = bisect_right(sorted(self.milestones.elements()), epoch)
        return [base_lr * self.gamma**decays for base_lr in self.base_lrs]


class ConstantLR(LRScheduler):
    r"""``lr_k = base_lr * factor`` for ``k < total_iters``, then ``lr_k = base_lr``.

    Stepped as torch does: the lr is multiplied by ``factor`` at step 0 and by
    ``1 / factor`` at step ``total_iters``.

    Args:
        optimizer: the optimizer.
        factor: the factor of the first ``total_iters`` steps, in (0, 1]. Default 1/3.
        total_iters: how many steps the factor applies (a positive int). Default 5.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    _closed_form_jumps = True

    def __init__(
        self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1
    ) -> None:
        # torch also allows 0, then divides by it at step total_iters.
        self.factor = _in_range(factor, "factor", 0.0, 1.0, open_low=True)
        self.total_iters = _integer(total_iters, "total_iters", 1)
        super().__init__(optimizer, last_epoch)

    def _next_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        if epoch == 0:
            return [lr * self.factor for lr in lrs]
        if epoch != self.total_iters:
            return list(lrs)
        return [lr * (1.0 / self.factor) for lr in lrs]

    def _closed_form(self, epoch: int) -> list[Any]:
        return [
            base_lr * (self.factor + (epoch >= self.total_iters) * (1 - self.factor))
            for base_lr in self.base_lrs
        ]


class LinearLR(LRScheduler):
    r"""``lr_k = base_lr * (s + (e - s) * min(k, total_iters) / total_iters)``, with
    ``s = start_factor`` and ``e = end_factor``: a linear ramp, then constant.

    Stepped as torch does: ``lr_0 = base_lr * s`` and, for ``0 < k <= total_iters``,
    ``lr_k = lr_{k-1} * (1 + (e - s) / (total_iters * s + (k - 1) * (e - s)))``.

    Args:
        optimizer: the optimizer.
        start_factor: the factor at step 0, in (0, 1]. Default 1/3.
        end_factor: the factor from step ``total_iters`` on, in [0, 1]. Default 1.
        total_iters: the length of the ramp (a positive int). Default 5.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    _closed_form_jumps = True

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        self.start_factor = _in_range(start_factor, "start_factor", 0.0, 1.0, open_low=True)
        self.end_factor = _in_range(end_factor, "end_factor", 0.0, 1.0)
        self.total_iters = _integer(total_iters, "total_iters", 1)
        super().__init__(optimizer, last_epoch)

    def _next_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        if epoch == 0:
            return [lr * self.start_factor for lr in lrs]
        if epoch > self.total_iters:
            return list(lrs)
        rise = self.end_factor - self.start_factor
        ratio = 1.0 + rise / (self.total_iters * self.start_factor + (epoch - 1) * rise)
        return [lr * ratio for lr in lrs]

    def _first_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        return self._next_lrs(0, lrs) if epoch == 0 else list(lrs)

    def _closed_form(self, epoch: int) -> list[Any]:
        return [
            base_lr
            * (
                self.start_factor
                + (self.end_factor - self.start_factor) * min(self.total_iters, epoch) / self.total_iters
            )
            for base_lr in self.base_lrs
        ]


class ExponentialLR(LRScheduler):
    r"""``lr_k = base_lr * gamma ** k``, stepped as ``lr_k = lr_{k-1} * gamma``.

    Args:
        optimizer: the optimizer.
        gamma: the factor of each step.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    _closed_form_jumps = True

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = _real(gamma, "gamma")
        super().__init__(optimizer, last_epoch)

    def _next_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        return [lr * self.gamma for lr in lrs]

    def _first_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        return list(lrs)

    def _closed_form(self, epoch: int) -> list[Any]:
        return [base_lr * self.gamma**epoch for base_lr in self.base_lrs]


class PolynomialLR(LRScheduler):
    r"""``lr_k = base_lr * (1 - min(k, total_iters) / total_iters) ** power``.

    Stepped as torch does: ``lr_k = lr_{k-1} * ((1 - k/T) / (1 - (k-1)/T)) ** power`` for
    ``0 < k <= T = total_iters``, constant after.

    Args:
        optimizer: the optimizer.
        total_iters: the step at which the lr reaches 0 (a positive int). Default 5.
        power: the power of the polynomial. Default 1.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    _closed_form_jumps = True

    def __init__(
        self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1
    ) -> None:
        self.total_iters = _integer(total_iters, "total_iters", 1)
        self.power = _real(power, "power")
        super().__init__(optimizer, last_epoch)

    def _next_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        if epoch > self.total_iters:
            return list(lrs)
        decay = ((1.0 - epoch / self.total_iters) / (1.0 - (epoch - 1) / self.total_iters)) ** self.power
        return [lr * decay for lr in lrs]

    def _first_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        return list(lrs)

    def _closed_form(self, epoch: int) -> list[Any]:
        return [
            base_lr * (1.0 - min(self.total_iters, epoch) / self.total_iters) ** self.power
            for base_lr in self.base_lrs
        ]


class CosineAnnealingLR(LRScheduler):
    r"""``lr_k = eta_min + (base_lr - eta_min) * (1 + cos(pi * k / T_max)) / 2``
    (SGDR, Loshchilov & Hutter 2017, without the restarts).

    Stepped in torch's chainable form
    ``lr_k = eta_min + (lr_{k-1} - eta_min) * (1 + cos(pi k / T_max)) / (1 + cos(pi (k-1) / T_max))``,
    with ``lr_k = lr_{k-1} + (base_lr - eta_min) * (1 - cos(pi / T_max)) / 2`` where the
    denominator vanishes; past ``T_max`` the lr rises again, periodically, as in torch.

    Args:
        optimizer: the optimizer.
        T_max: the half period, in steps (positive).
        eta_min: the lowest lr. Default 0.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    _closed_form_jumps = True

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = _real(T_max, "T_max")
        if self.T_max <= 0:
            raise ValueError(f"T_max must be positive, got {T_max}")
        self.eta_min = _real(eta_min, "eta_min")
        super().__init__(optimizer, last_epoch)

    def _next_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        if (epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [
                lr + (base_lr - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                for base_lr, lr in zip(self.base_lrs, lrs)
            ]
        ratio = (1 + math.cos(math.pi * epoch / self.T_max)) / (
            1 + math.cos(math.pi * (epoch - 1) / self.T_max)
        )
        return [ratio * (lr - self.eta_min) + self.eta_min for lr in lrs]

    def _first_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        return list(lrs)

    def _closed_form(self, epoch: int) -> list[Any]:
        return [
            self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
            for base_lr in self.base_lrs
        ]


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""``lr_k = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``, where
    ``T_cur`` counts the steps since the last restart and the ``i``-th period lasts
    ``T_i = T_0 * T_mult**i`` steps (SGDR, Loshchilov & Hutter 2017).

    ``step(epoch)`` takes a fractional epoch too (``step(epoch + i / iters)`` within an
    epoch), as in torch; ``lr_at(k)`` is for whole steps.

    Args:
        optimizer: the optimizer.
        T_0: the length of the first period (a positive int).
        T_mult: the growth of each period (an int >= 1). Default 1.
        eta_min: the lowest lr. Default 0.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    def __init__(
        self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        self.T_0 = _integer(T_0, "T_0", 1)
        self.T_i: float = self.T_0
        self.T_mult = _integer(T_mult, "T_mult", 1)
        self.eta_min = _real(eta_min, "eta_min")
        self.T_cur: float = _integer(last_epoch, "last_epoch", -1)
        super().__init__(optimizer, last_epoch)

    def step(self, epoch: float | None = None) -> None:
        """Advances one step, or jumps to ``epoch`` (which may be fractional)."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            last_epoch = self.last_epoch + 1
            T_cur, T_i = self.T_cur + 1, self.T_i
            if T_cur >= T_i:
                T_cur, T_i = T_cur % T_i, T_i * self.T_mult
        else:
            epoch = _real(epoch, "epoch")
            if epoch < 0:
                raise ValueError(f"Expected non-negative epoch, but got {epoch}")
            T_cur, T_i = epoch, self.T_i
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    T_cur = epoch % self.T_0
                else:  # torch's arithmetic, for fractional epochs too
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    T_i = self.T_0 * self.T_mult**n
            else:
                T_i = self.T_0
            last_epoch = math.floor(epoch)
        self.T_cur, self.T_i, self.last_epoch = T_cur, T_i, last_epoch
        self._set_lrs(self.get_lr())

    def get_lr(self) -> list[Any]:
        """The lrs of the current ``T_cur`` and ``T_i``."""
        return self._annealed(self.T_cur, self.T_i)

    def _closed_form(self, epoch: int) -> list[Any]:
        T_cur, T_i = epoch, self.T_0
        if self.T_mult == 1:
            T_cur = epoch % self.T_0
        while T_cur >= T_i:  # whole steps: the integers step() counts, exactly
            T_cur, T_i = T_cur - T_i, T_i * self.T_mult
        return self._annealed(T_cur, T_i)

    def _annealed(self, T_cur: float, T_i: float) -> list[Any]:
        return [
            self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * T_cur / T_i)) / 2
            for base_lr in self.base_lrs
        ]


# --- cyclical schedules, which cycle momentum too -----------------------------------------
class _CyclesMomentum(LRScheduler):
    """Sets ``momentum`` (SGD, RMSprop) or ``betas[0]`` (Adam) of each group, as torch does."""

    cycle_momentum: bool
    use_beta1: bool

    def _init_momentum(
        self, optimizer: Optimizer, cycle_momentum: bool, base_momentum: Any, max_momentum: Any
    ) -> tuple[list[Any], list[Any]]:
        """Checks the momentum arguments; returns the per-group (base, max) momentums."""
        if not isinstance(cycle_momentum, (bool, np.bool_)):
            raise TypeError(f"cycle_momentum must be True or False, got {cycle_momentum!r}")
        self.cycle_momentum = bool(cycle_momentum)
        if not self.cycle_momentum:
            return [], []
        if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
            raise ValueError(
                f"{type(optimizer).__name__} has no momentum or betas; pass cycle_momentum=False"
            )
        self.use_beta1 = "betas" in optimizer.defaults
        return (
            _per_group("base_momentum", optimizer, base_momentum),
            _per_group("max_momentum", optimizer, max_momentum),
        )

    def _start_momentum(self, base_momentums: list[Any], max_momentums: list[Any]) -> None:
        for group, base_momentum, max_momentum in zip(
            self.optimizer.param_groups, base_momentums, max_momentums
        ):
            self._set_momentum(group, max_momentum)
            group["max_momentum"] = max_momentum
            group["base_momentum"] = base_momentum

    def _set_momentum(self, group: dict[str, Any], momentum: Any) -> None:
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum

    def _momenta_at(self, epoch: int) -> list[Any]:
        raise NotImplementedError

    def get_lr(self) -> list[Any]:
        """The lrs of the current ``last_epoch``; sets the groups' momentum too."""
        lrs = super().get_lr()
        if self.cycle_momentum:
            for group, momentum in zip(self.optimizer.param_groups, self._momenta_at(self.last_epoch)):
                self._set_momentum(group, momentum)
        return lrs


class CyclicLR(_CyclesMomentum):
    r"""``lr_k = base_lr + (max_lr - base_lr) * h(k) * scale``: the triangular cyclical
    learning rate of Smith (2017), ``h`` rising linearly from 0 to 1 over
    ``step_size_up`` steps and falling back over ``step_size_down``.

    With ``cycle = floor(1 + k / (up + down))`` and ``x = 1 + k / (up + down) - cycle``,
    ``h = x / r`` for ``x <= r = up / (up + down)``, else ``h = (x - 1) / (r - 1)``;
    ``scale`` is ``scale_fn(cycle)`` or ``scale_fn(k)`` (``scale_mode``): 1 for
    ``"triangular"``, ``1 / 2**(cycle - 1)`` for ``"triangular2"`` and ``gamma**k`` for
    ``"exp_range"``. The momentum cycles inversely,
    ``momentum_k = max_momentum - (max_momentum - base_momentum) * h(k) * scale``.

    Args:
        optimizer: the optimizer.
        base_lr, max_lr: the bounds of the cycle, one number or one per group.
        step_size_up: steps of the rising half (positive). Default 2000.
        step_size_down: steps of the falling half. Default ``step_size_up``.
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: the base of ``"exp_range"``. Default 1.
        scale_fn: a custom ``scale`` (a function of one argument; overrides ``mode``).
        scale_mode: what ``scale_fn`` takes: ``"cycle"`` or ``"iterations"``.
        cycle_momentum: cycle ``momentum`` (or Adam's ``betas[0]``) too. Default True.
        base_momentum, max_momentum: its bounds. Defaults 0.8 and 0.9.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    _per_group_state = (*LRScheduler._per_group_state, "max_lrs", "base_momentums", "max_momentums")
    _not_state = (*LRScheduler._not_state, "_scale_fn_custom")

    def __init__(
        self,
        optimizer: Optimizer,
        base_lr: float | list[float],
        max_lr: float | list[float],
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None,
        scale_mode: str = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.8,
        max_momentum: float | list[float] = 0.9,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        base_lrs = _per_group("base_lr", optimizer, base_lr)
        self.max_lrs = _per_group("max_lr", optimizer, max_lr)
        up = float(_real(step_size_up, "step_size_up"))
        down = up if step_size_down is None else float(_real(step_size_down, "step_size_down"))
        if up <= 0 or down < 0:
            raise ValueError(
                f"step_size_up must be positive and step_size_down non-negative, got {up}, {down}"
            )
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if scale_fn is None and mode not in ("triangular", "triangular2", "exp_range"):
            raise ValueError(
                f"mode must be 'triangular', 'triangular2' or 'exp_range' (or give scale_fn), got {mode!r}"
            )
        if scale_fn is not None and not callable(scale_fn):
            raise TypeError(f"scale_fn must be a function, got {type(scale_fn).__name__}")
        if scale_mode not in ("cycle", "iterations"):
            raise ValueError(f"scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}")
        self.mode = mode
        self.gamma = _real(gamma, "gamma")
        self._scale_fn_custom = scale_fn
        self.scale_mode = scale_mode
        self._init_scale_mode()
        momentums = self._init_momentum(optimizer, cycle_momentum, base_momentum, max_momentum)
        _integer(last_epoch, "last_epoch", -1)
        if last_epoch == -1:
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = lr
            if self.cycle_momentum:
                self._start_momentum(*momentums)
        if self.cycle_momentum:
            self.base_momentums, self.max_momentums = momentums
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def _init_scale_mode(self) -> None:
        if self._scale_fn_custom is None:
            self.scale_mode = "iterations" if self.mode == "exp_range" else "cycle"

    def scale_fn(self, x: float) -> float:
        """The amplitude's scale at ``x`` (the cycle or the step, as ``scale_mode`` says)."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        if self.mode == "exp_range":
            return self.gamma**x
        return 1.0

    def _position(self, epoch: int) -> tuple[float, float]:
        """``(h(k), scale)`` at step ``epoch``."""
        cycle = math.floor(1 + epoch / self.total_size)
        x = 1.0 + epoch / self.total_size - cycle
        if x <= self.step_ratio:
            height = x / self.step_ratio
        else:
            height = (x - 1) / (self.step_ratio - 1)
        return height, self.scale_fn(cycle if self.scale_mode == "cycle" else epoch)

    def _closed_form(self, epoch: int) -> list[Any]:
        height, scale = self._position(epoch)
        return [
            base_lr + (max_lr - base_lr) * height * scale
            for base_lr, max_lr in zip(self.base_lrs, self.max_lrs)
        ]

    def _momenta_at(self, epoch: int) -> list[Any]:
        height, scale = self._position(epoch)
        return [
            max_momentum - (max_momentum - base_momentum) * height * scale
            for base_momentum, max_momentum in zip(self.base_momentums, self.max_momentums)
        ]

    def state_dict(self) -> dict[str, Any]:
        """The state as plain data; ``_scale_fn_custom`` holds the attributes of a callable
        object, ``None`` for a function or lambda (not saved, as in torch)."""
        state = super().state_dict()
        fn = self._scale_fn_custom
        state["_scale_fn_custom"] = None if fn is None else _plain(_callable_state(fn), "_scale_fn_custom")
        return state

    def _parse_state(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        saved = state_dict.get("_scale_fn_custom")
        parsed = super()._parse_state({k: v for k, v in state_dict.items() if k != "_scale_fn_custom"})
        if saved is not None:
            if not isinstance(saved, Mapping) or self._scale_fn_custom is None:
                raise ValueError(
                    "loaded _scale_fn_custom must be None or the attributes of this scheduler's scale_fn"
                )
            parsed["_scale_fn_custom"] = _plain(saved, "_scale_fn_custom")
        return parsed

    def _apply_state(self, parsed: dict[str, Any]) -> None:
        attributes = parsed.pop("_scale_fn_custom", None)
        if attributes is not None:
            vars(self._scale_fn_custom).update(attributes)
        super()._apply_state(parsed)
        self._init_scale_mode()


class OneCycleLR(_CyclesMomentum):
    r"""The 1cycle policy (Smith & Topin 2019): the lr anneals from ``max_lr / div_factor``
    up to ``max_lr`` over the first ``pct_start * total_steps`` steps, then down to
    ``max_lr / (div_factor * final_div_factor)`` at step ``total_steps - 1``.

    Within a phase from step ``a`` to ``b``, ``lr_k = anneal(start, end, (k - a) / (b - a))``
    with ``anneal(s, e, p) = e + (s - e) * (1 + cos(pi p)) / 2`` (``"cos"``) or
    ``s + (e - s) p`` (``"linear"``); momentum anneals inversely between
    ``max_momentum`` and ``base_momentum``. ``three_phase`` adds a symmetric way back
    down to ``max_lr / div_factor`` before the final annealing. As in torch, the phases
    end at steps ``pct_start * total_steps - 1`` and ``total_steps - 1``, and stepping
    past ``total_steps`` raises ``ValueError``.

    Args:
        optimizer: the optimizer.
        max_lr: the peak lr, one number or one per group.
        total_steps: the length of the cycle; or give ``epochs`` and ``steps_per_epoch``.
        pct_start: the fraction of the cycle spent rising (a float in [0, 1]). Default 0.3.
        anneal_strategy: ``"cos"`` or ``"linear"``.
        cycle_momentum: cycle ``momentum`` (or Adam's ``betas[0]``) too. Default True.
        base_momentum, max_momentum: its bounds. Defaults 0.85 and 0.95.
        div_factor: ``initial_lr = max_lr / div_factor``. Default 25.
        final_div_factor: ``min_lr = initial_lr / final_div_factor``. Default 1e4.
        three_phase: use the three-phase schedule. Default False.
        last_epoch: the index of the last step (``-1``: start afresh).

    Each group keeps ``initial_lr``, ``max_lr`` and ``min_lr`` (and the momentum
    bounds), as in torch, and the schedule reads them from there.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if total_steps is not None:
            self.total_steps = _integer(total_steps, "total_steps", 1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = _integer(epochs, "epochs", 1) * _integer(steps_per_epoch, "steps_per_epoch", 1)
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy!r}"
            )
        self._anneal_func_type = anneal_strategy
        warmup_end = float(pct_start * self.total_steps) - 1
        if three_phase:
            phases = [
                (warmup_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (
                    float(2 * pct_start * self.total_steps) - 2,
                    "max_lr",
                    "initial_lr",
                    "base_momentum",
                    "max_momentum",
                ),
                (self.total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            phases = [
                (warmup_end, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (self.total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        keys = ("end_step", "start_lr", "end_lr", "start_momentum", "end_momentum")
        self._schedule_phases: list[dict[str, Any]] = [dict(zip(keys, phase)) for phase in phases]
        max_lrs = _per_group("max_lr", optimizer, max_lr)
        div_factor = _real(div_factor, "div_factor")
        final_div_factor = _real(final_div_factor, "final_div_factor")
        if div_factor <= 0 or final_div_factor <= 0:
            raise ValueError(
                f"div_factor and final_div_factor must be positive, got {div_factor}, {final_div_factor}"
            )
        momentums = self._init_momentum(optimizer, cycle_momentum, base_momentum, max_momentum)
        _integer(last_epoch, "last_epoch", -1)
        if last_epoch == -1:
            for group, peak in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor
            if self.cycle_momentum:
                self._start_momentum(*momentums)
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: Any, end: Any, pct: float) -> Any:
        if self._anneal_func_type == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _phase(self, epoch: int) -> tuple[dict[str, Any], float]:
        """The phase of step ``epoch`` and how far into it the step is."""
        if epoch > self.total_steps:
            raise ValueError(
                f"Tried to step {epoch} times. The specified number of total steps is {self.total_steps}"
            )
        start_step = 0.0
        for i, phase in enumerate(self._schedule_phases):
            end_step = phase["end_step"]
            if epoch <= end_step or i == len(self._schedule_phases) - 1:
                if end_step == start_step:  # torch divides by zero here
                    raise ValueError(
                        f"step {epoch} falls in a phase of zero steps of this OneCycleLR "
                        f"(total_steps={self.total_steps}); change pct_start"
                    )
                return phase, (epoch - start_step) / (end_step - start_step)
            start_step = end_step
        raise AssertionError("unreachable: the last phase always matches")

    def _closed_form(self, epoch: int) -> list[Any]:
        phase, pct = self._phase(epoch)
        return [
            self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct)
            for group in self.optimizer.param_groups
        ]

    def _momenta_at(self, epoch: int) -> list[Any]:
        phase, pct = self._phase(epoch)
        return [
            self._anneal(group[phase["start_momentum"]], group[phase["end_momentum"]], pct)
            for group in self.optimizer.param_groups
        ]


class WarmupCosineLR(LRScheduler):
    r"""Linear warm-up, then cosine annealing (Loshchilov & Hutter 2017, without restarts):

    ``lr_k = base_lr * (s + (1 - s) * k / W)`` for ``k < W``,
    ``lr_k = eta_min + (base_lr - eta_min) * (1 + cos(pi * (k - W) / (T - W))) / 2`` for
    ``W <= k <= T``, and ``lr_k = eta_min`` after, with ``W = warmup_steps``,
    ``T = total_steps`` and ``s = warmup_start_factor``.

    Not in torch, where (for ``s > 0``) it is
    ``SequentialLR([LinearLR(s, 1.0, W), CosineAnnealingLR(T - W, eta_min)], [W])`` up to
    step ``T`` (whose cosine then rises again). The lr is set from the closed form
    at every step (like ``LambdaLR``), so ``lr_at`` gives exactly the stepped lrs.

    Args:
        optimizer: the optimizer.
        warmup_steps: ``W``, the length of the warm-up (an int >= 0).
        total_steps: ``T``, the step at which the lr reaches ``eta_min`` (an int > ``W``).
        warmup_start_factor: ``s``, the fraction of ``base_lr`` at step 0, in [0, 1]. Default 0.
        eta_min: the final lr. Default 0.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        total_steps: int,
        warmup_start_factor: float = 0.0,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.warmup_steps = _integer(warmup_steps, "warmup_steps", 0)
        self.total_steps = _integer(total_steps, "total_steps", self.warmup_steps + 1)
        self.warmup_start_factor = _in_range(warmup_start_factor, "warmup_start_factor", 0.0, 1.0)
        self.eta_min = _real(eta_min, "eta_min")
        super().__init__(optimizer, last_epoch)

    def _closed_form(self, epoch: int) -> list[Any]:
        W, T, s = self.warmup_steps, self.total_steps, self.warmup_start_factor
        if epoch < W:
            return [base_lr * (s + (1 - s) * epoch / W) for base_lr in self.base_lrs]
        if epoch > T:
            return [self.eta_min] * len(self.base_lrs)
        cosine = 1 + math.cos(math.pi * (epoch - W) / (T - W))
        return [self.eta_min + (base_lr - self.eta_min) * cosine / 2 for base_lr in self.base_lrs]


# --- schedulers of schedulers ---------------------------------------------------------------
class _Composite(LRScheduler):
    """Holds other schedulers of one optimizer; saves their state dicts in its own."""

    _not_state = (*LRScheduler._not_state, "_schedulers")
    _schedulers: list[LRScheduler]

    def _take_schedulers(self, schedulers: Sequence[LRScheduler], optimizer: Optimizer | None) -> Optimizer:
        """Checks ``schedulers``; returns their optimizer."""
        name = type(self).__name__
        if isinstance(schedulers, LRScheduler) or not isinstance(schedulers, Sequence) or not schedulers:
            raise ValueError(f"{name} expects a non-empty list of schedulers, got {schedulers!r}")
        for i, scheduler in enumerate(schedulers):
            if not isinstance(scheduler, LRScheduler):
                raise TypeError(
                    f"{name}: scheduler at index {i} is a {type(scheduler).__name__}, not an LRScheduler"
                )
            if isinstance(scheduler, ReduceLROnPlateau):
                raise ValueError(
                    f"{name} does not support ReduceLROnPlateau (at index {i}): its step() needs a metric"
                )
        optimizer = schedulers[0].optimizer if optimizer is None else optimizer
        for i, scheduler in enumerate(schedulers):
            if scheduler.optimizer is not optimizer:
                raise ValueError(
                    f"{name} expects all schedulers to belong to the same optimizer, but the "
                    f"{type(scheduler).__name__} at index {i} has another one"
                )
        self._schedulers = list(schedulers)
        self.optimizer = optimizer
        return optimizer

    def state_dict(self) -> dict[str, Any]:
        """The state as plain data, with each scheduler's state dict under ``_schedulers``."""
        return {**super().state_dict(), "_schedulers": [s.state_dict() for s in self._schedulers]}

    def _parse_state(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        saved = state_dict.get("_schedulers")
        if not isinstance(saved, (list, tuple)) or len(saved) != len(self._schedulers):
            raise ValueError(f"loaded _schedulers must be a list of {len(self._schedulers)} state dicts")
        parsed = super()._parse_state({k: v for k, v in state_dict.items() if k != "_schedulers"})
        parsed["_schedulers"] = [s._parse_state(_mapping(sd)) for s, sd in zip(self._schedulers, saved)]
        return parsed

    def _apply_state(self, parsed: dict[str, Any]) -> None:
        for scheduler, state in zip(self._schedulers, parsed.pop("_schedulers")):
            scheduler._apply_state(state)
        super()._apply_state(parsed)


class SequentialLR(_Composite):
    r"""``lr_k`` of ``schedulers[i]`` at step ``k - milestones[i-1]``, for
    ``milestones[i-1] <= k < milestones[i]``: the schedulers run one after another.

    As in torch, each scheduler after the first restarts at its milestone (from its
    ``base_lrs`` in closed form; ``MultiplicativeLR`` from the lr it takes over).

    Args:
        optimizer: the optimizer all schedulers belong to.
        schedulers: the schedulers, built on ``optimizer`` (not ``ReduceLROnPlateau``,
            ``SequentialLR`` or ``ChainedScheduler``).
        milestones: the steps at which the next scheduler takes over: sorted positive
            ints, one fewer than the schedulers.
        last_epoch: the index of the last step (``-1``: start afresh).
    """

    def __init__(
        self, optimizer: Optimizer, schedulers: list[LRScheduler], milestones: list[int], last_epoch: int = -1
    ) -> None:
        _check_optimizer(optimizer)
        self._take_schedulers(schedulers, optimizer)
        for i, scheduler in enumerate(self._schedulers):
            if isinstance(scheduler, _Composite):
                # torch cannot restart them at a milestone (it raises NotImplementedError there)
                raise ValueError(f"SequentialLR cannot hold a {type(scheduler).__name__} (at index {i})")
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
            raise TypeError(f"milestones must be a list of ints, got {milestones!r}")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more than the number "
                f"of milestone points, but got number of schedulers {len(schedulers)} and the number of "
                f"milestones to be equal to {len(milestones)}"
            )
        self._milestones = [_integer(m, "milestone", 1) for m in milestones]
        if self._milestones != sorted(self._milestones):
            raise ValueError(f"milestones must be sorted, got {list(milestones)}")
        self.last_epoch = _integer(last_epoch, "last_epoch", -1) + 1
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        # Every scheduler took its first step when built; start again from the first one's.
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for scheduler in self._schedulers:
            scheduler._undo_step()
        self._schedulers[0]._initial_step()
        self._last_lr = self._schedulers[0].get_last_lr()

    def step(self) -> None:  # type: ignore[override]
        """Advances the scheduler in charge one step, or restarts the next at its milestone."""
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def _current(self, epoch: int) -> tuple[LRScheduler, int, int]:
        """The scheduler in charge at ``epoch``, its own step, and its milestone (0 for the first)."""
        idx = bisect_right(self._milestones, epoch)
        start = self._milestones[idx - 1] if idx > 0 else 0
        return self._schedulers[idx], epoch - start, start

    def _closed_form(self, epoch: int) -> list[Any]:
        scheduler, own_epoch, start = self._current(epoch)
        if start == 0:
            return scheduler._closed_form(own_epoch)
        return scheduler._lr_at_restarted(own_epoch, lambda: self._closed_form(start - 1))

    def _first_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        return self._schedulers[0]._first_lrs(epoch, list(self.base_lrs))

    def _next_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        scheduler, own_epoch, start = self._current(epoch)
        if start > 0 and own_epoch == 0:
            return scheduler._closed_form(0) if scheduler._closed_form_jumps else scheduler._next_lrs(0, lrs)
        return scheduler._next_lrs(own_epoch, lrs)


class ChainedScheduler(_Composite):
    r"""``lr_k = (f_n ∘ ... ∘ f_1)(lr_{k-1})``: every scheduler steps at every step, in
    order, each on the lr the previous one left.

    Multiplicative schedules therefore multiply
    (``ChainedScheduler([LinearLR(...), ExponentialLR(...)])`` warms up an exponential
    decay). The chain has no closed form in general, so ``lr_at(k)`` composes the
    schedulers' per-step formulas over steps ``1..k`` (``O(k)``, changing nothing),
    which gives exactly the stepped lrs when the schedulers were built in the chain's
    order on a fresh optimizer.

    Args:
        schedulers: the schedulers, all on one optimizer (not ``ReduceLROnPlateau``).
        optimizer: that optimizer (default: the first scheduler's).
    """

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: Optimizer | None = None) -> None:
        if optimizer is not None:
            _check_optimizer(optimizer)
        optimizer = self._take_schedulers(schedulers, optimizer)
        self.base_lrs = list(self._schedulers[0].base_lrs)
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def step(self) -> None:  # type: ignore[override]
        """Steps every scheduler once, in order."""
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _first_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        for scheduler in self._schedulers:
            lrs = scheduler._first_lrs(epoch, lrs)
        return lrs

    def _next_lrs(self, epoch: int, lrs: list[Any]) -> list[Any]:
        for scheduler in self._schedulers:
            lrs = scheduler._next_lrs(epoch, lrs)
        return lrs

    def _closed_form(self, epoch: int) -> list[Any]:
        lrs = self._first_lrs(0, list(self.base_lrs))
        for k in range(1, epoch + 1):
            lrs = self._next_lrs(k, lrs)
        return lrs


class ReduceLROnPlateau(LRScheduler):
    r"""``lr <- max(lr * factor, min_lr)`` once the metric has not improved for more than
    ``patience`` steps; then nothing for ``cooldown`` steps.

    A metric ``a`` improves on the best ``b`` when ``a < b * (1 - threshold)``
    (``mode="min"``, ``threshold_mode="rel"``), ``a < b - threshold`` (``"abs"``), or the
    mirror images for ``mode="max"``. A reduction smaller than ``eps`` is skipped. Call
    ``step(metric)`` once per evaluation. The lrs depend on the metrics, so ``lr_at``
    raises ``NotImplementedError``.

    Args:
        optimizer: the optimizer.
        mode: ``"min"`` (the metric should fall) or ``"max"``.
        factor: the factor of each reduction, in [0, 1). Default 0.1.
        patience: how many steps without improvement are tolerated (an int >= 0). Default 10.
        threshold: the least improvement that counts. Default 1e-4.
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: steps to wait after a reduction before counting again. Default 0.
        min_lr: the lowest lr, one number or one per group. Default 0.
        eps: the least reduction applied. Default 1e-8.
    """

    _per_group_state = ("_last_lr", "min_lrs")

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0,
        eps: float = 1e-8,
    ) -> None:
        _check_optimizer(optimizer)
        self.factor = _real(factor, "factor")
        if not 0 <= self.factor < 1.0:
            raise ValueError(f"Factor should be < 1.0 (and not negative), got {factor}")
        self.optimizer = optimizer
        if isinstance(min_lr, (list, tuple)):
            self.default_min_lr: Any = None
            self.min_lrs = _per_group("min_lr", optimizer, min_lr)
        else:
            self.default_min_lr = _real(min_lr, "min_lr")
            self.min_lrs = [self.default_min_lr] * len(optimizer.param_groups)
        self.patience = _integer(patience, "patience", 0)
        self.cooldown = _integer(cooldown, "cooldown", 0)
        self.eps = _real(eps, "eps")
        self.threshold = _real(threshold, "threshold")
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode!r} is unknown! (use 'min' or 'max')")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {threshold_mode!r} is unknown! (use 'rel' or 'abs')")
        self.mode = mode
        self.threshold_mode = threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        """Whether the scheduler is waiting out a cooldown."""
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        """Whether the metric ``a`` improves on ``best`` by more than the threshold."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        """Takes one evaluation's metric and reduces the lrs if it has plateaued."""
        if isinstance(metrics, (str, bytes)):
            raise TypeError(f"metrics must be a number, got {metrics!r}")
        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(_EPOCH_DEPRECATED, UserWarning, stacklevel=2)
        self.last_epoch = epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"the optimizer has {len(groups)} param groups, but ReduceLROnPlateau was given "
                    f"{len(self.min_lrs)} min_lrs; set its min_lrs to one per group"
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def lr_at(self, step: int) -> list[float]:
        """Not available: ReduceLROnPlateau's lrs depend on the metrics it is given."""
        raise NotImplementedError(
            "ReduceLROnPlateau has no lr_at(): its lrs depend on the metrics passed to step()"
        )

    def _parse_state(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        parsed = super()._parse_state(state_dict)
        if parsed.get("mode", self.mode) not in ("min", "max"):
            raise ValueError(f"loaded mode {parsed['mode']!r} is unknown")
        if parsed.get("threshold_mode", self.threshold_mode) not in ("rel", "abs"):
            raise ValueError(f"loaded threshold_mode {parsed['threshold_mode']!r} is unknown")
        return parsed

    def _apply_state(self, parsed: dict[str, Any]) -> None:
        super()._apply_state(parsed)
        self.mode_worse = math.inf if self.mode == "min" else -math.inf
