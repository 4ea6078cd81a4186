"""Optuna's search space as scikit-optimize's, both ways, and skopt's transform of it.

- `skopt_dimension`: the skopt dimension of an Optuna distribution; `_encode` / `_decode`:
  a trial's parameters as a skopt point and back (categorical choices and stepped values as
  indices);
- `fast_transform`: a skopt Space's `transform` with the same numbers, cheaper (columns
  split by `zip`, one-hot categoricals in numpy: `_Binarizer`), run on 1,000 acquisition
  candidates at every proposal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


def _step_count(dist: FloatDistribution | IntDistribution) -> int | None:
    """Number of steps of a stepped distribution (None without a step)."""
    if dist.step is None or (isinstance(dist, IntDistribution) and dist.step == 1):
        return None
    return int(round((dist.high - dist.low) / dist.step))


def skopt_dimension(name: str, dist: BaseDistribution):
    """The scikit-optimize dimension of an Optuna distribution (more than one value).

    Categorical choices and stepped values become indices (any choice type, exact steps).
    """
    from skopt.space import Categorical, Integer, Real

    if isinstance(dist, CategoricalDistribution):
        return Categorical(list(range(len(dist.choices))), name=name)
    if not isinstance(dist, FloatDistribution | IntDistribution):
        raise TypeError(f"SkoptSampler: unsupported distribution {dist!r} of {name!r}")
    steps = _step_count(dist)
    if steps is not None:
        return Integer(0, steps, name=name)
    prior = "log-uniform" if dist.log else "uniform"
    if isinstance(dist, IntDistribution):
        return Integer(dist.low, dist.high, prior=prior, name=name)
    return Real(dist.low, dist.high, prior=prior, name=name)


class _Binarizer:
    """sklearn's fitted LabelBinarizer (0/1 labels) with `transform` in numpy, for skopt's
    one-hot CategoricalEncoder: the same integer array (one column for two classes, one per
    class otherwise), without sklearn's checks of the labels and the sparse matrix it builds
    and densifies at every call (tests check the transforms and the proposals are the
    same)."""

    def __init__(self, fitted) -> None:
        self._fitted = fitted
        self.classes_ = fitted.classes_

    def transform(self, y) -> np.ndarray:
        y = np.asarray(y)
        if len(self.classes_) == 2:
            return (y == self.classes_[1]).astype(int).reshape(-1, 1)
        return (y[:, None] == self.classes_[None, :]).astype(int)

    def inverse_transform(self, Y, threshold=None):
        return self._fitted.inverse_transform(Y, threshold)


def fast_transform(space) -> None:
    """Make a skopt Space's `transform` cheaper, with the same numbers: its points split into
    columns by `zip` (skopt's loop appends one value at a time), and each one-hot categorical
    dimension given the numpy `_Binarizer`. Set on the instance: a pickled copy keeps skopt's
    own (the same numbers)."""
    import types

    from skopt.space.transformers import CategoricalEncoder

    for dim in space.dimensions:
        encoder = getattr(dim, "transformer", None)
        if isinstance(encoder, CategoricalEncoder) and not isinstance(encoder._lb, _Binarizer):
            encoder._lb = _Binarizer(encoder._lb)

    def transform(self, X):
        n = len(X)
        columns = list(zip(*X, strict=True)) if n else [()] * self.n_dims
        return np.hstack([np.asarray(dim.transform(list(column))).reshape((n, -1))
                          for dim, column in zip(self.dimensions, columns, strict=True)])

    space.transform = types.MethodType(transform, space)


def _encode(params: dict[str, Any], space: dict[str, BaseDistribution]) -> list[Any] | None:
    """A trial's parameters as a skopt point; None when one is missing or out of the space."""
    row: list[Any] = []
    for name, dist in space.items():
        if name not in params:
            return None
        try:
            internal = dist.to_internal_repr(params[name])
        except ValueError:
            return None
        if not dist._contains(internal):
            return None
        if isinstance(dist, CategoricalDistribution):
            row.append(int(internal))
        elif (steps := _step_count(dist)) is not None:
            row.append(min(steps, max(0, int(round((internal - dist.low) / dist.step)))))
        elif isinstance(dist, IntDistribution):
            row.append(int(internal))
        else:
            row.append(float(internal))
    return row


def _decode(point: list[Any], space: dict[str, BaseDistribution]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (name, dist), value in zip(space.items(), point, strict=True):
        if isinstance(dist, CategoricalDistribution):
            out[name] = dist.choices[int(value)]
            continue
        if (steps := _step_count(dist)) is not None:
            value = dist.low + min(steps, int(value)) * dist.step
        value = min(max(value, dist.low), dist.high)
        out[name] = int(value) if isinstance(dist, IntDistribution) else float(value)
    return out
