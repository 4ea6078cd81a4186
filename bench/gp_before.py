"""The `bayes` GP as it was before FastGP and `gp_fit_max_points` (bench only).

Before: skopt's own `GaussianProcessRegressor.predict`, whose predictive variance is
`einsum("ki,kj,ij->k", K, K, K_inv)` (a loop over candidates x n x n outside BLAS), and the
kernel's hyperparameters fitted on every finished trial (`gp_fit_max_points = 0`). Now:
`tuning_energy.search.skopt_gp.FastGP` (one triangular solve, the same numbers to rounding) and
the fit on at most the latest 64 trials. `before()` gives the sampler's config and a
context in which FastGP predicts as skopt does, so that both can be timed side by side.
"""

from __future__ import annotations

import contextlib
import dataclasses

from tuning_energy.config import StudyConfig


def before_config(config: StudyConfig) -> StudyConfig:
    """`config` with the kernel fitted on every finished trial (as before the cap)."""
    bayes = dataclasses.replace(config.strategy.bayes, gp_fit_max_points=0)
    return config.with_overrides(strategy=dataclasses.replace(config.strategy, bayes=bayes))


@contextlib.contextmanager
def skopt_variance():
    """While open, FastGP computes its predictive variance with skopt's einsum."""
    from skopt.learning import GaussianProcessRegressor

    from tuning_energy.search.skopt_gp import FastGP

    ours = FastGP.__dict__["predict"]
    FastGP.predict = GaussianProcessRegressor.predict
    try:
        yield
    finally:
        FastGP.predict = ours
