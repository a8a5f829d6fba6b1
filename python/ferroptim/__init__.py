"""ferroptim: torch.optim's optimizers for NumPy, with Rust kernels that update arrays in place.

>>> import numpy as np, ferroptim as fo
>>> w = fo.Parameter(np.zeros(3))
>>> opt = fo.Adam([w], lr=0.1)
>>> w.grad = np.ones(3); opt.step()
"""

import os as _os
import warnings as _warnings
from importlib.metadata import version as _version

from . import distributed, lr_scheduler
from ._core import MinibatchSampler, get_num_threads, get_simd_level, set_num_threads, set_simd_level
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adagrad_norm import AdagradNorm
from .adam import Adam, AdamW
from .adamax import Adamax
from .clip import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm
from .flat import BufferedParameter, FlatParameters, flatten_parameters
from .lion import Lion
from .nadam import NAdam
from .optimizer import Optimizer
from .parameter import Parameter
from .radam import RAdam
from .rmsprop import RMSprop
from .serialization import load, save
from .sgd import SGD

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "AdagradNorm",
    "Adam",
    "AdamW",
    "BufferedParameter",
    "Adamax",
    "Lion",
    "FlatParameters",
    "MinibatchSampler",
    "NAdam",
    "Optimizer",
    "Parameter",
    "RAdam",
    "RMSprop",
    "clip_grad_norm_",
    "clip_grad_value_",
    "clip_grads_with_norm_",
    "distributed",
    "flatten_parameters",
    "get_num_threads",
    "get_simd_level",
    "lr_scheduler",
    "get_total_norm",
    "load",
    "save",
    "set_num_threads",
    "set_simd_level",
]
# The version is Cargo.toml's, which maturin writes into the installed package's metadata.
__version__ = _version("ferroptim")

_threads = _os.environ.get("FERROPTIM_NUM_THREADS", "").strip()
if _threads and not (_threads.isdigit() and int(_threads) > 0):
    _warnings.warn(
        f"FERROPTIM_NUM_THREADS={_threads!r} is not a positive integer; using the number of physical cores",
        RuntimeWarning,
        stacklevel=2,
    )
