"""scikit-optimize's Gaussian process, cheaper with the same numbers: its predictive
standard deviation through BLAS, and sklearn's kernel introspection cached per class
(`cache_kernel_introspection`, below).

skopt's `GaussianProcessRegressor.predict(return_std=True)` computes the variance as
`einsum("ki,kj,ij->k", K, K, K_inv)`: a loop over candidates x n x n outside BLAS, most
of a `bayes` proposal once a study holds a few hundred trials (bench/RESULTS.md, "Cost as
the study grows": bayes before). `FastGP` computes the same quantity from the Cholesky
factor the fit already holds: k** - |L^-1 k*|^2, one triangular solve (BLAS). Only the
rounding differs (tests check the standard deviations against skopt's to 1e-9 and the
proposals are the same). Everything else - the fit, the mean, gradients, covariance - is
skopt's.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
from scipy.linalg import solve_triangular
from sklearn.gaussian_process import kernels
from sklearn.utils import check_array
from skopt.learning import GaussianProcessRegressor


class FastGP(GaussianProcessRegressor):
    """skopt's GP; `predict(X, return_std=True)` by a triangular solve."""

    def predict(self, X, return_std=False, return_cov=False, return_mean_grad=False,
                return_std_grad=False):
        if not return_std or return_cov or return_mean_grad or return_std_grad or \
                not hasattr(self, "X_train_"):
            return super().predict(X, return_std, return_cov, return_mean_grad,
                                   return_std_grad)
        X = check_array(X)
        k_trans = self.kernel_(X, self.X_train_)
        y_mean = self.y_train_std_ * k_trans.dot(self.alpha_) + self.y_train_mean_
        v = solve_triangular(self.L_, k_trans.T, lower=True, check_finite=False)
        y_var = self.kernel_.diag(X) - np.einsum("ij,ij->j", v, v)
        if np.any(y_var < 0):
            warnings.warn("Predicted variances smaller than 0. Setting those variances to 0.",
                          stacklevel=2)
            y_var[y_var < 0] = 0.0
        return y_mean, np.sqrt(y_var * self.y_train_std_ ** 2)


def fast_gp(gp: GaussianProcessRegressor) -> FastGP:
    """A FastGP with the parameters of skopt's (as `cook_estimator("GP")` cooked it)."""
    return FastGP(**gp.get_params(deep=False))


# ---------------------------------------------------------------- kernel introspection

#: sklearn's own Kernel.hyperparameters and Kernel.get_params
ORIGINAL = {"hyperparameters": kernels.Kernel.hyperparameters,
            "get_params": kernels.Kernel.get_params}
_NAMES: dict[type, list[str]] = {}
_ARGS: dict[type, list[str] | RuntimeError] = {}


def _hyperparameters(self):
    """Kernel.hyperparameters: its `hyperparameter_*` properties, found by `dir()` once per
    class (sklearn runs dir() at every read, several per likelihood evaluation)."""
    if any(k.startswith("hyperparameter_") for k in vars(self)):  # one of its own: dir()
        return ORIGINAL["hyperparameters"].fget(self)
    names = _NAMES.get(type(self))
    if names is None:
        names = _NAMES[type(self)] = [a for a in dir(self) if a.startswith("hyperparameter_")]
    return [getattr(self, a) for a in names]


def _get_params(self, deep=True):
    """Kernel.get_params: the constructor's arguments, read from its signature once per
    class (sklearn inspects the signature at every call)."""
    cls = type(self)
    args = _ARGS.get(cls)
    if args is None:
        args, varargs = [], []
        for parameter in inspect.signature(cls.__init__).parameters.values():
            if parameter.kind != parameter.VAR_KEYWORD and parameter.name != "self":
                args.append(parameter.name)
            if parameter.kind == parameter.VAR_POSITIONAL:
                varargs.append(parameter.name)
        if varargs:
            args = RuntimeError(
                "scikit-learn kernels should always specify their parameters in the signature"
                f" of their __init__ (no varargs). {cls} doesn't follow this convention.")
        _ARGS[cls] = args
    if isinstance(args, RuntimeError):
        raise args
    return {arg: getattr(self, arg) for arg in args}


def cache_kernel_introspection() -> None:
    """scikit-optimize's leaf kernels (Matern, ConstantKernel, WhiteKernel, ...: those that
    take sklearn's Kernel.hyperparameters and Kernel.get_params) get both with their
    per-class part computed once: the same lists and dicts (tests check), without the Python
    overhead they added to every likelihood evaluation of a GP kernel fit (each L-BFGS step
    reads them many times). Set on skopt's classes only: sklearn's own kernels (a user's GP)
    and the kernels that define their own (sums, products) are untouched. Installed when this
    module is imported, i.e. when a scikit-optimize sampler is built."""
    from skopt.learning.gaussian_process import kernels as skopt_kernels

    for cls in vars(skopt_kernels).values():
        if isinstance(cls, type) and issubclass(cls, kernels.Kernel) \
                and cls.__module__ == skopt_kernels.__name__ \
                and cls.hyperparameters is ORIGINAL["hyperparameters"] \
                and cls.get_params is ORIGINAL["get_params"] and cls.__name__ != "Kernel":
            cls.hyperparameters = property(_hyperparameters)
            cls.get_params = _get_params


cache_kernel_introspection()
