"""One small training run that can be checkpointed with ``fo.save`` and resumed, for
``tests/test_checkpoint.py``.

The run: two named param groups (``w``, ``b`` and ``c``, ``s``, a 0-d parameter) whose
learning rates follow ``fo.lr_scheduler.SequentialLR`` (linear warmup, then cosine
annealing) attached to the optimizer, and seeded gradients per step (``s`` gets none for
the first steps, so a checkpoint can hold parameters without state).

Run as a script, ``python _resume.py CHECKPOINTS OUT``, it resumes each checkpoint of the
dict in ``CHECKPOINTS`` in this fresh process, trains it to the end and saves the
parameters and optimizer state of each to ``OUT``, under the same key.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

import ferroptim as fo

#: Parameter names and shapes of the two groups.
GROUPS = [{"w": (4, 3), "b": (3,)}, {"c": (2, 5), "s": ()}]
#: Steps in a whole run; ``s`` gets no gradient before ``LATE``.
TOTAL = 12
LATE = 4
#: The second group's own learning rate (the first uses the optimizer's default lr).
GROUP1_LR = 0.05


class Run:
    """An optimizer, its parameters (by name) and its learning-rate schedule."""

    def __init__(self, cls_name: str, kwargs: dict[str, Any], dtype: str) -> None:
        rng = np.random.default_rng(0)
        self.cls_name, self.kwargs, self.dtype = cls_name, kwargs, dtype
        self.params = {
            name: np.asarray(rng.standard_normal(shape), dtype=dtype)
            for group in GROUPS
            for name, shape in group.items()
        }
        self.step = 0
        groups = [{"params": [(n, self.params[n]) for n in GROUPS[0]]}]
        groups.append({"params": [(n, self.params[n]) for n in GROUPS[1]], "lr": GROUP1_LR})
        self.opt = getattr(fo, cls_name)(groups, **kwargs)
        warmup = fo.lr_scheduler.LinearLR(self.opt, start_factor=0.2, total_iters=3)
        cosine = fo.lr_scheduler.CosineAnnealingLR(self.opt, T_max=TOTAL, eta_min=1e-3)
        self.scheduler = fo.lr_scheduler.SequentialLR(self.opt, [warmup, cosine], milestones=[3])

    def gradients(self, k: int) -> list[np.ndarray | None]:
        rng = np.random.default_rng(1000 + k)
        grads: list[np.ndarray | None] = []
        for group in GROUPS:
            for name, shape in group.items():
                g = np.asarray(rng.standard_normal(shape), dtype=self.dtype)
                grads.append(None if name == "s" and k < LATE else g)
        return grads

    def train(self, stop: int) -> None:
        while self.step < stop:
            self.opt.step(grads=self.gradients(self.step))
            self.scheduler.step()
            self.step += 1

    def checkpoint(self) -> dict[str, Any]:
        return {
            "class": self.cls_name,
            "kwargs": self.kwargs,
            "dtype": self.dtype,
            "step": self.step,
            "params": self.params,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    @classmethod
    def resume(cls, ckpt: dict[str, Any]) -> Run:
        run = cls(ckpt["class"], ckpt["kwargs"], ckpt["dtype"])
        for name, value in ckpt["params"].items():
            run.params[name][...] = value
        run.opt.load_state_dict(ckpt["optimizer"])
        run.scheduler.load_state_dict(ckpt["scheduler"])
        run.step = ckpt["step"]
        return run


def _resume_all(checkpoints: str, out: str) -> None:
    results = {}
    for name, ckpt in fo.load(checkpoints).items():
        run = Run.resume(ckpt)
        run.train(TOTAL)
        results[name] = {"params": run.params, "optimizer": run.opt.state_dict()}
    fo.save(results, out)


if __name__ == "__main__":
    _resume_all(sys.argv[1], sys.argv[2])
