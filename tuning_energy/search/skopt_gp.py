"""scikit-optimize's Gaussian process, cheaper with the same numbers: its predictive
standard deviation through BLAS, its two fits without sklearn's per-call Python overhead,
and sklearn's kernel introspection cached per class (`cache_kernel_introspection`, below).

skopt's `GaussianProcessRegressor.predict(return_std=True)` computes the variance as
`einsum("ki,kj,ij->k", K, K, K_inv)`: a loop over candidates x n x n outside BLAS, most
of a `bayes` proposal once a study holds a few hundred trials (bench/RESULTS.md, "Cost as
the study grows": bayes before). `FastGP` computes the same quantity from the Cholesky
factor the fit already holds: k** - |L^-1 k*|^2, one triangular solve (BLAS). Only the
rounding differs (tests check the standard deviations against skopt's to 1e-9 and the
proposals are the same).

The fits, for the kernel skopt cooks (constant * anisotropic Matern 5/2 [+ white noise]):
the L-BFGS kernel fit evaluates the log-marginal likelihood by `MaternLikelihood` (sklearn's
arithmetic, in its order, as plain numpy: about half the CPU of a kernel fit), and the fit
with the kernel fixed (each proposal) is `FastGP._fit_fixed` (about a third). Both give
sklearn's and skopt's numbers exactly (tests check; the default study's proposals are the
same). Any other kernel or input: skopt's and sklearn's own code. The mean, gradients and
covariance are skopt's.
"""

from __future__ import annotations

import inspect

import numpy as np
from scipy.linalg import solve_triangular
from sklearn.base import clone
from sklearn.gaussian_process import kernels
from sklearn.utils import check_array
from sklearn.utils.validation import check_random_state
from skopt.learning import GaussianProcessRegressor
from skopt.learning.gaussian_process import kernels as skopt_kernels
from skopt.learning.gaussian_process.gpr import _param_for_white_kernel_in_Sum

from tuning_energy.search.gp_likelihood import (  # noqa: F401 (MaternLikelihood: its home before)
    MaternLikelihood,
    accept_kernel_module,
    is_white_sum,
    likelihood_objective,
    normalize_y,
    predict_mean_std,
)

accept_kernel_module(skopt_kernels)  # skopt's kernels: sklearn's, with the same arithmetic


