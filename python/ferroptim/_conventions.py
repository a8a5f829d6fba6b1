"""Other frameworks' conventions (``convention="torch" | "optax" | "keras" | "paper"``).

A convention sets the defaults of a class's hyperparameters (``lr``, ``eps``, ``alpha``/
``rho``, ``weight_decay``, the initial accumulator) and its numerics settings (where ``eps``
sits, optax's ``eps_root``, Keras's epsilon-hat, ``lr`` inside the momentum buffer, the
AMSGrad maximum). Each class lists, per convention, the values of every setting a
convention changes (``Optimizer.conventions``); an argument passed explicitly wins over
its convention. ``docs/conventions.md`` has the table and the source of each value.

Groups store the resolved values, with ``convention`` naming the convention. A group that
has no ``convention`` key (every torch-convention group without an explicit numerics
setting, and every torch state dict) follows torch's numerics, so torch's groups and
state dicts are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._validate import flag, non_negative

#: The convention names, torch's first.
CONVENTIONS = ("torch", "optax", "keras", "paper")

#: Every numerics setting some class takes, with what it is (for refusing one that a
#: class does not take).
KNOBS = {
    "eps_root": "optax's eps_root (Adam, AdamW)",
    "eps_hat": "Keras's epsilon-hat (Adam, AdamW)",
    "amsgrad_max": "the AMSGrad maximum's target (Adam, AdamW)",
    "eps_in_sqrt": "eps under the square root (RMSprop, Adagrad)",
    "lr_in_momentum": "lr inside the momentum buffer (SGD, RMSprop)",
    "eps_in_max": "eps inside Adamax's maximum (Adamax)",
    "mu_product_float32": "NAdam's prod mu_i rounded to float32 (NAdam)",
}

#: AMSGrad's maximum: of the raw ``v`` (torch, Keras) or of the bias-corrected ``v_hat`` (optax).
AMSGRAD_MAX = ("v", "v_hat")


class _ConventionDefault:
    """The default of a torch argument whose value the convention sets (``lr``, ``eps``,
    ...); ``None`` stays an invalid value of those, as in torch."""

    def __repr__(self) -> str:
        return "<the convention's>"


#: The default of the arguments that a convention sets.
DEFAULT: Any = _ConventionDefault()


def check_convention(name: Any) -> str:
    """``name`` is a known convention; returns it."""
    if not isinstance(name, str) or name not in CONVENTIONS:
        raise ValueError(
            f"unknown convention {name!r} (expected one of {', '.join(repr(c) for c in CONVENTIONS)})"
        )
    return name


def resolve(cls: type, convention: Any, given: dict[str, Any], knobs: tuple[str, ...]) -> dict[str, Any]:
    """The constructor defaults of ``cls`` for ``convention``: each value of ``given`` that
    is :data:`DEFAULT` (a torch argument) or ``None`` (a numerics setting) takes the
    convention's (``cls.conventions[convention]``). The numerics settings ``knobs`` and
    ``convention`` itself are kept only when they are needed: with a convention other than
    torch's or an explicit setting; otherwise the groups are torch's."""
    check_convention(convention)
    table: dict[str, Any] = cls.conventions[convention]  # type: ignore[attr-defined]
    settings = set(KNOBS) | set(knobs)
    out = {k: (table[k] if v is DEFAULT or (v is None and k in settings) else v) for k, v in given.items()}
    if convention == "torch" and all(given[k] is None for k in knobs):
        for k in knobs:
            del out[k]
    else:
        out["convention"] = convention
    return out


def group_defaults(opt: Any, group: Mapping[str, Any]) -> dict[str, Any]:
    """The values ``group`` takes for the keys it lacks: the optimizer's ``defaults``, or,
    for a group that names a convention other than the optimizer's, that convention's
    defaults of the class (``add_param_group({"params": ..., "convention": "keras"})``)."""
    name = group.get("convention")
    mine = opt.defaults.get("convention", "torch")
    if name is None or name == mine or not opt.conventions:
        return dict(opt.defaults)
    table = opt.conventions[check_convention(name)]
    return {**opt.defaults, **table, "convention": name}


def loaded_defaults(opt: Any, saved: Mapping[str, Any]) -> dict[str, Any]:
    """The values a loaded group takes for keys the saved group lacks. A saved group
    without ``convention`` (a torch state dict) follows torch's numerics: the
    optimizer's numerics settings are reset to torch's and ``convention`` is dropped."""
    restored = dict(opt.defaults)
    if "convention" in saved or "convention" not in restored:
        return restored
    del restored["convention"]
    restored.update((k, v) for k, v in opt.conventions["torch"].items() if k in restored)
    return restored


def validate(opt: Any, group: dict[str, Any]) -> None:
    """Checks ``group``'s ``convention`` and numerics settings; refuses a setting that the
    class does not take, and Keras's weight decay where the class cannot apply it."""
    name = group.get("convention", "torch")
    check_convention(name)
    if name != "torch" and not opt.conventions:
        raise ValueError(f"{type(opt).__name__} has only torch's convention, got convention={name!r}")
    own = set(opt.convention_knobs)
    for key in KNOBS:
        if key in group and key not in own:
            raise ValueError(
                f"{key} ({KNOBS[key]}) is not a setting of {type(opt).__name__}"
                + (f"; its settings are {', '.join(sorted(own))}" if own else "")
            )
    for key in ("eps_hat", "lr_in_momentum", "eps_in_max", "mu_product_float32"):
        if key in own and key in group:
            flag(group, key)
    if "eps_in_sqrt" in own and "eps_in_sqrt" in group:
        flag(group, "eps_in_sqrt")
    if "eps_root" in own and "eps_root" in group:
        non_negative(group, "eps_root")
    if "amsgrad_max" in own and "amsgrad_max" in group:
        if group["amsgrad_max"] not in AMSGRAD_MAX:
            raise ValueError(f"amsgrad_max must be 'v' or 'v_hat', got {group['amsgrad_max']!r}")
        if group["amsgrad_max"] == "v_hat" and group.get("eps_hat"):
            raise ValueError(
                "eps_hat (Keras's form) takes AMSGrad's maximum of the raw v: amsgrad_max must be 'v'"
            )
    decoupled = group.get("decoupled_weight_decay", type(opt).__name__ in ("AdamW", "Lion"))
    if name == "keras" and group.get("weight_decay", 0) != 0 and not decoupled:
        raise ValueError(
            f"Keras applies weight_decay decoupled (theta <- theta - lr * weight_decay * theta, before "
            f"the update), which {type(opt).__name__} does not implement; with convention='keras' "
            "use weight_decay=0, or convention='torch' for the L2 penalty"
        )
