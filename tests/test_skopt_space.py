"""The per-proposal hot path of `bayes` outside the GP fit (skopt_space.py, SkoptSampler's
encoded rows): scikit-optimize's numbers and random draws, cheaper. Each check compares
with skopt's own code run on the same inputs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import create_trial

from tuning_energy.search import bayes
from tuning_energy.search.samplers import SkoptSampler
from tuning_energy.search.skopt_space import (
    _encode,
    fast_acquisition,
    fast_transform,
    transformed_rvs,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "beta1": FloatDistribution(0.1, 0.99),
    "n_conv": IntDistribution(0, 3),
    "relu": CategoricalDistribution([False, True]),
    "act": CategoricalDistribution(["relu", "tanh", "gelu"]),
    "width": IntDistribution(8, 512, log=True),
    "drop": FloatDistribution(0.0, 0.5, step=0.1),
}


def _dims():
    """skopt dimensions of every kind skopt's GP normalises: floats and integers, uniform
    and log-scaled, one-hot categories (two: one column; three: one each; strings)."""
    from skopt.space import Categorical, Integer, Real

    return [Integer(0, 3), Categorical([0, 1]), Real(1e-4, 1e-1, prior="log-uniform"),
            Real(-5.0, 5.0), Categorical(["a", "b", "c"]), Categorical([False, True, 2]),
            Integer(1, 1000, prior="log-uniform"), Real(0.8, 0.999)]


def _optimizer(dims, fast: bool, n_initial_points: int = 2, **kwargs):
    from skopt import Optimizer

    opt = Optimizer(dims, "GP", n_initial_points=n_initial_points, random_state=3,
                    acq_optimizer_kwargs={"n_points": 500}, **kwargs)
    if fast:
        fast_transform(opt.space)
        fast_acquisition(opt)
    return opt


def test_candidates_drawn_by_columns_are_skopts_draws_and_numbers():
    """`transformed_rvs`: the array `space.transform(space.rvs(n))` gives, from the same
    draws (the random state ends where skopt leaves it), without building the rows."""
    ours, skopts = _optimizer(_dims(), True).space, _optimizer(_dims(), False).space
    for seed in range(10):
        a, b = np.random.RandomState(seed), np.random.RandomState(seed)
        want = skopts.transform(skopts.rvs(n_samples=300, random_state=a))
        got = transformed_rvs(ours, 300, b)
        assert got.dtype == want.dtype and got.shape == want.shape == (300, 1 + 1 + 1 + 1 + 3
                                                                       + 3 + 1 + 1)
        assert np.array_equal(got, want)
        assert a.randint(2**31) == b.randint(2**31)


@pytest.mark.parametrize("acq_func", ["PI", "EI", "LCB", "gp_hedge", "EIps"])
def test_the_optimizers_proposals_are_skopts(acq_func):
    """An Optimizer with `fast_acquisition` proposes what skopt's own proposes, told the same
    points one by one (each tell fits a GP and runs the acquisition pass): the same points,
    candidates' picks, models and random state, for every acquisition function."""
    rng = np.random.default_rng(0)
    ours, skopts = _optimizer(_dims(), True, acq_func=acq_func), \
        _optimizer(_dims(), False, acq_func=acq_func)
    for _ in range(7):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, want = ours.ask(), skopts.ask()
        assert x == want and [type(v) for v in x] == [type(v) for v in want]
        y = float(rng.normal())
        value = [y, 1.0 + float(rng.random())] if acq_func == "EIps" else y
        got_result, want_result = ours.tell(x, value), skopts.tell(x, value)
        assert len(ours.models) == len(skopts.models) == len(got_result.models)
        assert got_result.fun == want_result.fun and got_result.x == want_result.x
        for a, b in zip(getattr(ours, "next_xs_", []), getattr(skopts, "next_xs_", []),
                        strict=True):
            assert np.array_equal(a, b)
        assert ours.rng.randint(2**31) == skopts.rng.randint(2**31)


