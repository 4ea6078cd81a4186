"""Optuna's search space as scikit-optimize's, both ways, and skopt's per-proposal work on it.

- `skopt_dimension`: the skopt dimension of an Optuna distribution; `_encode` / `_decode`:
  a trial's parameters as a skopt point and back (categorical choices and stepped values as
  indices; `_encoded`: remembered once the trial has finished);
- `fast_transform`: a skopt Space's `transform` with the same numbers, cheaper (columns
  split by `zip`, one-hot categoricals in numpy: `_Binarizer`), run on 1,000 acquisition
  candidates at every proposal;
- `fast_acquisition`: a skopt Optimizer's acquisition pass after its GP fit (`_tell`) and
  its check that the proposal is new (`_ask`), with the same numbers and random draws,
  cheaper: the candidates drawn and transformed column by column (`transformed_rvs`).
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
        return _transform_columns(self, [list(column) for column in columns], n)

    space.transform = types.MethodType(transform, space)


def _transform_columns(space, columns: list, n: int) -> np.ndarray:
    """skopt's Space.transform of the points whose columns (one list per dimension) these
    are: each dimension transforms its column, side by side."""
    return np.hstack([np.asarray(dim.transform(column)).reshape((n, -1))
                      for dim, column in zip(space.dimensions, columns, strict=True)])


def transformed_rvs(space, n_samples: int, rng) -> np.ndarray:
    """`space.transform(space.rvs(n_samples, random_state=rng))` for a space without a
    constraint: the same draws from `rng` (each dimension's in turn, as Space.rvs draws
    them) and the same array, without the rows. Space.rvs turns the columns it draws into a
    list of rows (skopt's `_transpose_list_array`, a Python loop over every value), which
    `transform` splits back into columns: most of the cost of drawing an acquisition's
    1,000 candidates, for nothing when only the transformed array is used. Each column is
    drawn and transformed by `_transformed_column`."""
    return np.hstack([np.asarray(_transformed_column(dim, n_samples, rng)).reshape(
        (n_samples, -1)) for dim in space.dimensions])


def _transformed_column(dim, n: int, rng):
    """`dim.transform(dim.rvs(n, random_state=rng))`: the same draw and numbers.

    Real and Integer: skopt's `rvs` draws in the warped space, maps back (its
    `inverse_transform`: the transformer's, clipped to the bounds, cast to the dimension's
    dtype) and hands the values over as a list (`tolist`) that `transform` turns back into
    an array: here the array is kept. One-hot Categorical (distinct categories, numpy
    `_Binarizer`): skopt's `rvs` draws category indices and returns the categories, which
    the encoder maps back to the same indices one value at a time before one-hot encoding
    them: here the indices are encoded. Anything else: skopt's own two calls."""
    from sklearn.utils import check_random_state
    from skopt.space import Categorical, Integer, Real
    from skopt.space.transformers import CategoricalEncoder

    kind = type(dim)
    if kind is Real or kind is Integer:  # Dimension.rvs, then Real/Integer.inverse_transform
        warped = dim._rvs.rvs(size=n, random_state=check_random_state(rng))
        values = np.clip(np.asarray(dim.transformer.inverse_transform(warped)),
                         dim.low, dim.high)
        values = values.astype(dim.dtype) if kind is Real else np.round(values).astype(dim.dtype)
        return dim.transform(values)
    encoder = getattr(dim, "transformer", None)
    if kind is Categorical and dim.transform_ == "onehot" \
            and isinstance(encoder, CategoricalEncoder) and isinstance(encoder._lb, _Binarizer) \
            and len(encoder.mapping_) == len(dim.categories):  # mapping_[categories[i]] == i
        indices = dim._rvs.rvs(size=n, random_state=rng)  # Categorical.rvs's draw
        return encoder._lb.transform(np.asarray(indices).reshape(n))
    return dim.transform(dim.rvs(n_samples=n, random_state=rng))


# ---------------------------------------------------------------- the Optimizer's hot path


def fast_acquisition(opt) -> None:
    """Give a skopt Optimizer (acq_optimizer "sampling", a space without a constraint) a
    cheaper `_tell` and `_ask`, with the same numbers: the GP fit, the candidates, the
    acquisition values, the random draws and the point returned are skopt's (tests compare
    the proposals with skopt's own code). Other optimizers keep skopt's own. Set on the
    instance, as `fast_transform`: a copy made by `Optimizer.copy` runs skopt's code."""
    import types

    if opt.acq_optimizer == "sampling" and getattr(opt.space, "constraint", None) is None:
        opt._tell = types.MethodType(_tell, opt)
        opt._ask = types.MethodType(_ask, opt)


