"""Datasets as in-memory tensors, moved to the device once.

- `digits`: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes);
  no download. Pixels scaled to [0, 1], a fixed stratified train/validation split.
- `fashion-mnist`, `cifar10`: read from `data.root` through torchvision (the optional
  extra `vision`); nothing is downloaded at run time. A clear error says how to get them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import DataConfig
from .errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: torch.Tensor  # float32, (N, C, H, W)
    y_train: torch.Tensor  # int64, (N,)
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(self.name, self.x_train.to(device), self.y_train.to(device),
                       self.x_val.to(device), self.y_val.to(device), self.n_classes)


def _stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train_idx, val_idx = train_test_split(
        idx, test_size=val_fraction, random_state=seed, stratify=y
    )
    return np.sort(train_idx), np.sort(val_idx)


def _digits(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    tr, va = _stratified_split(y, cfg.val_fraction, cfg.split_seed)
    return Dataset("digits", torch.from_numpy(x[tr]), torch.from_numpy(y[tr]),
                   torch.from_numpy(x[va]), torch.from_numpy(y[va]), 10)


def _torchvision(cfg: DataConfig) -> Dataset:
    try:
        import torchvision  # noqa: F401 - optional extra
        from torchvision import datasets
    except Exception as exc:  # ImportError, or torchvision built for another torch
        raise ConfigError(
            f"data.dataset = {cfg.dataset!r} needs torchvision (pip install 'tuning-energy[vision]'),"
            f" which could not be imported: {exc}. Use data.dataset = 'digits' to run offline."
        ) from exc
    cls = {"fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[cfg.dataset]
    try:
        train = cls(cfg.root, train=True, download=False)
        test = cls(cfg.root, train=False, download=False)
    except RuntimeError as exc:
        raise ConfigError(
            f"data.dataset = {cfg.dataset!r}: no files under data.root = {cfg.root!r} ({exc}). "
            f"Download them once where there is internet with torchvision.datasets."
            f"{cls.__name__}({cfg.root!r}, download=True) and copy the folder here."
        ) from exc

    def arrays(ds):
        x = np.asarray(ds.data, dtype=np.float32) / 255.0
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.as_tensor(np.asarray(ds.targets))

    # Yarally et al. train on the training set and report accuracy on the test set; we keep
    # the test set as the validation set, as they did.
    xt, yt = arrays(train)
    xv, yv = arrays(test)
    return Dataset(cfg.dataset, xt, yt.long(), xv, yv.long(), 10)


def load_dataset(cfg: DataConfig) -> Dataset:
    if cfg.dataset == "digits":
        return _digits(cfg)
    return _torchvision(cfg)
