"""`bayes` without importing scikit-optimize (native_bayes.py): the default study's sampler
never imports skopt, and wherever it proposes without skopt it proposes what skopt's own
Optimizer proposes (compared here with skopt's code on the same studies and seeds)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tuning_energy.search import bayes, samplers
from tuning_energy.search.samplers import SkoptSampler

from .test_skopt_space import SPACE

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: every kind of dimension (test_skopt_space's): uniform and log floats and integers, steps
#: (of floats and of integers), two and three categories (one one-hot column; three)
MIXED = {**SPACE, "batch": IntDistribution(16, 128, step=16)}
#: six points in all: proposals soon repeat a told point (skopt's random point then)
TINY = {"a": IntDistribution(0, 2), "b": CategoricalDistribution([0, 1])}


def _params(space, rng) -> dict:
    out = {}
    for name, d in space.items():
        if isinstance(d, CategoricalDistribution):
            out[name] = d.choices[int(rng.integers(len(d.choices)))]
        elif d.step is not None and (isinstance(d, FloatDistribution) or d.step > 1):
            out[name] = d.low + int(rng.integers(0, round((d.high - d.low) / d.step) + 1)) \
                * d.step
            out[name] = round(out[name], 10) if isinstance(d, FloatDistribution) else out[name]
        elif d.log:
            value = 10 ** rng.uniform(math.log10(d.low), math.log10(d.high))
            out[name] = min(max(int(round(value)) if isinstance(d, IntDistribution)
                                else float(value), d.low), d.high)
        else:
            out[name] = int(rng.integers(d.low, d.high + 1)) if isinstance(d, IntDistribution) \
                else float(rng.uniform(d.low, d.high))
    return out


def _study(space, n: int, seed: int, direction: str, running: int) -> optuna.Study:
    """n finished trials (one of them pruned at a reported value) and `running` trials
    still running in another worker (the constant liar's rows)."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(direction=direction)
    for i in range(n + running):
        params = _params(space, rng)
        if i >= n:
            study.add_trial(create_trial(state=TrialState.RUNNING, params=params,
                                         distributions=space))
        elif i == 3:
            study.add_trial(create_trial(state=TrialState.PRUNED, params=params,
                                         distributions=space, intermediate_values={0: 0.3}))
        else:
            study.add_trial(create_trial(value=float(rng.uniform()), params=params,
                                         distributions=space))
    return study


class _Trial:
    def __init__(self, number: int) -> None:
        self.number = number


def _skopts_own(monkeypatch, sampler, study, number, space) -> dict:
    """What the sampler proposes through skopt's Optimizer, tell and ask as skopt runs them."""
    monkeypatch.setattr(bayes, "fast_acquisition", lambda opt: None)
    sampler._native = False
    try:
        return sampler.sample_relative(study, _Trial(number), space)
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("acq_func", ["PI", "EI", "LCB"])
@pytest.mark.parametrize("space", [MIXED, TINY], ids=["mixed", "tiny"])
def test_proposals_without_skopt_are_skopts(monkeypatch, acq_func, space):
    """Seeds, study sizes (before and after kernel refits), both directions, running trials:
    the point proposed without skopt is the point skopt's Optimizer proposes, and in TINY a
    proposal that repeats a told point takes skopt's random point, from the same draw."""
    from tuning_energy.search.native_bayes import GPSpace

    repeats, original = [], GPSpace.rvs_point
    with pytest.MonkeyPatch.context() as spy:
        spy.setattr(GPSpace, "rvs_point",
                    lambda self, rng: repeats.append(1) or original(self, rng))
        _compare(monkeypatch, space, acq_func)
    assert bool(repeats) == (space is TINY)  # TINY's GP points repeat: random points


def _compare(monkeypatch, space, acq_func, **options) -> None:
    for seed in range(3):
        for n in (5, 8, 12, 23):
            direction = "maximize" if (seed + n) % 2 else "minimize"
            study = _study(space, n, 100 * seed + n, direction, running=seed % 2 * 2)
            number = n + seed % 2 * 2
            native = SkoptSampler(seed=seed, search_space=space, acq_func=acq_func, **options)
            assert native._native
            got = native.sample_relative(study, _Trial(number), space)
            want = _skopts_own(monkeypatch, SkoptSampler(seed=seed, search_space=space,
                                                         acq_func=acq_func, **options),
                               study, number, space)
            assert got == want, (seed, n, direction)


@pytest.mark.parametrize("options", [
    {"gp_fit_max_points": 3},  # the kernel fitted on the last 3 of the refit's trials
    {"gp_refit_every": 2, "n_initial_points": 4, "gp_n_restarts_optimizer": 1},
], ids=["cap", "refit-2-restart"])
def test_other_options_without_skopt_propose_as_skopt(monkeypatch, options):
    """Other options the native path takes (a kernel-fit cap below the refit's trials,
    another refit period, restarts), on another space (a log integer, four categories, a
    negative range): the same points as skopt's."""
    space = {"width": IntDistribution(1, 1000, log=True),
             "opt": CategoricalDistribution(["a", "b", "c", "d"]),
             "shift": FloatDistribution(-5.0, -1.0)}
    _compare(monkeypatch, space, "EI", **options)


def test_the_kernel_fit_without_skopt_is_skopts():
    """The kernel's hyperparameters (constant, length scales, noise level) fitted without
    skopt are the ones skopt's GP fits on the same points, to the last bit, with and
    without restarts (their random starts drawn from the same seed)."""
    from tuning_energy.search.native_bayes import GPSpace, fit_kernel

    for restarts in (0, 2):
        study = _study(MIXED, 15, 7 + restarts, "maximize", running=0)
        sampler = SkoptSampler(seed=0, search_space=MIXED, gp_n_restarts_optimizer=restarts)
        xs, ys, _ = sampler._observations(study, MIXED, exclude=None)
        sampler._native = False
        kernel, noise = sampler._kernel(MIXED, xs, ys)
        got_kernel, got_noise = fit_kernel(GPSpace(MIXED).transform(xs[:15]), ys[:15],
                                           restarts, samplers.derive_seed(0, 15) % 2**31)
        assert np.array_equal(got_kernel.theta, kernel.theta)
        assert got_noise == noise


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=300, check=True)
    return out.stdout.strip()