def _tell(self, x, y, fit=True):
    """skopt's `Optimizer._tell` (acq_optimizer "sampling"): its bookkeeping (skopt's own,
    told not to fit), then its fit and acquisition pass with the candidates drawn by
    `transformed_rvs` (the same draws and array as `space.transform(space.rvs(...))`)."""
    from skopt import Optimizer
    from skopt.acquisition import _gaussian_acquisition

    # Xi, yi, the initial-point count, the cache; the result skopt returns (its `models`
    # is the optimizer's list, which the fit below appends to, as skopt's)
    result = Optimizer._tell(self, x, y, fit=False)
    if not (fit and self._n_initial_points <= 0 and self.base_estimator_ is not None):
        return result
    est = fitted_model(self)
    if hasattr(self, "next_xs_") and self.acq_func == "gp_hedge":
        self.gains_ -= est.predict(np.vstack(self.next_xs_))
    if self.max_model_queue_size is not None \
            and len(self.models) >= self.max_model_queue_size:
        self.models.pop(0)  # the oldest model
    self.models.append(est)

    X = transformed_rvs(self.space, self.n_points, self.rng)
    y_opt = np.min(self.yi)
    bounds = None if self.space.is_categorical else np.array(self.space.transformed_bounds)
    self.next_xs_ = []
    for cand_acq_func in self.cand_acq_funcs_:
        values = _gaussian_acquisition(X=X, model=est, y_opt=y_opt, acq_func=cand_acq_func,
                                       acq_func_kwargs=self.acq_func_kwargs)
        next_x = X[np.argmin(values)]
        if bounds is not None:
            next_x = np.clip(next_x, bounds[:, 0], bounds[:, 1])
        self.next_xs_.append(next_x)
    if self.acq_func == "gp_hedge":
        logits = np.array(self.gains_)
        logits -= np.max(logits)
        exp_logits = np.exp(self.eta * logits)
        probs = exp_logits / np.sum(exp_logits)
        next_x = self.next_xs_[np.argmax(self.rng.multinomial(1, probs))]
    else:
        next_x = self.next_xs_[0]
    self._next_x = self.space.inverse_transform(next_x.reshape((1, -1)))[0]
    return result


def fitted_model(opt):
    """The GP skopt's tell fits (its `models[-1]`): a clone of the Optimizer's estimator
    fitted on its told points, warnings off."""
    import warnings

    from sklearn.base import clone

    est = clone(opt.base_estimator_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(opt.space.transform(opt.Xi), opt.yi)
    return est


def _ask(self):
    """skopt's `Optimizer._ask`, whose check that the proposed point is new computes
    `space.distance` (a Python sum over the dimensions) to every told point; here one numpy
    pass first. skopt's "evaluated before" branch runs when some told point is within 1e-8
    of the proposal in total distance, so within 1e-8 in every dimension (the distances are
    |a - b| for numbers, 0 or 1 for categories); a point that is not within 1e-8 of any in
    every coordinate is returned as skopt returns it, and any other case (a possible
    duplicate, values that are not numbers) is left to skopt's own `_ask`."""
    from skopt import Optimizer

    if self._n_initial_points > 0 or self.base_estimator_ is None or not self.models \
            or not self.Xi:
        return Optimizer._ask(self)
    next_x = self._next_x
    try:
        told = np.asarray(self.Xi, dtype=float)
        point = np.asarray(next_x, dtype=float)
    except (TypeError, ValueError):  # categories that are not numbers
        return Optimizer._ask(self)
    if told.ndim != 2 or told.shape[1] != point.size or not np.all(np.isfinite(point)) \
            or np.any(np.max(np.abs(told - point), axis=1) <= 1e-8):
        return Optimizer._ask(self)
    return next_x


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


def _encoded(trial, space: dict[str, BaseDistribution], known: dict) -> list[Any] | None:
    """`_encode(trial.params, space)`, remembered in `known` (the rows of `space` by trial
    number, with the parameters they encode) once the trial has finished: its parameters
    never change, so a proposal encodes only the trials finished since the last one."""
    from optuna.trial import TrialState

    if trial.state == TrialState.RUNNING:  # its parameters may still grow
        return _encode(trial.params, space)
    hit = known.get(trial.number)
    if hit is None or hit[0] != trial.params:  # new, or another study's trial
        row = _encode(trial.params, space)
        hit = known[trial.number] = (dict(trial.params), None if row is None else tuple(row))
    return None if hit[1] is None else list(hit[1])


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
