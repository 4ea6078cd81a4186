"""CIFAR-10's files: the "python version" batches, read without trusting the pickles.

Each of `data_batch_1..5` and `test_batch` is a pickled dict (written by Python 2, so read
with encoding='bytes'): b"data" a uint8 array (10,000 x 3,072: 1,024 red, then green, then
blue values of a 32x32 image, row by row), b"labels" a list of ints in 0..9. `batches.meta`
holds b"label_names". A pickle can run any code it names; these are read by an unpickler
that knows only numpy arrays and dtypes and refuses everything else with a DataError.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from tuning_energy.cnn.datasets.sources import CIFAR10_TRAIN
from tuning_energy.errors import DataError

PIXELS = 3 * 32 * 32


def _numpy_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numpy(._)core.numeric._frombuffer
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray,
                                           ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): codecs.encode}
    for core in ("numpy.core", "numpy._core"):  # numpy 1 wrote numpy.core, numpy 2 _core
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


_ALLOWED = _numpy_globals()


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR-10 batch "
                                         f"holds only numpy arrays, lists and bytes") from None


def load_pickle(path: Path) -> dict:
    """A CIFAR batch as a dict with str keys; DataError if it is anything else."""
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnly(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError,
            AttributeError, IndexError) as exc:
        raise DataError(f"{path}: not a CIFAR-10 batch ({type(exc).__name__}: {exc}); delete "
                        f"it to download it again") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of one batch file."""
    d = load_pickle(path)
    data, labels = d.get("data"), d.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != PIXELS:
        got = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{path}: 'data' is {got}, expected a uint8 array of N x {PIXELS}")
    y = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if y.shape != (len(data),):
        raise DataError(f"{path}: {len(data):,} images but {y.size:,} labels")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), y


def read_cifar10(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from `ROOT/cifar-10-batches-py`: images uint8
    (N, 3, 32, 32), labels int64."""
    meta = load_pickle(folder / "batches.meta")
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DataError(f"{folder / 'batches.meta'}: 'label_names' should list 10 classes")
    parts = [read_batch(folder / n) for n in CIFAR10_TRAIN]
    x_test, y_test = read_batch(folder / "test_batch")
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            x_test, y_test)