STUDY = """
    import sys, math, optuna
    from tuning_energy.config import load_config
    from tuning_energy.search.strategies import make_sampler
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = load_config("studies/default.toml")
    {change}
    study = optuna.create_study(direction="maximize",
                                sampler=make_sampler("bayes", config, 0))
    space = optuna.distributions
    def f(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        b1 = trial.suggest_float("beta1", 0.1, 0.99)
        b2 = trial.suggest_float("beta2", 0.8, 0.999)
        c = trial.suggest_int("n_conv", 0, 3) + trial.suggest_int("n_linear", 1, 3)
        return -abs(math.log10(lr) + 2.5) - abs(b1 - 0.8) + 0.1 * c \\
            + 0.1 * trial.suggest_categorical("relu", [False, True]) - b2
    study.optimize(f, n_trials=8)
    print("skopt" in sys.modules, len(study.trials))
"""


def test_the_default_bayes_study_never_imports_skopt():
    """scikit-optimize's import (~0.1 s of CPU, most of the default study's set-up energy)
    is left out where nothing needs it: the default study's `bayes` proposes its GP points
    without it. gp_hedge, which is computed by skopt's code, still imports it."""
    assert _run(STUDY.format(change="")) == "False 8"
    hedge = ("import dataclasses; config = dataclasses.replace(config, strategy=dataclasses"
             ".replace(config.strategy, bayes=dataclasses.replace(config.strategy.bayes, "
             "acq_func='gp_hedge')))")
    assert _run(STUDY.format(change=hedge)) == "True 8"
