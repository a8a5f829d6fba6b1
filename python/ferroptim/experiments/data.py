"""The experiments' data: scikit-learn's embedded digits, or MNIST's IDX files from disk.

Nothing is downloaded. Inputs are scaled to [0, 1] and flattened; the split into
train and test is fixed by a seed.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: IDX type codes (the third magic byte) and the big-endian dtypes they stand for.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass
class Dataset:
    """A classification set split into train and test; ``x`` rows are samples."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def features(self) -> int:
        """Input dimension."""
        return int(self.x_train.shape[1])

    @property
    def classes(self) -> int:
        """Number of classes (labels are ``0 .. classes-1``)."""
        return int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1

    def astype(self, dtype: np.dtype | type) -> Dataset:
        """The same data with inputs of ``dtype``."""
        return Dataset(
            self.name, self.x_train.astype(dtype), self.y_train, self.x_test.astype(dtype), self.y_test
        )


def digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 8×8 handwritten digits (shipped with it, no download),
    pixel values scaled from 0..16 to [0, 1], split at random with ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(test_fraction * len(y))
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", x[train], y[train], x[test], y[test])


def read_idx(path: str | Path) -> np.ndarray:
    """An array from an IDX file (LeCun's MNIST format), plain or gzip-compressed.

    The format: two zero bytes, a type code, the number of dimensions ``n``, then ``n``
    big-endian uint32 sizes, then the data in C order, big-endian.
    """
    path = Path(path)
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    raw = gzip.open(path).read() if gzipped else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = header + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX data of shape {shape} needs {expected} bytes, the file has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, stem: str) -> Path:
    """``stem`` in ``directory``, as torchvision or LeCun's site name it, gzipped or not."""
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(
        f"no {stem}[.gz] in {directory}: MNIST needs the four IDX files {list(MNIST_FILES.values())}"
    )


def mnist(data_dir: str | Path) -> Dataset:
    """MNIST from the four IDX files in ``data_dir`` (gzip or plain); 28×28 images
    flattened to 784 inputs in [0, 1], with MNIST's own train/test split."""
    directory = Path(data_dir)
    arrays = {key: read_idx(_find(directory, stem)) for key, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"MNIST {split} split: expected images (n, rows, cols) and labels (n,), "
                f"got {images.shape} and {labels.shape}"
            )
    return Dataset(
        "mnist",
        arrays["x_train"].reshape(len(arrays["x_train"]), -1) / 255.0,
        arrays["y_train"].astype(np.int64),
        arrays["x_test"].reshape(len(arrays["x_test"]), -1) / 255.0,
        arrays["y_test"].astype(np.int64),
    )


def load(name: str, data_dir: str | Path | None = None, seed: int = 0) -> Dataset:
    """The dataset ``name`` (``"digits"`` or ``"mnist"``, the latter from ``data_dir``)."""
    if name == "digits":
        return digits(seed=seed)
    if name == "mnist":
        if data_dir is None:
            raise ValueError("--dataset mnist needs --data-dir DIR holding MNIST's IDX files")
        return mnist(data_dir)
    raise ValueError(f"unknown dataset {name!r}: expected 'digits' or 'mnist'")