class FastGP(GaussianProcessRegressor):
    """skopt's GP; `predict(X, return_std=True)` by a triangular solve; where the kernel is
    the one skopt cooks, the kernel's L-BFGS fit through `MaternLikelihood` and the fit
    with the kernel fixed (optimizer=None) by `_fit_fixed`."""

    def fit(self, X, y):
        if self.optimizer is None and self._fit_fixed(X, y):
            return self
        return super().fit(X, y)

    def _fit_fixed(self, X, y) -> bool:
        """skopt's fit and sklearn's under it, for optimizer=None, step by step with the
        same numbers and attributes (tests compare them), or False, changing nothing, where
        the input or a parameter is not the plain case (then skopt's fit runs, with its
        checks and errors).

        Replaces, for `MaternLikelihood`'s kernels and finite float64 arrays: sklearn's
        parameter and data validation (its checks pass for these by construction), the
        kernel evaluated twice through its objects (once for the log-likelihood, once for
        L_: the same matrix) and the RandomState built from the seed, which only the kernel
        fit's restarts use (built on first read, `_rng`). That overhead was most of the
        ~1 ms that conditioning the GP took at each `bayes` proposal."""
        from skopt.learning.gaussian_process.kernels import WhiteKernel

        alpha, noise = self.alpha, self.noise
        if not (isinstance(alpha, (float, int)) and not isinstance(alpha, bool)
                and alpha >= 0 and self.n_targets is None and self.kernel is not None
                and isinstance(self.normalize_y, bool) and isinstance(self.copy_X_train, bool)
                and isinstance(self.n_restarts_optimizer, int)
                and not isinstance(self.n_restarts_optimizer, bool)
                and self.n_restarts_optimizer >= 0
                and (noise is None or noise == "gaussian" or isinstance(noise, float))
                and (self.random_state is None or isinstance(self.random_state, int))):
            return False
        y = np.asarray(y)
        if not (type(X) is np.ndarray and X.dtype == np.float64 and X.ndim == 2
                and X.shape[0] > 0 and X.shape[1] > 0 and y.dtype == np.float64
                and y.shape == X.shape[:1] and np.isfinite(X).all() and np.isfinite(y).all()):
            return False
        kernel = self.kernel
        if noise and not _param_for_white_kernel_in_Sum(kernel)[0]:  # skopt's fit
            kernel = kernel + (WhiteKernel() if noise == "gaussian" else
                               WhiteKernel(noise_level=noise, noise_level_bounds="fixed"))
        kernel_ = clone(kernel)
        if self.normalize_y:  # sklearn's fit
            y_mean, y_std, y = normalize_y(y)
        else:
            y_mean, y_std = np.zeros(shape=1), np.ones(shape=1)
        X_train = np.copy(X) if self.copy_X_train else X
        y_train = np.copy(y) if self.copy_X_train else y
        likelihood = MaternLikelihood.of(kernel_, X_train, y_train, alpha)
        if likelihood is None:
            return False
        # log_marginal_likelihood(kernel_.theta, clone_kernel=False)
        conditioned = likelihood.condition(kernel_)
        if conditioned is None:
            return False  # not positive definite: skopt's fit raises sklearn's error
        log_likelihood, L, alpha_ = conditioned
        noise_ = None
        if noise and is_white_sum(kernel_):  # skopt's fit: the noise out of kernel_
            noise_ = kernel_.k2.noise_level
            kernel_.k2 = WhiteKernel(noise_level=0.0)
        L_inv = solve_triangular(L.T, np.eye(L.shape[0]))
        self.kernel, self.kernel_ = kernel, kernel_
        self.__dict__["_rng_seed"] = self.random_state
        self.__dict__.pop("_rng_value", None)
        self.n_features_in_ = X.shape[1]
        self.__dict__.pop("feature_names_in_", None)
        self._y_train_mean, self._y_train_std = y_mean, y_std
        self.X_train_, self.y_train_ = X_train, y_train
        self.log_marginal_likelihood_value_ = log_likelihood
        self.L_, self.alpha_ = L, alpha_
        self.noise_ = noise_
        self.K_inv_ = L_inv.dot(L_inv.T)
        self.y_train_std_, self.y_train_mean_ = y_std, y_mean
        return True

    @property
    def _rng(self):
        """sklearn's fit sets `_rng = check_random_state(random_state)`; `_fit_fixed` keeps
        the seed and builds it here, on first read (RandomState(seed) costs ~0.1 ms)."""
        if "_rng_value" not in self.__dict__:
            if "_rng_seed" not in self.__dict__:
                raise AttributeError("_rng")
            self.__dict__["_rng_value"] = check_random_state(self.__dict__["_rng_seed"])
        return self.__dict__["_rng_value"]

    @_rng.setter
    def _rng(self, value):
        self.__dict__["_rng_value"] = value

    def _constrained_optimization(self, obj_func, initial_theta, bounds):
        """sklearn's L-BFGS (`minimize(..., method="L-BFGS-B", jac=True)`) on
        `MaternLikelihood`'s objective instead of sklearn's `obj_func`, when the kernel is
        the one skopt cooks: the same numbers (tests check), so the same iterates and the
        same fitted hyperparameters. sklearn's obj_func also sets `kernel_.theta` at each
        evaluation; fit sets it to the optimum afterwards either way."""
        return super()._constrained_optimization(likelihood_objective(self, obj_func),
                                                 initial_theta, bounds)

    def predict(self, X, return_std=False, return_cov=False, return_mean_grad=False,
                return_std_grad=False):
        if not return_std or return_cov or return_mean_grad or return_std_grad or \
                not hasattr(self, "X_train_"):
            return super().predict(X, return_std, return_cov, return_mean_grad,
                                   return_std_grad)
        return predict_mean_std(self.kernel_, self.X_train_, self.L_, self.alpha_,
                                self.y_train_mean_, self.y_train_std_, check_array(X))


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
