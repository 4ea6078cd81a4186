"""The CNN family of Yarally et al.'s SimpleCNN, with depth as a parameter.

    n_conv x [3x3 conv (same padding) -> BatchNorm -> ReLU (if relu) -> MaxPool 2]
    flatten
    n_linear x [Linear (width halving from `hidden`) -> ReLU (if relu)]
    Linear classifier

Channels grow x3 per block from `channels`. No I/O here: modules and counting only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn


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


def build_model(spec: ModelSpec, input_shape: tuple[int, int, int], n_classes: int) -> nn.Sequential:
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for i in range(spec.n_conv):
        out = spec.channels * 3**i
        layers += [nn.Conv2d(c, out, kernel_size=3, padding=1), nn.BatchNorm2d(out)]
        if spec.relu:
            layers.append(nn.ReLU())
        if min(h, w) >= 2:  # an 8x8 digit allows three halvings; stop pooling at 1x1
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = out
    layers.append(nn.Flatten())
    width = c * h * w
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


def flops_per_sample(model: nn.Sequential, input_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs for one sample, counted from the layer shapes.

    A multiply-add counts as 2 FLOPs. Conv2d: 2 * C_in * k_h * k_w * C_out * H_out * W_out
    (+ H_out * W_out * C_out for the bias). Linear: 2 * in * out (+ out). BatchNorm (inference
    form, scale and shift): 2 per element. ReLU: 1 per element. MaxPool 2x2: 3 comparisons
    per output element. Flatten: 0. Training costs roughly 3x the forward pass; we report
    the forward count, as FLOPs-based energy estimates do.
    """
    total = 0
    shape = torch.Size((1, *input_shape))
    for layer in model:
        if isinstance(layer, nn.Conv2d):
            out_shape = torch.Size((1, layer.out_channels, shape[2], shape[3]))  # same padding
            kh, kw = layer.kernel_size
            n_out = out_shape[1] * out_shape[2] * out_shape[3]
            total += 2 * layer.in_channels // layer.groups * kh * kw * n_out
            total += n_out if layer.bias is not None else 0
            shape = out_shape
        elif isinstance(layer, nn.BatchNorm2d):
            total += 2 * shape[1] * shape[2] * shape[3]
        elif isinstance(layer, nn.ReLU):
            total += int(torch.Size(shape[1:]).numel())
        elif isinstance(layer, nn.MaxPool2d):
            shape = torch.Size((1, shape[1], shape[2] // 2, shape[3] // 2))
            total += 3 * shape[1] * shape[2] * shape[3]
        elif isinstance(layer, nn.Flatten):
            shape = torch.Size((1, int(torch.Size(shape[1:]).numel())))
        elif isinstance(layer, nn.Linear):
            total += 2 * layer.in_features * layer.out_features
            total += layer.out_features if layer.bias is not None else 0
            shape = torch.Size((1, layer.out_features))
        else:  # pragma: no cover - the family has no other layers
            raise TypeError(f"flops_per_sample: no rule for {type(layer).__name__}")
    return int(total)


#: (input shape, classes) of each built-in dataset, to count a model's FLOPs before its data
#: is loaded (tests/test_seek.py checks digits' against the loaded data).
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 10),
    "fashion-mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
}


@functools.lru_cache(maxsize=256)
def spec_flops(spec: ModelSpec, dataset: str) -> int:
    """flops_per_sample of the model `spec` builds for `dataset` (cached: one per shape)."""
    shape, n_classes = DATASET_SHAPES[dataset]
    return flops_per_sample(build_model(spec, shape, n_classes), shape)
