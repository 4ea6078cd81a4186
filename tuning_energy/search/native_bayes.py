"""The default `bayes` proposal without importing scikit-optimize: skopt's numbers and random
draws, without its import.

Importing skopt costs ~0.1 s of CPU in a study's process (~0.6 J on the estimate meter,
a quarter of the default study's proposing energy), most of it scikit-learn's ensemble,
tree and linear models, which skopt's `__init__` imports and `bayes` never uses. For the
options most studies use (`eligible`), SkoptSampler proposes here instead, computing what
its skopt path (bayes.py: skopt's Optimizer with skopt_gp's FastGP) would, operation by
operation, with the same draws from the same random state (tests compare the proposals
with skopt's Optimizer for random spaces, data and seeds). The GP arithmetic is shared with
that path (gp_likelihood.py): skopt's numbers, except the predictive standard deviation,
which differs from skopt's einsum by rounding (~1e-13 relative; tests bound it):

- `GPSpace`: skopt's normalised Space of the Optuna distributions (`skopt_dimension`'s
  mapping): numbers scaled to [0, 1] (log10 first for a log prior), integers rounded,
  categories one-hot (one column for two); its transform, random draws, inverse transform
  and distance;
- `fit_kernel`: the GP kernel's L-BFGS fit (scikit-learn's GaussianProcessRegressor with
  skopt's cooked kernel and `MaternLikelihood`'s objective) -> (kernel, noise level);
- `ConditionedGP`: the GP with that kernel fixed, conditioned on the told points (the
  Cholesky factor of `MaternLikelihood`), its predictive mean and standard deviation;
- `propose`: skopt's acquisition pass (PI, EI or LCB at `n_points` random candidates), the
  clip and inverse transform of the best, and its check that the point is new.

Anything else (gp_hedge, acq_optimizer lbfgs, EIps, a kernel refitted at every proposal,
a space of categories only or of a single transformed column) runs skopt's code (bayes.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from scipy.stats import norm, rv_discrete, uniform
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.utils import check_random_state

from tuning_energy.search.gp_likelihood import (
    MaternLikelihood,
    likelihood_objective,
    normalize_y,
    predict_mean_std,
)
from tuning_energy.search.skopt_space import _step_count

#: the acquisition functions computed here (skopt's `_gaussian_acquisition`)
ACQ_FUNCS = ("PI", "EI", "LCB")


def eligible(options) -> bool:
    """Whether SkoptSampler with these options proposes here: an acquisition of ACQ_FUNCS
    (a cost model's EIps is not one) optimised by sampling, and a kernel that is always
    fitted before the GP proposes (refit every k > 1 trials, the random points a multiple
    of k: skopt would otherwise fit the kernel inside each proposal)."""
    k, n0 = options.gp_refit_every, options.n_initial_points
    return (options.acq_func in ACQ_FUNCS and options.acq_optimizer == "sampling"
            and k > 1 and n0 >= k and n0 % k == 0)


# ---------------------------------------------------------------- the space


@dataclass(frozen=True)
class _Dim:
    """One dimension, as skopt's normalised Real / Integer / Categorical."""

    kind: str  # "real", "int" or "cat"
    low: Any = None  # the dimension's bounds (a category count for "cat")
    high: Any = None
    log: bool = False
    lo: float = 0.0  # skopt's Normalize bounds (log10 of the bounds for a log prior)
    hi: float = 1.0

    @property
    def width(self) -> int:
        """Its transformed columns: one for a number and for two categories (one-hot)."""
        return 1 if self.kind != "cat" or self.high == 2 else self.high


def _dim(dist: BaseDistribution) -> _Dim:
    """skopt_dimension's skopt dimension of `dist`, as a `_Dim`."""
    if isinstance(dist, CategoricalDistribution):
        return _Dim("cat", 0, len(dist.choices))
    steps = _step_count(dist)  # type: ignore[arg-type]
    if steps is not None:
        return _Dim("int", 0, steps, False, 0.0, float(steps))
    kind = "int" if isinstance(dist, IntDistribution) else "real"
    if dist.log:  # type: ignore[attr-defined]
        # Normalize(np.log10(low) / log_base, ...), log_base = np.log10(10) = 1.0
        return _Dim(kind, dist.low, dist.high, True,  # type: ignore[attr-defined]
                    float(np.log10(dist.low) / np.log10(10)),  # type: ignore[attr-defined]
                    float(np.log10(dist.high) / np.log10(10)))  # type: ignore[attr-defined]
    return _Dim(kind, dist.low, dist.high, False,  # type: ignore[attr-defined]
                float(dist.low), float(dist.high))  # type: ignore[attr-defined]


class GPSpace:
    """skopt's Space of `skopt_dimension`'s dimensions as the GP Optimizer normalises it."""

    def __init__(self, space: dict[str, BaseDistribution]) -> None:
        self.dims = [_dim(d) for d in space.values()]
        # skopt's `_rvs`: uniform on [0, 1] (its `_uniform_inclusive`) for numbers, the
        # categories' indices for categories
        unit = uniform(loc=0.0, scale=np.nextafter(1.0, 2.0))
        self._rvs = [unit if d.kind != "cat" else rv_discrete(
            values=(range(d.high), np.tile(1.0 / d.high, d.high))) for d in self.dims]

    @classmethod
    def of(cls, space: dict[str, BaseDistribution]) -> GPSpace | None:
        """The GPSpace of `space`, or None where the GP here does not model it: it needs a
        number among the dimensions (skopt's GP on categories only uses a Hamming kernel)
        and more than one transformed column (anisotropic length scales)."""
        out = cls(space)
        fits = any(d.kind != "cat" for d in out.dims) and sum(d.width for d in out.dims) > 1
        return out if fits else None

    # -- skopt's transform: a column of values -> its transformed columns
    @staticmethod
    def _transform(d: _Dim, values) -> np.ndarray:
        if d.kind == "cat":  # CategoricalEncoder: sklearn's LabelBinarizer on the indices
            idx = np.asarray(values)
            if d.high == 2:
                return (idx == 1).astype(int).reshape(-1, 1)
            return (idx[:, None] == np.arange(d.high)[None, :]).astype(int)
        if d.log:  # Pipeline([LogN(10), Normalize(lo, hi)])
            x = np.log10(np.asarray(values, dtype=float)) / np.log10(10)
            return (x - d.lo) / (d.hi - d.lo)
        x = np.asarray(values)  # Pipeline([Identity(), Normalize(lo, hi, is_int)])
        if d.kind == "int":
            return (np.round(x).astype(int) - d.lo) / (d.hi - d.lo)
        return (x - d.lo) / (d.hi - d.lo)

    @staticmethod
    def _values(d: _Dim, x: np.ndarray) -> np.ndarray:
        """The dimension's `inverse_transform` of a transformed number column (as an array:
        skopt clips to the bounds and casts; `tolist` makes the point's Python numbers)."""
        x = x * (d.hi - d.lo) + d.lo  # Normalize.inverse_transform
        if d.log:
            x = 10 ** np.asarray(x, dtype=float)  # LogN(10).inverse_transform
        elif d.kind == "int":  # Normalize(is_int=True)
            x = np.round(x).astype(int)
        x = np.clip(x, d.low, d.high)
        return np.round(x).astype(int) if d.kind == "int" else x.astype(float)

    def transform(self, rows: list) -> np.ndarray:
        """skopt's `Space.transform` of points (one list per point)."""
        n = len(rows)
        columns = list(zip(*rows, strict=True)) if n else [()] * len(self.dims)
        return np.hstack([np.asarray(self._transform(d, list(c))).reshape((n, -1))
                          for d, c in zip(self.dims, columns, strict=True)])

    def transformed_rvs(self, n: int, rng) -> np.ndarray:
        """`space.transform(space.rvs(n, random_state=rng))`: each dimension's draw in turn."""
        out = []
        for d, rvs in zip(self.dims, self._rvs, strict=True):
            if d.kind == "cat":
                column = self._transform(d, rvs.rvs(size=n, random_state=rng))
            else:  # Dimension.rvs: drawn in the warped space, mapped back, transformed
                warped = rvs.rvs(size=n, random_state=rng)
                column = self._transform(d, self._values(d, warped))
            out.append(np.asarray(column).reshape((n, -1)))
        return np.hstack(out)

    def rvs_point(self, rng) -> list:
        """`space.rvs(random_state=rng)[0]`: one random point."""
        point = []
        for d, rvs in zip(self.dims, self._rvs, strict=True):
            if d.kind == "cat":
                point.append(int(rvs.rvs(size=1, random_state=rng)[0]))
            else:
                warped = rvs.rvs(size=1, random_state=rng)
                point.append(self._values(d, warped).tolist()[0])
        return point

    def inverse_point(self, x: np.ndarray) -> list:
        """`space.inverse_transform(x.reshape((1, -1)))[0]` for one transformed point."""
        point, start = [], 0
        for d in self.dims:
            part = x[start:start + d.width]
            start += d.width
            if d.kind != "cat":
                point.append(self._values(d, part[:1]).tolist()[0])
            elif d.width == 1:  # LabelBinarizer, two classes: above its threshold 0.5
                point.append(int(part[0] > 0.5))
            else:
                point.append(int(np.argmax(part)))
        return point

    def distances(self, point: list, rows: list) -> np.ndarray:
        """skopt's `space.distance(point, row)` for each told row: |a - b| summed over
        numbers, 0 or 1 for categories, in the dimensions' order."""
        told = np.asarray(rows, dtype=float)
        total = np.zeros(len(rows))
        for j, (d, v) in enumerate(zip(self.dims, point, strict=True)):
            column = told[:, j]
            total = total + ((column != v).astype(float) if d.kind == "cat"
                             else np.abs(v - column))
        return total


# ---------------------------------------------------------------- the GP


class _KernelFitGP(GaussianProcessRegressor):
    """scikit-learn's GP, its L-BFGS kernel fit on `MaternLikelihood`'s objective (as
    skopt_gp.FastGP's)."""

    def _constrained_optimization(self, obj_func, initial_theta, bounds):
        return super()._constrained_optimization(likelihood_objective(self, obj_func),
                                                 initial_theta, bounds)


def cooked_kernel(n_dims: int):
    """skopt's `cook_estimator("GP")` kernel, with the WhiteKernel its fit adds."""
    return ConstantKernel(1.0, (0.01, 1000.0)) * Matern(
        length_scale=np.ones(n_dims), length_scale_bounds=[(0.01, 100)] * n_dims,
        nu=2.5) + WhiteKernel()


def fit_kernel(X: np.ndarray, y: list, n_restarts: int, seed: int | None):
    """(kernel, noise level) of skopt's GP fitted on (X, y) (`fitted_hyperparameters`)."""
    gp = _KernelFitGP(kernel=cooked_kernel(X.shape[1]), normalize_y=True,
                      n_restarts_optimizer=n_restarts, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gp.fit(X, y)
    return gp.kernel_.k1, gp.kernel_.k2.noise_level


class ConditionedGP:
    """skopt's GP with a fixed kernel (`kernel=..., noise=..., optimizer=None`) fitted on
    (X, y): `FastGP._fit_fixed`'s numbers, and `FastGP.predict`'s mean and deviation."""

    def __init__(self, kernel, noise: float, X: np.ndarray, y: list, alpha: float = 1e-10):
        self.y_mean, self.y_std, y_train = normalize_y(np.asarray(y, dtype=float))
        kernel_ = clone(kernel + WhiteKernel(noise_level=noise, noise_level_bounds="fixed"))
        likelihood = MaternLikelihood.of(kernel_, X, y_train, alpha)
        if likelihood is None:
            raise TypeError(f"native_bayes: not the cooked kernel: {kernel_!r}")
        conditioned = likelihood.condition(kernel_)
        if conditioned is None:
            raise np.linalg.LinAlgError("native_bayes: the kernel matrix is not positive "
                                        "definite")
        _, self.L, self.alpha_ = conditioned
        kernel_.k2 = WhiteKernel(noise_level=0.0)  # skopt's fit: noise-free predictions
        self.kernel_, self.X = kernel_, X

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation at X (negative variances warn and become 0, as
        skopt's; its acquisition ignores the warning, and so does `acquisition`)."""
        return predict_mean_std(self.kernel_, self.X, self.L, self.alpha_, self.y_mean,
                                self.y_std, X)


# ---------------------------------------------------------------- the proposal


def acquisition(X: np.ndarray, gp: ConditionedGP, y_opt, acq_func: str, xi: float,
                kappa: float) -> np.ndarray:
    """skopt's `_gaussian_acquisition(X, gp, y_opt, acq_func, {"xi", "kappa"})`: lower is
    better."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mu, std = gp.predict(X)
    if acq_func == "LCB":
        return mu - kappa * std
    values = np.zeros_like(mu)
    mask = std > 0
    improve = y_opt - xi - mu[mask]
    scaled = improve / std[mask]
    cdf = norm.cdf(scaled)
    if acq_func == "PI":
        values[mask] = cdf
    else:  # EI
        values[mask] = improve * cdf + std[mask] * norm.pdf(scaled)
    return -values


def propose(space: GPSpace, xs: list, ys: list, kernel: tuple[Any, float], seed: int | None,
            options) -> list:
    """The point skopt's Optimizer (SkoptSampler's, seeded `seed`, GP kernel fixed to
    `kernel`) asks for after being told (xs, ys), the constant liar's rows included."""
    rng = check_random_state(seed)
    gp = ConditionedGP(kernel[0], kernel[1], space.transform(xs), ys)
    X = space.transformed_rvs(options.n_points, rng)
    values = acquisition(X, gp, np.min(ys), options.acq_func, options.xi, options.kappa)
    best = np.clip(X[np.argmin(values)], 0.0, 1.0)  # the transformed bounds: [0, 1]
    point = space.inverse_point(best)
    if np.min(space.distances(point, xs)) <= 1e-8:  # evaluated before: a random point
        point = space.rvs_point(rng)
    return point
