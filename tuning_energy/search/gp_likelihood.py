"""The log-marginal likelihood of the GP kernel scikit-optimize cooks, as plain numpy.

`MaternLikelihood`: sklearn's `GaussianProcessRegressor.log_marginal_likelihood` and its
gradient for `ConstantKernel * Matern(nu=2.5, anisotropic) [+ WhiteKernel]`, with sklearn's
numbers (tests compare them). Used by both GP paths of `bayes`: skopt's (skopt_gp.py,
`FastGP`) and the one without skopt (native_bayes.py). It imports neither skopt nor
anything skopt imports: skopt_gp.py registers skopt's kernel classes here
(`accept_kernel_module`), which are sklearn's with the same arithmetic.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np
from scipy.linalg import lapack, solve_triangular
from scipy.spatial.distance import cdist, pdist, squareform
from sklearn.gaussian_process import kernels
from sklearn.preprocessing._data import _handle_zeros_in_scale

# The kernel classes `MaternLikelihood.of` accepts: sklearn's, and those of a module
# registered by `accept_kernel_module` (skopt's subclasses, the same arithmetic).
_MATERN: set[type] = {kernels.Matern}
_CONSTANT: set[type] = {kernels.ConstantKernel}
_WHITE: set[type] = {kernels.WhiteKernel}
_PRODUCT: set[type] = {kernels.Product}
_SUM: set[type] = {kernels.Sum}


def accept_kernel_module(module) -> None:
    """Accept the Matern, ConstantKernel, WhiteKernel, Product and Sum of `module` (skopt's
    kernels module: subclasses of sklearn's whose values are sklearn's)."""
    for group, name in ((_MATERN, "Matern"), (_CONSTANT, "ConstantKernel"),
                        (_WHITE, "WhiteKernel"), (_PRODUCT, "Product"), (_SUM, "Sum")):
        group.add(getattr(module, name))


def is_white_sum(kernel) -> bool:
    """kernel is `k1 + WhiteKernel` (as skopt's fit leaves it, and as this module reads it)."""
    return type(kernel) in _SUM and type(kernel.k2) in _WHITE


def _fixed(bounds) -> bool:
    return isinstance(bounds, str) and bounds == "fixed"


class MaternLikelihood:
    """sklearn's `GaussianProcessRegressor.log_marginal_likelihood` (and its gradient) for
    the kernel skopt's `cook_estimator("GP")` builds, `ConstantKernel * Matern(nu=2.5,
    anisotropic length scales) [+ WhiteKernel]` (free constant and length scales, the white
    noise free or fixed), as plain numpy on precomputed pairwise differences.

    Replaces, for that kernel only, sklearn's evaluation through kernel objects: the theta
    setter (get_params/set_params down the Sum and Product), each kernel's `__call__` with
    its checks, `np.dstack` of the gradients, and scipy's cholesky/cho_solve wrappers
    (batch dispatch, array checks) around the same LAPACK routines. That Python overhead
    was most of the ~60 evaluations of each L-BFGS kernel fit, for ~25 points. The
    arithmetic is sklearn's, operation by operation and in its order (`exp(theta)` as the
    setter, `pdist(X / length_scale)`, the Matern polynomial, `c * K`, the diagonal's
    `+ noise` then `+ alpha`, dpotrf/dpotrs, the same einsums on the same (n, n, p)
    gradient array), so the values are the same (tests compare them with sklearn's for
    random thetas and data). Any other kernel: `of` returns None and sklearn evaluates it.
    """

    @classmethod
    def of(cls, kernel, X, y, alpha) -> MaternLikelihood | None:
        """The likelihood of `kernel` on (X, y), or None where the kernel is not exactly
        the cooked structure (then sklearn's own evaluation applies)."""
        white = None
        if is_white_sum(kernel):
            kernel, white = kernel.k1, kernel.k2
        if type(kernel) not in _PRODUCT:
            return None
        constant, matern = kernel.k1, kernel.k2
        if type(constant) not in _CONSTANT or type(matern) not in _MATERN \
                or matern.nu != 2.5 or not matern.anisotropic \
                or _fixed(constant.constant_value_bounds) \
                or _fixed(matern.length_scale_bounds):
            return None
        if not (isinstance(X, np.ndarray) and X.dtype == np.float64 and X.ndim == 2
                and isinstance(y, np.ndarray) and y.dtype == np.float64
                and X.shape[1] == len(matern.length_scale) > 1):
            return None
        noise = None  # free (in theta), or the fixed level
        if white is not None and _fixed(white.noise_level_bounds):
            noise = white.noise_level
        return cls(X, y, alpha, white is not None, noise)

    def __init__(self, X, y, alpha, white: bool, noise):
        n, d = X.shape
        self.X, self.d, self.alpha = X, d, alpha
        self.y_given = y
        self.y = y[:, np.newaxis] if y.ndim == 1 else y
        self.white, self.noise = white, noise
        self.free_noise = white and noise is None
        self.p = 1 + d + self.free_noise  # gradient columns, as Sum/Product stack them
        self.diag = np.diag_indices(n)
        self.half_log_2pi = n / 2 * np.log(2 * np.pi)

    @functools.cached_property
    def sq(self):
        """Matern's D times l^2 (the pairwise squared differences): for the gradient only,
        built at its first use (a fit with the kernel fixed never needs it: n x n x d)."""
        X = self.X
        return (X[:, np.newaxis, :] - X[np.newaxis, :, :]) ** 2

    @functools.cached_property
    def eye(self):
        return np.eye(len(self.X))

    def objective(self, theta, eval_gradient=True):
        """What sklearn's fit minimises: -lml (and -gradient)."""
        if eval_gradient:
            lml, grad = self(theta, eval_gradient=True)
            return -lml, -grad
        return -self(theta)

    def __call__(self, theta, eval_gradient=False):
        """log_marginal_likelihood(theta, eval_gradient) for (X, y)."""
        factor = self.factor(theta)
        if factor is None:
            return (-np.inf, np.zeros_like(theta)) if eval_gradient else -np.inf
        log_likelihood, L, alpha, c, length_scale, matern = factor
        if not eval_gradient:
            return log_likelihood
        # K_gradient as Sum(Product(C, Matern), White) stacks it: [C's, Matern's, White's]
        d = self.d
        gradient = np.empty(matern.shape + (self.p,))
        np.multiply(c, matern, out=gradient[:, :, 0])  # full(c) * Matern
        D = self.sq / (length_scale**2)
        tmp = np.sqrt(5 * D.sum(-1))[..., np.newaxis]
        np.multiply(5.0 / 3.0 * D * (tmp + 1) * np.exp(-tmp), c, out=gradient[:, :, 1:1 + d])
        if self.free_noise:
            gradient[:, :, 1 + d] = np.exp(theta[1 + d]) * self.eye
        inner_term = np.einsum("ik,jk->ijk", alpha, alpha)
        inner_term -= _potrs(L, self.eye)[..., np.newaxis]
        gradient_dims = 0.5 * np.einsum("ijl,jik->kl", inner_term, gradient)
        return log_likelihood, gradient_dims.sum(axis=-1)

    def factor(self, theta):
        """(log-likelihood, Cholesky factor L of K + alpha I, K^-1 y, c, length scales,
        Matern matrix) at theta; None where K is not positive definite."""
        d = self.d
        c = np.exp(theta[0])  # Kernel.theta's setter: exp of each hyperparameter's slice
        length_scale = np.exp(theta[1:1 + d]).astype(float)  # _check_length_scale's copy
        # Matern(nu=2.5).__call__(X)
        k = pdist(self.X / length_scale, metric="euclidean") * math.sqrt(5)
        k = (1.0 + k + k**2 / 3.0) * np.exp(-k)
        matern = squareform(k)
        np.fill_diagonal(matern, 1)
        K = c * matern  # Product: ConstantKernel's full(c) * Matern
        if self.white:  # Sum: + noise * eye (the off-diagonal + 0 changes nothing)
            K[self.diag] += np.exp(theta[1 + d]) if self.free_noise else self.noise
        K[self.diag] += self.alpha
        L, info = lapack.dpotrf(K, lower=1, clean=1, overwrite_a=1)  # scipy's cholesky
        if info > 0:
            return None
        if info < 0:
            raise ValueError(f'LAPACK reported an illegal value in {-info}-th argument on '
                             'entry to "POTRF".')
        y = self.y
        alpha = _potrs(L, y)  # cho_solve
        log_likelihood_dims = -0.5 * np.einsum("ik,ik->k", y, alpha)
        log_likelihood_dims -= np.log(np.diag(L)).sum()
        log_likelihood_dims -= self.half_log_2pi
        return log_likelihood_dims.sum(axis=-1), L, alpha, c, length_scale, matern

    def condition(self, kernel):
        """sklearn's fit with the kernel fixed (`optimizer=None`), on this likelihood's
        (X, y): `kernel.theta = kernel.theta` (exp(log(.)) may move a hyperparameter by an
        ulp: as sklearn, the GP uses those), then (log-likelihood, Cholesky factor L,
        alpha_ = K^-1 y as sklearn's `alpha_`); None where K is not positive definite."""
        theta = kernel.theta
        self.set_theta(kernel, theta)
        factor = self.factor(theta)
        if factor is None:
            return None
        return factor[0], factor[1], _potrs(factor[1], self.y_given)

    def set_theta(self, kernel, theta) -> None:
        """kernel.theta = theta (for a kernel `of` accepted): the same values as sklearn's
        setter (exp of theta's slices), without its get_params/set_params walk."""
        product = kernel.k1 if self.white else kernel
        d = self.d
        product.k1.constant_value = np.exp(theta[0])
        product.k2.length_scale = np.exp(theta[1:1 + d])
        if self.free_noise:
            kernel.k2.noise_level = np.exp(theta[1 + d])


def _potrs(L, b):
    """scipy.linalg.cho_solve((L, True), b) for a 2-D b: LAPACK's dpotrs, as it calls it."""
    x, info = lapack.dpotrs(L, b, lower=1)
    if info != 0:
        raise ValueError(f"illegal value in {-info}th argument of internal potrs")
    return x


def likelihood_objective(gp, obj_func):
    """What a GP's L-BFGS kernel fit (its `_constrained_optimization`) minimises:
    `MaternLikelihood`'s objective where the kernel is the cooked one (the same numbers,
    so the same iterates and fit), sklearn's `obj_func` otherwise."""
    likelihood = MaternLikelihood.of(gp.kernel_, gp.X_train_, gp.y_train_, gp.alpha)
    return obj_func if likelihood is None else likelihood.objective


def normalize_y(y: np.ndarray) -> tuple[Any, Any, np.ndarray]:
    """sklearn's fit with normalize_y=True: (mean, std, normalised y)."""
    y_mean = np.mean(y, axis=0)
    y_std = _handle_zeros_in_scale(np.std(y, axis=0), copy=False)
    return y_mean, y_std, (y - y_mean) / y_std


def predict_mean_std(kernel_, X_train, L, alpha_, y_mean, y_std, X) -> tuple[Any, Any]:
    """A fitted GP's predictive mean and standard deviation at X (skopt's
    `predict(X, return_std=True)`), the variance as k** - |L^-1 k*|^2: one triangular
    solve (BLAS), where skopt computes `einsum("ki,kj,ij->k", K, K, K_inv)` (the same up to
    rounding). Negative variances (rounding) warn and become 0, as skopt's."""
    k_trans = cross_covariance(kernel_, X, X_train)
    y_pred = y_std * k_trans.dot(alpha_) + y_mean
    v = solve_triangular(L, k_trans.T, lower=True, check_finite=False)
    y_var = kernel_.diag(X) - np.einsum("ij,ij->j", v, v)
    if np.any(y_var < 0):
        warnings.warn("Predicted variances smaller than 0. Setting those variances to 0.",
                      stacklevel=3)
        y_var[y_var < 0] = 0.0
    return y_pred, np.sqrt(y_var * y_std ** 2)


def cross_covariance(kernel, X, Y) -> np.ndarray:
    """kernel(X, Y) between two point sets (the GP's k(X*, X_train), 1,000 candidates by the
    told points at each proposal). For the cooked kernel, `C * Matern(nu=2.5) [+ White]`
    (the white noise is 0 between two sets), sklearn's operations in its order, in place:
    the same values (tests compare them) without its six temporary matrices and the
    constant's full matrix. Any other kernel: its own call."""
    product = kernel.k1 if is_white_sum(kernel) else kernel
    if type(product) not in _PRODUCT or type(product.k1) not in _CONSTANT \
            or type(product.k2) not in _MATERN or product.k2.nu != 2.5:
        return kernel(X, Y)
    length_scale = np.squeeze(product.k2.length_scale).astype(float)  # Matern.__call__
    K = cdist(X / length_scale, Y / length_scale, metric="euclidean")
    K *= math.sqrt(5)
    decay = np.negative(K)
    np.exp(decay, out=decay)  # exp(-K)
    square = np.square(K)  # K**2
    square /= 3.0
    K += 1.0  # 1.0 + K + K**2 / 3.0, left to right
    K += square
    K *= decay
    K *= product.k1.constant_value  # ConstantKernel's full(c) * K
    return K
