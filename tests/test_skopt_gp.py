"""FastGP's fits (tuning_energy.search.skopt_gp): the kernel's L-BFGS fit on MaternLikelihood
and the fixed-kernel fit (_fit_fixed) give what scikit-optimize's GP gives; any other
kernel or input goes to skopt/sklearn as before."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor as SkGP
from sklearn.gaussian_process import kernels as sk
from skopt.learning import GaussianProcessRegressor as SkoptGP
from skopt.learning.gaussian_process import kernels as sko

from tuning_energy.search.skopt_gp import FastGP, MaternLikelihood


def cooked(d: int):
    """The kernel skopt's cook_estimator("GP") builds for d continuous dimensions."""
    return sko.ConstantKernel(1.0, (0.01, 1000.0)) * sko.Matern(
        length_scale=np.ones(d), length_scale_bounds=[(0.01, 100)] * d, nu=2.5)


def data(n: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    y = np.sin(3 * X).sum(axis=1) + 0.1 * rng.normal(size=n)
    return X, y


def quiet(f, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args)


@pytest.mark.parametrize("white", ["free", "fixed", None])
@pytest.mark.parametrize("n,d", [(3, 2), (12, 5), (25, 8)])
def test_the_likelihood_and_gradient_are_sklearns(white, n, d):
    """For random data and thetas across the bounds: sklearn's log_marginal_likelihood
    and its gradient, for the kernel skopt cooks (noise free, fixed or none)."""
    kernel = cooked(d)
    if white == "free":
        kernel = kernel + sko.WhiteKernel()
    elif white == "fixed":
        kernel = kernel + sko.WhiteKernel(0.03, noise_level_bounds="fixed")
    X, y = data(n, d, seed=n + d)
    gp = SkGP(kernel=kernel, optimizer=None, normalize_y=True).fit(X, y)
    likelihood = MaternLikelihood.of(gp.kernel_, gp.X_train_, gp.y_train_, gp.alpha)
    assert likelihood is not None
    bounds = gp.kernel_.bounds
    rng = np.random.default_rng(d)
    for _ in range(20):
        theta = rng.uniform(bounds[:, 0], bounds[:, 1])
        want, want_grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
        got, got_grad = likelihood(theta, eval_gradient=True)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-10, atol=1e-10)
        assert likelihood(theta) == pytest.approx(gp.log_marginal_likelihood(theta), 1e-10)
        assert likelihood.objective(theta)[0] == pytest.approx(-want, 1e-10)


def test_a_kernel_that_is_not_positive_definite_is_minus_infinity_as_sklearns():
    X = np.zeros((4, 3))  # identical points, no noise, alpha 0: K is singular
    gp = SkGP(kernel=cooked(3), optimizer=None, alpha=0.0).fit(X[:1], np.zeros(1))
    gp.X_train_, gp.y_train_ = X, np.arange(4.0)
    likelihood = MaternLikelihood.of(gp.kernel_, X, gp.y_train_, 0.0)
    theta = gp.kernel_.theta
    assert gp.log_marginal_likelihood(theta) == likelihood(theta) == -np.inf
    value, grad = likelihood(theta, eval_gradient=True)
    assert value == -np.inf and not grad.any()


def _same_fit(ours, skopts):
    assert repr(ours.kernel_.get_params()) == repr(skopts.kernel_.get_params())
    assert repr(ours.kernel.get_params()) == repr(skopts.kernel.get_params())
    for name in ("L_", "alpha_", "K_inv_", "X_train_", "y_train_", "y_train_mean_",
                 "y_train_std_", "log_marginal_likelihood_value_", "n_features_in_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(skopts, name), rtol=1e-12,
                                   atol=1e-14, err_msg=name)
    assert ours.noise_ == skopts.noise_
    state, want = ours._rng.get_state(), skopts._rng.get_state()
    assert state[1].tolist() == want[1].tolist() and state[2:] == want[2:]


