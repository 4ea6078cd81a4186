"""The CNN family of Yarally et al.'s SimpleCNN, with depth as a parameter, in 2-D or 1-D.

    n_conv x [conv, kernel 3, same padding -> BatchNorm -> ReLU (if relu) -> MaxPool 2]
    flatten
    n_linear x [Linear (width halving from `hidden`) -> ReLU (if relu)]
    Linear classifier

Channels grow x3 per block from `channels`. The input decides the dimension: images
(C, H, W) get Conv2d / BatchNorm2d / MaxPool2d blocks, signals (C, L) (MNIST-1D) get
Conv1d / BatchNorm1d / MaxPool1d blocks of the same shape. No I/O here: modules and
counting only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from torch import nn

#: The layers of a conv block by the number of spatial dimensions of the input.
_LAYERS = {1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d),
           2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)}


@dataclass(frozen=True)
class ModelSpec:
    n_conv: int
    n_linear: int
    relu: bool
    channels: int = 8
    hidden: int = 128

    @classmethod
    def from_params(cls, params: dict) -> ModelSpec:
        return cls(int(params["n_conv"]), int(params["n_linear"]), bool(params["relu"]),
                   int(params.get("channels", 8)), int(params.get("hidden", 128)))


def _layers_for(input_shape: tuple[int, ...]):
    try:
        return _LAYERS[len(input_shape) - 1]
    except KeyError:
        raise ValueError(f"input_shape {tuple(input_shape)}: expected (C, L) for 1-D signals "
                         f"or (C, H, W) for images") from None


def build_model(spec: ModelSpec, input_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    conv, norm, pool = _layers_for(input_shape)
    c, spatial = input_shape[0], list(input_shape[1:])
    layers: list[nn.Module] = []
    for i in range(spec.n_conv):
        out = spec.channels * 3**i
        layers += [conv(c, out, kernel_size=3, padding=1), norm(out)]
        if spec.relu:
            layers.append(nn.ReLU())
        if min(spatial) >= 2:  # an 8x8 digit allows three halvings; stop pooling at 1x1
            layers.append(pool(2))
            spatial = [s // 2 for s in spatial]
        c = out
    layers.append(nn.Flatten())
    width = c * math.prod(spatial)
    for i in range(spec.n_linear):
        out = max(spec.hidden // 2**i, n_classes)
        layers.append(nn.Linear(width, out))
        if spec.relu:
            layers.append(nn.ReLU())
        width = out
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(model: nn.Sequential, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs for one sample, counted from the layer shapes, in 1-D or 2-D.

    A multiply-add counts as 2 FLOPs. Conv: 2 * C_in * (kernel elements) * C_out * (output
    positions: H_out * W_out, or L_out) (+ one per output element for the bias). Linear:
    2 * in * out (+ out). BatchNorm (inference form, scale and shift): 2 per element. ReLU:
    1 per element. MaxPool 2: (window elements - 1) comparisons per output element (3 for
    2x2, 1 for 2). Flatten: 0. Training costs roughly 3x the forward pass; we report the
    forward count, as FLOPs-based energy estimates do.
    """
    total = 0
    channels, spatial = int(input_shape[0]), [int(s) for s in input_shape[1:]]

    def numel() -> int:
        return channels * math.prod(spatial)

    for layer in model:
        if isinstance(layer, nn.Conv1d | nn.Conv2d):  # same padding: spatial size kept
            channels = layer.out_channels
            total += 2 * layer.in_channels // layer.groups * math.prod(layer.kernel_size) * numel()
            total += numel() if layer.bias is not None else 0
        elif isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            total += 2 * numel()
        elif isinstance(layer, nn.ReLU):
            total += numel()
        elif isinstance(layer, nn.MaxPool1d | nn.MaxPool2d):
            spatial = [s // 2 for s in spatial]
            total += (2 ** len(spatial) - 1) * numel()
        elif isinstance(layer, nn.Flatten):
            channels, spatial = numel(), []
        elif isinstance(layer, nn.Linear):
            total += 2 * layer.in_features * layer.out_features
            total += layer.out_features if layer.bias is not None else 0
            channels = layer.out_features
        else:  # pragma: no cover - the family has no other layers
            raise TypeError(f"flops_per_sample: no rule for {type(layer).__name__}")
    return int(total)


#: (input shape, classes) of each built-in dataset, to count a model's FLOPs before its data
#: is loaded (tests/test_seek.py checks digits' against the loaded data).
DATASET_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((1, 8, 8), 10),
    "mnist1d": ((1, 40), 10),
    "fashion-mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
}


@functools.lru_cache(maxsize=256)
def spec_flops(spec: ModelSpec, dataset: str) -> int:
    """flops_per_sample of the model `spec` builds for `dataset` (cached: one per shape)."""
    shape, n_classes = DATASET_SHAPES[dataset]
    return flops_per_sample(build_model(spec, shape, n_classes), shape)


def uses_batchnorm(model: nn.Module) -> bool:
    """True when the model holds a BatchNorm layer (which cannot train on a batch of one)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())