@pytest.mark.parametrize("categories", [[5, 7], ["x", "y"]])
def test_a_proposal_already_told_takes_skopts_random_point(categories):
    """A small space whose every point is told: the proposal was evaluated before, and skopt
    replaces it by a random point (and warns): the same point, the same warning (categories
    that are numbers, which the fast check reads, and strings, which skopt's own does)."""
    from skopt.space import Categorical, Integer

    dims = [Integer(0, 1), Categorical(categories)]
    ours, skopts = _optimizer(dims, True, 0), _optimizer(dims, False, 0)
    points = [[a, b] for a in (0, 1) for b in categories]
    for opt in (ours, skopts):
        opt.tell(points, [0.0, 1.0, 2.0, 3.0])
    for _ in range(3):
        with pytest.warns(UserWarning, match="evaluated at point"):
            got = ours.ask()
        with pytest.warns(UserWarning, match="evaluated at point"):
            want = skopts.ask()
        assert got == want
        ours.tell(got, 0.5)
        skopts.tell(want, 0.5)


def _study(params: list[dict], values: list[float]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for p, v in zip(params, values, strict=True):
        study.add_trial(create_trial(params=p, distributions=SPACE, value=v))
    return study


def _points(seed: int, n: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"lr": float(10 ** rng.uniform(-4, -1)), "beta1": float(rng.uniform(0.1, 0.99)),
             "n_conv": int(rng.integers(0, 4)), "relu": bool(rng.integers(0, 2)),
             "act": ["relu", "tanh", "gelu"][int(rng.integers(0, 3))],
             "width": int(rng.integers(8, 513)), "drop": round(int(rng.integers(0, 6)) * 0.1, 1)}
            for _ in range(n)]


@pytest.mark.parametrize("options", [{}, {"acq_func": "EI", "gp_refit_every": 1},
                                     {"acq_func": "gp_hedge"}, {"cost_attr": "energy_j"}])
def test_the_samplers_proposals_are_those_of_skopts_own_code(monkeypatch, options):
    """SkoptSampler's proposals with the fast paths (candidates, acquisition, the proposal's
    check, the remembered rows) are those it makes on skopt's own code, trial after trial."""
    def proposals(sampler):
        study = optuna.create_study(direction="maximize", sampler=sampler)
        out = []
        for i in range(9):
            trial = study.ask(SPACE)
            out.append(trial.params)
            trial.set_user_attr("energy_j", 1.0 + i % 3)
            study.tell(trial, math.sin(3 * trial.params["beta1"]) + 0.01 * i)
        return out

    fast = proposals(SkoptSampler(seed=4, search_space=SPACE, n_initial_points=3, **options))
    monkeypatch.setattr(bayes, "fast_acquisition", lambda opt: None)
    monkeypatch.setattr(bayes, "_encoded",
                        lambda trial, space, known: _encode(trial.params, space))
    assert proposals(SkoptSampler(seed=4, search_space=SPACE, n_initial_points=3,
                                  **options)) == fast


def test_a_sampler_moved_to_another_study_encodes_that_studys_trials():
    """The rows a sampler remembers are its trials' parameters encoded (by trial number):
    moved to another study whose trials have the same numbers and other parameters, it
    proposes what a new sampler proposes there."""
    def second():
        return _study(_points(1, 8), [0.5 - 0.05 * i for i in range(8)])

    moved = SkoptSampler(seed=2, search_space=SPACE, n_initial_points=3)
    first = _study(_points(0, 8), [0.1 * i for i in range(8)])
    first.sampler = moved
    first.ask(SPACE)
    there, fresh = second(), second()
    there.sampler = moved
    fresh.sampler = SkoptSampler(seed=2, search_space=SPACE, n_initial_points=3)
    assert there.ask(SPACE).params == fresh.ask(SPACE).params