@pytest.mark.parametrize("seed", range(4))
def test_the_fitted_kernel_is_sklearns(seed, monkeypatch):
    """FastGP's L-BFGS kernel fit (skopt's cooked GP, noise="gaussian"): the same
    hyperparameters, noise, factor and predictions as skopt's GP; sklearn's
    log_marginal_likelihood is not called on the way."""
    n, d = 8 + 5 * seed, 2 + seed
    X, y = data(n, d, seed)
    params = dict(kernel=cooked(d), normalize_y=True, noise="gaussian", random_state=seed,
                  n_restarts_optimizer=seed % 2)
    skopts = quiet(SkoptGP(**params).fit, X, y)
    calls = []
    monkeypatch.setattr(SkGP, "log_marginal_likelihood",
                        lambda *a, **k: calls.append(1) or SkoptGP.log_marginal_likelihood(*a, **k))
    ours = quiet(FastGP(**params).fit, X, y)
    assert calls == []
    with np.errstate(divide="ignore"):  # theta holds log(0): the zeroed WhiteKernel
        np.testing.assert_allclose(ours.kernel_.theta[:-1], skopts.kernel_.theta[:-1],
                                   rtol=1e-9)
    assert ours.noise_ == pytest.approx(skopts.noise_, rel=1e-9)
    _same_fit(ours, skopts)
    x = np.random.default_rng(seed).uniform(size=(50, d))
    for a, b in zip(ours.predict(x, return_std=True), skopts.predict(x, return_std=True),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("normalize_y", [True, False])
@pytest.mark.parametrize("noise", [0.02, "gaussian", None])
def test_the_fixed_kernel_fit_is_skopts(noise, normalize_y, monkeypatch):
    """optimizer=None (a proposal's GP, conditioned on a kernel fitted earlier): every
    attribute as skopt's fit sets it, the estimator's own kernel included (skopt adds its
    WhiteKernel), y as a list (skopt's Optimizer passes one); no sklearn likelihood."""
    d = 4
    X, y = data(17, d, 5)
    kernel = cooked(d)
    kernel.k1.constant_value, kernel.k2.length_scale = 1.7, np.linspace(0.3, 3, d)
    params = dict(kernel=kernel, normalize_y=normalize_y, noise=noise, random_state=3,
                  optimizer=None)
    skopts = quiet(SkoptGP(**params).fit, X, list(y))
    calls = []
    monkeypatch.setattr(SkGP, "log_marginal_likelihood",
                        lambda *a, **k: calls.append(1) or SkoptGP.log_marginal_likelihood(*a, **k))
    ours = FastGP(**params)
    quiet(ours.fit, X, list(y))
    assert calls == []
    _same_fit(ours, skopts)
    with np.errstate(divide="ignore"):  # theta holds log(0): the zeroed WhiteKernel
        np.testing.assert_array_equal(ours.kernel_.theta, skopts.kernel_.theta)
    x = np.random.default_rng(0).uniform(size=(30, d))
    np.testing.assert_allclose(ours.predict(x), skopts.predict(x), rtol=1e-12)


@pytest.mark.parametrize("kernel", [
    sko.ConstantKernel() * sko.Matern(np.ones(3), nu=1.5),
    sko.ConstantKernel() * sko.Matern(1.0, nu=2.5),  # isotropic
    sko.ConstantKernel(1.0, "fixed") * sko.Matern(np.ones(3), nu=2.5),
    sko.ConstantKernel() * sko.RBF(np.ones(3)),
    sko.Matern(np.ones(3), nu=2.5),
    sk.ConstantKernel() * sk.Matern(np.ones(3), nu=2.5) + sk.RBF(),
    sko.HammingKernel(np.ones(3)),
])
@pytest.mark.parametrize("optimizer", ["fmin_l_bfgs_b", None])
def test_other_kernels_are_fitted_by_skopt(kernel, optimizer):
    X, y = data(10, 3, 1)
    if isinstance(kernel, sko.HammingKernel):
        X = np.round(X * 3)
    params = dict(kernel=kernel, normalize_y=True, noise="gaussian", random_state=0,
                  optimizer=optimizer)
    ours, skopts = quiet(FastGP(**params).fit, X, y), quiet(SkoptGP(**params).fit, X, y)
    assert MaternLikelihood.of(ours.kernel_, ours.X_train_, ours.y_train_, 1e-10) is None
    _same_fit(ours, skopts)


def test_other_inputs_get_skopts_results_and_errors():
    d = 3
    X, y = data(9, d, 2)
    params = dict(kernel=cooked(d), normalize_y=True, noise=0.01, optimizer=None)
    for Xi, yi in [(X.tolist(), y), (X, np.round(y * 10).astype(int)), (X.astype(np.float32), y)]:
        _same_fit(quiet(FastGP(**params).fit, Xi, yi), quiet(SkoptGP(**params).fit, Xi, yi))
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        FastGP(**params).fit(bad, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        FastGP(**params).fit(X, y[:-1])
    same = np.zeros((4, d))  # identical points, no noise, alpha 0: sklearn's error
    with pytest.raises(np.linalg.LinAlgError, match="not returning a positive definite"):
        quiet(FastGP(kernel=cooked(d), alpha=0.0, optimizer=None).fit, same, np.arange(4.0))


@pytest.mark.parametrize("module", [sk, sko], ids=["sklearn", "skopt"])
def test_the_cross_covariance_is_the_kernels_own(module):
    """k(X*, X_train) for the cooked kernel, computed in place at each proposal, is the
    kernel object's call to the last bit (with the zero white noise a fitted GP keeps, and
    without it); other kernels are their own call."""
    from tuning_energy.search.gp_likelihood import cross_covariance

    rng = np.random.default_rng(5)
    for _ in range(30):
        d = int(rng.integers(2, 9))
        product = module.ConstantKernel(rng.uniform(0.01, 100)) * module.Matern(
            length_scale=rng.uniform(0.01, 10, d), nu=2.5)
        X, Y = rng.uniform(size=(200, d)), rng.uniform(size=(30, d))
        for kernel in (product, product + module.WhiteKernel(noise_level=0.0)):
            np.testing.assert_array_equal(cross_covariance(kernel, X, Y), kernel(X, Y))
    other = module.ConstantKernel(2.0) * module.Matern(length_scale=np.ones(3), nu=1.5)
    X, Y = rng.uniform(size=(20, 3)), rng.uniform(size=(7, 3))
    np.testing.assert_array_equal(cross_covariance(other, X, Y), other(X, Y))
