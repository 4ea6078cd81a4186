"""MNIST-1D (Greydanus, "Scaling down deep learning", 2020), generated here, never downloaded.

The `mnist1d` package builds the data set from ten 1-D digit templates (padding, shear,
translation, correlated and iid noise: `mnist1d.data.make_dataset`). Its `get_dataset`
would download a pickle from the web first; it is never called. `make_dataset` is called
with the package's default arguments (5,000 signals of length 40, seed 42, 4,000 train and
1,000 test), so every machine builds the same arrays, in about a second, offline.

`make_dataset` seeds numpy's and Python's global random generators (`set_seed`); their
states are put back afterwards, so that loading the data changes no other random stream.
"""

from __future__ import annotations

import random

import numpy as np

#: The package's defaults (`mnist1d.data.get_dataset_args`), written out: a newer package
#: with other defaults still builds the same data set here.
ARGS = {"num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": [36, 60],
        "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25,
        "iid_noise_scale": 2e-2, "shear_scale": 0.75, "shuffle_seq": False,
        "final_seq_length": 40, "seed": 42}


def make_mnist1d() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train (4000, 1, 40) float32, y_train int64, x_test (1000, 1, 40), y_test)."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(ObjectView(dict(ARGS)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)

    def signals(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.astype(np.float32)[:, None, :])  # one channel

    return (signals(d["x"]), d["y"].astype(np.int64), signals(d["x_test"]),
            d["y_test"].astype(np.int64))
