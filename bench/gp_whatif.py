"""A what-if for `propose_scaling` (not shipped): skopt's GP predictive variance by BLAS.

skopt's `GaussianProcessRegressor.predict(return_std=True)` computes the variance as
`einsum("ki,kj,ij->k", K, K, K_inv)`: a loop over candidates x n x n outside BLAS, ~90 ms
at 256 points and 1,000 candidates here. `((K @ K_inv) * K).sum(1)` is the same formula
(~3 ms); only the rounding differs. `blas_variance()` swaps it in while open, so that the
bench can time what a `bayes` proposal would cost with it, beside the one we ship.
"""

from __future__ import annotations

import contextlib


def _blas_predict(original):
    """skopt's predict, with the variance (return_std only) by BLAS."""
    import numpy as np
    from sklearn.utils import check_array

    def predict(self, X, return_std=False, return_cov=False, return_mean_grad=False,
                return_std_grad=False):
        if not return_std or return_cov or return_mean_grad or return_std_grad or \
                not hasattr(self, "X_train_"):
            return original(self, X, return_std, return_cov, return_mean_grad,
                            return_std_grad)
        X = check_array(X)
        k_trans = self.kernel_(X, self.X_train_)
        y_mean = self.y_train_std_ * k_trans.dot(self.alpha_) + self.y_train_mean_
        y_var = self.kernel_.diag(X) - ((k_trans @ self.K_inv_) * k_trans).sum(1)
        y_var[y_var < 0] = 0.0  # as skopt (which also warns)
        return y_mean, np.sqrt(y_var * self.y_train_std_ ** 2)
    return predict


@contextlib.contextmanager
def blas_variance():
    """While open, skopt's GP computes its predictive variance with BLAS."""
    from skopt.learning.gaussian_process.gpr import GaussianProcessRegressor as GPR

    original = GPR.predict
    GPR.predict = _blas_predict(original)
    try:
        yield
    finally:
        GPR.predict = original
