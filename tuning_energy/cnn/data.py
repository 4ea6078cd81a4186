"""Datasets as in-memory tensors (train, validation, test), moved to the device once.

- `digits`: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes); no
  download. It has no test set of its own: a stratified 20% (360 images) is held out as the
  test set with a fixed seed (the same test images for every split_seed).
- `mnist1d`: MNIST-1D (Greydanus 2020), 4,000 train + 1,000 test signals of length 40,
  generated locally by the `mnist1d` package (tuning_energy.cnn.datasets.mnist1d); no
  download. Signals are (N, 1, 40): the CNN family builds its 1-D form for them.
- `fashion-mnist` (60,000 + 10,000 28x28 greyscale) and `cifar10` (50,000 + 10,000 32x32
  colour): read with numpy from `data.root` in torchvision's layout, downloaded there on
  first use (tuning_energy.cnn.datasets). torchvision is never needed.

Validation (what the strategies select on), `data.validation`:
- `"split"` (default): a stratified `val_fraction` of the training set, drawn with
  `split_seed`; the model trains on the rest. The test set is touched once per trial, at
  the end, for `test_accuracy`.
- `"test"`: Yarally et al.'s protocol: train on the whole training set and select on the
  test set. The selected accuracy is then optimistic (it was chosen on the data it is
  reported on); the study start line and the report say so.

Pixels are scaled to [0, 1], images are (N, C, H, W) float32, labels int64 (MNIST-1D:
signals (N, C, L), standardised by its generator).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tuning_energy.cnn.datasets import SOURCES, Source, ensure
from tuning_energy.config import DataConfig
from tuning_energy.errors import ConfigError

DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: torch.Tensor  # float32, (N, C, H, W), or (N, C, L) for 1-D signals
    y_train: torch.Tensor  # int64, (N,)
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    validation: str = "split"  # "split" (from the training set) or "test" (the test set)
    note: str = ""  # where it came from and how it was split, for the study's start line

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> Dataset:
        x_test, y_test = self.x_test.to(device), self.y_test.to(device)
        same = self.x_val is self.x_test  # validation = "test": one copy on the device
        return Dataset(self.name, self.x_train.to(device), self.y_train.to(device),
                       x_test if same else self.x_val.to(device),
                       y_test if same else self.y_val.to(device), x_test, y_test,
                       self.n_classes, self.validation, self.note)

    def describe(self) -> str:
        """One line: sizes, where validation comes from, and where the files were read."""
        sizes = (f"{len(self.x_train):,} train / {len(self.x_val):,} validation / "
                 f"{len(self.x_test):,} test")
        if self.validation == "test":
            how = ("validation = the TEST set (data.validation = 'test', the paper's protocol:"
                   " the strategies select on the test set, so the selected accuracy is "
                   "optimistic and test_accuracy repeats it)")
        else:
            how = "validation split from the training set; the test set is held out"
        return f"{self.name}, {sizes}; {how}{'; ' + self.note if self.note else ''}"


def default_root(environ: Mapping[str, str]) -> Path:
    """The per-user cache folder for downloaded datasets: $XDG_CACHE_HOME/tuning-energy/data,
    else ~/.cache/tuning-energy/data. The CLI calls this (the edge) when data.root is unset."""
    base = environ.get("XDG_CACHE_HOME") or ""
    cache = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return cache / "tuning-energy" / "data"


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) sorted indices: `fraction` of each class held out, drawn with `seed`."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    kept, held = train_test_split(idx, test_size=fraction, random_state=seed, stratify=y)
    return np.sort(kept), np.sort(held)


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))


def assemble(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
             y_test: np.ndarray, cfg: DataConfig, note: str = "") -> Dataset:
    """Float images in [0, 1] (already scaled), labels, and the validation set `cfg` asks for."""
    xt, yt = _tensors(x_test, y_test)
    if cfg.validation == "test":
        xtr, ytr = _tensors(x_train, y_train)
        return Dataset(name, xtr, ytr, xt, yt, xt, yt, 10, "test", note)
    tr, va = stratified_split(y_train, cfg.val_fraction, cfg.split_seed)
    xtr, ytr = _tensors(x_train[tr], y_train[tr])
    xva, yva = _tensors(x_train[va], y_train[va])
    note = ", ".join(p for p in (note, f"val_fraction {cfg.val_fraction:g}, split_seed "
                                       f"{cfg.split_seed}") if p)
    return Dataset(name, xtr, ytr, xva, yva, xt, yt, 10, "split", note)


def _digits(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    rest, test = stratified_split(y, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
    return assemble("digits", x[rest], y[rest], x[test], y[test], cfg,
                    note=f"test = {DIGITS_TEST_FRACTION:.0%} of digits held out (fixed seed)")


def _mnist1d(cfg: DataConfig) -> Dataset:
    from tuning_energy.cnn.datasets.mnist1d import make_mnist1d

    x_train, y_train, x_test, y_test = make_mnist1d()
    return assemble("mnist1d", x_train, y_train, x_test, y_test, cfg,
                    note="generated by the mnist1d package (make_dataset, seed 42), offline")


def _scaled(x: np.ndarray) -> np.ndarray:
    out = x.astype(np.float32)
    out /= 255.0
    return out


def _from_files(cfg: DataConfig, source: Source, progress: bool, out) -> Dataset:
    from tuning_energy.cnn.datasets.cifar import read_cifar10
    from tuning_energy.cnn.datasets.idx import read_fashion_mnist

    if cfg.root is None:
        raise ConfigError(f"data.root: not set; data.dataset = {cfg.dataset!r} needs a folder "
                          f"for its files (the CLI uses the per-user cache, e.g. "
                          f"~/.cache/tuning-energy/data: tuning_energy.cnn.data.default_root)")
    root = Path(cfg.root).expanduser()
    folder = ensure(source, root, progress=progress, out=out)
    if cfg.dataset == "fashion-mnist":
        x_train, y_train, x_test, y_test = read_fashion_mnist(folder)
        x_train, x_test = x_train[:, None], x_test[:, None]  # one channel
    else:
        x_train, y_train, x_test, y_test = read_cifar10(folder)
    return assemble(cfg.dataset, _scaled(x_train), y_train.astype(np.int64), _scaled(x_test),
                    y_test.astype(np.int64), cfg, note=f"files in {folder}")


def load_dataset(cfg: DataConfig, *, source: Source | None = None, progress: bool = False,
                 out=None) -> Dataset:
    """The dataset `cfg` names, downloading its files into `cfg.root` on first use.

    source: where the files come from (default the published one for `cfg.dataset`, from
    `cfg.mirror` when set; tests give their own base URL and checksums). Raises DataError when the files are neither
    there nor downloadable, naming the folder, the files and where to get them.
    """
    if cfg.dataset == "digits":
        return _digits(cfg)
    if cfg.dataset == "mnist1d":
        return _mnist1d(cfg)
    out = out if out is not None else sys.stderr
    source = source or SOURCES[cfg.dataset]
    if cfg.mirror is not None:
        source = source.replace(base_url=cfg.mirror)
    return _from_files(cfg, source, progress, out)

