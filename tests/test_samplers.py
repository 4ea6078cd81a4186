"""SkoptSampler as an ordinary Optuna sampler: Optuna's own sampler test suite, the GP it
proposes from (noise kept between kernel refits), and what it is told (pruned trials,
constant-liar rows)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    RelativeSamplerTestCase,
    SingleOnlySamplerTestCase,
)
from optuna.trial import TrialState, create_trial

from tuning_energy.errors import ConfigError
from tuning_energy.search.samplers import SkoptSampler
from tuning_energy.search.seek import SeekSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


class TestOptunasSamplerSuite(BasicSamplerTestCase, RelativeSamplerTestCase,
                              SingleOnlySamplerTestCase):
    """The contract Optuna's own samplers pass (optuna.testing.pytest_samplers), as
    Optuna's tests run it on GPSampler: a GP from the first finished trial on. `seek`'s
    SeekSampler (seek.py) too, built on the same GP."""

    @pytest.fixture(params=["bayes", "seek"])
    def sampler(self, request):
        if request.param == "seek":
            return lambda: SeekSampler(seed=0, target=0.0, n_initial_points=0)
        return lambda: SkoptSampler(seed=0, n_initial_points=0)


# ---------------------------------------------------------------- the user's API

SPACE = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "beta1": FloatDistribution(0.1, 0.99),
    "n_conv": IntDistribution(0, 3),
    "relu": CategoricalDistribution([False, True]),
}


#: Adam's lr and beta1 alone: with 10 noisy trials the GP's noise level is identifiable.
ADAM = {k: SPACE[k] for k in ("lr", "beta1")}


def accuracy(p: dict) -> float:
    """Smooth, peaked inside SPACE."""
    return 0.9 - abs(math.log10(p["lr"]) + 2.5) / 4 - abs(p["beta1"] - 0.8) / 3 \
        - 0.05 * abs(p.get("n_conv", 1) - 1) - (0.0 if p.get("relu", True) else 0.05)


def noisy_study(n: int, sampler: SkoptSampler, space=ADAM, noise: float = 0.05) -> optuna.Study:
    """n trials of `accuracy` measured with a seeded normal error of spread `noise`."""
    rng = np.random.default_rng(0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(n):
        trial = study.ask(space)
        study.tell(trial, accuracy(trial.params) + noise * float(rng.normal()))
    return study


def copy_of(study: optuna.Study, trials) -> optuna.Study:
    """A new in-memory study holding copies of `trials` (numbered from 0, in this order)."""
    out = optuna.create_study(direction=study.direction)
    for t in trials:
        out.add_trial(create_trial(params=t.params, distributions=t.distributions,
                                   value=t.value, state=t.state,
                                   intermediate_values=t.intermediate_values,
                                   user_attrs=t.user_attrs))
    return out


def test_options_are_the_strategy_bayes_keys_and_an_unknown_one_is_named():
    assert SkoptSampler(n_initial_points=3, acq_func="EI").options.acq_func == "EI"
    with pytest.raises(ConfigError, match=r"SkoptSampler\.n_initial: unknown key.*"
                                          r"allowed keys are acq_func, .*n_initial_points"):
        SkoptSampler(seed=0, n_initial=3)
    with pytest.raises(ConfigError, match="SkoptSampler.acq_func = 'UCB': allowed values"):
        SkoptSampler(acq_func="UCB")
    assert SkoptSampler(cost_attr="energy_j").options.acq_func == "EIps"


def test_without_a_search_space_it_models_every_parameter_the_study_has():
    """A plain Optuna objective: once the random start is over, every parameter comes from
    the GP (relative sampling), none from the random fallback."""
    sampler = SkoptSampler(seed=0, n_initial_points=3)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        params = {"lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
                  "beta1": trial.suggest_float("beta1", 0.1, 0.99),
                  "n_conv": trial.suggest_int("n_conv", 0, 3),
                  "relu": trial.suggest_categorical("relu", [False, True])}
        assert trial._relative_params is not None
        if trial.number >= 3:  # from the GP: all four proposed together
            assert set(trial._relative_params) == set(params)
        return accuracy(params)

    study.optimize(objective, n_trials=6)
    assert sampler.infer_relative_search_space(study, study.trials[-1]) == SPACE


def test_a_multi_objective_study_is_refused_with_a_clear_error():
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=SkoptSampler())
    with pytest.raises(ConfigError, match="single-objective.*2 objectives.*'mo'"):
        study.ask().suggest_float("x", 0, 1)


# ---------------------------------------------------------------- item 1: the GP's noise


def test_proposals_between_kernel_refits_keep_the_noise_fitted_at_the_last_refit():
    """gp_refit_every = 5: at 13 trials the GP's hyperparameters were fitted on trials 0-9.
    The proposal's GP must carry that fit's kernel AND its noise level; a noise-free GP
    interpolates noisy accuracies exactly."""
    sampler = SkoptSampler(seed=0, search_space=ADAM)  # the bayes defaults
    study = noisy_study(13, sampler)
    gp = sampler.optimizer(study, 13).models[-1]

    # A refit on trials 0-9, as gp_refit_every = 1 does at every proposal.
    at_refit = copy_of(study, study.trials[:10])
    refit = SkoptSampler(seed=0, search_space=ADAM, gp_refit_every=1) \
        .optimizer(at_refit, 10).models[-1]
    assert refit.noise_ > 1e-3  # noisy data: a real noise term (its lower bound is 1e-5)
    assert gp.noise_ == pytest.approx(refit.noise_, rel=1e-9)
    assert gp.kernel_ == refit.kernel_


def test_a_proposal_with_the_cached_kernel_is_what_a_refit_at_that_point_proposes():
    """At 10 trials the kernel is fitted on exactly the trials told: the GP built with those
    hyperparameters kept fixed must predict, and propose, what the refitted GP does."""
    study = noisy_study(10, SkoptSampler(seed=1, search_space=ADAM))
    cached = SkoptSampler(seed=1, search_space=ADAM).optimizer(study, 10)
    refit = SkoptSampler(seed=1, search_space=ADAM, gp_refit_every=1).optimizer(study, 10)
    x = cached.space.transform(cached.space.rvs(50, random_state=0))
    mean_c, std_c = cached.models[-1].predict(x, return_std=True)
    mean_r, std_r = refit.models[-1].predict(x, return_std=True)
    np.testing.assert_allclose(mean_c, mean_r, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(std_c, std_r, rtol=1e-7, atol=1e-9)
    assert cached.ask() == refit.ask()


# ---------------------------------------------------------------- item 11: what it is told


def _pruned(params: dict, reported: dict[int, float], **attrs) -> optuna.trial.FrozenTrial:
    return create_trial(params=params, distributions=SPACE, state=TrialState.PRUNED,
                        intermediate_values=reported, user_attrs=attrs)


POINTS = [{"lr": 10 ** -(1 + 0.5 * i), "beta1": 0.2 + 0.1 * i, "n_conv": i % 4,
           "relu": i % 2 == 0} for i in range(6)]


def test_pruned_trials_are_told_with_their_last_reported_value():
    sampler = SkoptSampler(seed=0, search_space=SPACE, n_initial_points=5)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for p in POINTS[:5]:  # five pruned trials: the random start is over
        study.add_trial(_pruned(p, {0: 0.2, 3: 0.5, 1: 0.7}))
    study.add_trial(_pruned(POINTS[5], {}))  # reported nothing: nothing to tell
    opt = sampler.optimizer(study, 6)
    assert opt is not None, "pruned trials did not count: the GP would still be random"
    assert len(opt.Xi) == 5
    assert opt.yi == [-0.5] * 5  # the value at the last step (3), negated for skopt


def test_bayes_eips_tells_a_pruned_trial_at_its_projected_full_cost():
    sampler = SkoptSampler(seed=0, search_space=SPACE, n_initial_points=2,
                           cost_attr="energy_j")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for p in POINTS[:2]:
        study.add_trial(create_trial(params=p, distributions=SPACE, value=0.8,
                                     user_attrs={"energy_j": 10.0}))
    study.add_trial(_pruned(POINTS[2], {4: 0.4}, energy_j=2.0, energy_saved_j=8.0))
    study.add_trial(_pruned(POINTS[3], {4: 0.4}, energy_j=2.0))  # no projection: left out
    opt = sampler.optimizer(study, 4)
    assert len(opt.yi) == 3
    assert opt.yi[-1] == pytest.approx([-0.4, math.log(10.0)])  # skopt keeps log(cost)


@pytest.mark.parametrize("refit", [{}, {"gp_refit_every": 1}])
def test_the_cached_kernel_is_fitted_on_finished_trials_never_on_liar_rows(refit):
    """Five trials finished and five running in other workers (told to the GP with the worst
    value). The kernel refitted every 5 trials must come from the five finished trials:
    a kernel fitted on invented values would be cached and kept. Refitted at every proposal
    (gp_refit_every = 1) too: its length scales are those of the finished trials alone."""
    sampler = SkoptSampler(seed=0, search_space=SPACE, n_initial_points=2, **refit)
    study = noisy_study(5, sampler, SPACE)
    for _ in range(5):
        running = study.ask()
        for name, dist in SPACE.items():
            running._suggest(name, dist)
    opt = sampler.optimizer(study, 10)
    assert len(opt.Xi) == 10 and opt.yi[5:] == [max(opt.yi[:5])] * 5  # the liar rows

    finished = copy_of(study, study.trials[:5])
    refit = SkoptSampler(seed=0, search_space=SPACE, n_initial_points=2, gp_refit_every=1) \
        .optimizer(finished, 5).models[-1]
    assert opt.models[-1].kernel_ == refit.kernel_
    assert opt.models[-1].noise_ == pytest.approx(refit.noise_, rel=1e-9)


# ---------------------------------------------------------------- long studies (issue 17)


def _kernel_fits(monkeypatch) -> list[int]:
    """Rows of each kernel-hyperparameter fit (a GP fit with an optimizer) from now on."""
    from tuning_energy.search.skopt_gp import FastGP

    sizes: list[int] = []
    original = FastGP.fit

    def fit(self, X, y):
        if self.optimizer is not None:
            sizes.append(len(X))
        return original(self, X, y)

    monkeypatch.setattr(FastGP, "fit", fit)
    return sizes


def test_a_long_studys_kernel_is_fitted_on_at_most_gp_fit_max_points_trials(monkeypatch):
    """The O(n^3) L-BFGS kernel fit sees the latest `gp_fit_max_points` trials of the refit;
    the GP the acquisition uses is still conditioned on every finished trial."""
    study = noisy_study(32, SkoptSampler(seed=0, search_space=ADAM))
    sizes = _kernel_fits(monkeypatch)
    opt = SkoptSampler(seed=0, search_space=ADAM, gp_fit_max_points=12).optimizer(study, 32)
    assert sizes == [12]
    assert opt.models[-1].X_train_.shape[0] == 32
    sizes.clear()
    SkoptSampler(seed=0, search_space=ADAM, gp_fit_max_points=0).optimizer(study, 32)
    assert sizes == [30]  # uncapped: the first multiple of gp_refit_every (5)


def test_below_the_cap_the_proposals_are_those_of_an_uncapped_gp():
    study = noisy_study(23, SkoptSampler(seed=2, search_space=ADAM))
    capped = SkoptSampler(seed=2, search_space=ADAM)  # default cap: 64
    uncapped = SkoptSampler(seed=2, search_space=ADAM, gp_fit_max_points=0)
    for n in (12, 17, 23):
        part = copy_of(study, study.trials[:n])
        assert capped.optimizer(part, n).ask() == uncapped.optimizer(part, n).ask()


def test_the_predictive_std_is_skopts_to_rounding():
    """FastGP's triangular solve gives skopt's einsum variance (only rounding differs)."""
    from skopt.learning import GaussianProcessRegressor

    study = noisy_study(40, SkoptSampler(seed=3, search_space=SPACE), space=SPACE)
    opt = SkoptSampler(seed=3, search_space=SPACE).optimizer(study, 40)
    gp = opt.models[-1]
    x = opt.space.transform(opt.space.rvs(300, random_state=1))
    mean, std = gp.predict(x, return_std=True)
    mean_s, std_s = GaussianProcessRegressor.predict(gp, x, return_std=True)
    np.testing.assert_allclose(mean, mean_s, rtol=1e-12)
    np.testing.assert_allclose(std, std_s, rtol=1e-7, atol=1e-9)
    assert type(gp).predict is not GaussianProcessRegressor.predict


@pytest.mark.parametrize("bad", [1, -3])
def test_gp_fit_max_points_below_two_is_refused_naming_the_field(bad):
    with pytest.raises(ConfigError, match=r"SkoptSampler\.gp_fit_max_points = "):
        SkoptSampler(gp_fit_max_points=bad)


def test_the_spaces_transform_is_skopts():
    """SkoptSampler's space transforms points with columns split by zip and categorical
    parameters one-hot encoded in numpy (`skopt_space.fast_transform`), not skopt's value-by-value
    loop and sklearn's LabelBinarizer (its checks and a sparse matrix per call, on each
    proposal's 1,000 candidates): the same numbers, both ways, for two categories
    (one column) and for three (one column each), integers and log-scaled floats."""
    from skopt import Optimizer

    from tuning_energy.search.skopt_space import skopt_dimension

    space = {"act": CategoricalDistribution(["relu", "tanh", "gelu"]),
             "relu": CategoricalDistribution([False, True]), "n": IntDistribution(1, 9),
             **ADAM}
    ours = SkoptSampler(0, search_space=space)._skopt_optimizer(space, 0).space
    skopts = Optimizer([skopt_dimension(n, d) for n, d in space.items()], "GP",
                       n_initial_points=0, random_state=0).space
    points = skopts.rvs(2000, random_state=1)
    assert {tuple(p[:2]) for p in points} == {(a, r) for a in range(3) for r in range(2)}
    want = skopts.transform(points)
    got = ours.transform(points)
    assert got.shape == want.shape == (2000, 3 + 1 + 1 + 2)
    assert np.array_equal(got, want)
    assert ours.inverse_transform(got) == skopts.inverse_transform(want)
    assert np.array_equal(ours.transform(points[:1]), want[:1])  # one point: skopt's ask


def _kernel_instances():
    """One instance of every kernel class of sklearn and scikit-optimize that builds with
    its defaults (or the given arguments), leaves and composites."""
    import inspect

    from sklearn.gaussian_process import kernels as sk
    from skopt.learning.gaussian_process import kernels as sko

    needs = {"Exponentiation": lambda m: m.Exponentiation(m.RBF(), 2.0),
             "Sum": lambda m: m.Sum(m.RBF(), m.WhiteKernel()),
             "Product": lambda m: m.Product(m.ConstantKernel(), m.Matern(np.ones(3))),
             "CompoundKernel": lambda m: m.CompoundKernel([m.RBF(), m.DotProduct()])}
    out = []
    for module in (sk, sko):
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, sk.Kernel) and not inspect.isabstract(cls) \
                    and cls.__module__ == module.__name__:
                build = needs.get(name)
                try:
                    out.append(build(module) if build else cls())
                except TypeError:  # abstract-like helpers (KernelOperator) need arguments
                    continue
    return out


def test_the_cached_kernel_introspection_is_sklearns():
    """skopt_gp caches Kernel.hyperparameters / get_params per class for scikit-optimize's
    leaf kernels (dir() and inspect.signature at every read were much of a kernel fit's
    CPU): the same lists and dicts as sklearn's own; sklearn's own kernels are untouched."""
    from sklearn.gaussian_process import kernels as sk

    from tuning_energy.search.skopt_gp import ORIGINAL, _get_params, _hyperparameters

    instances = _kernel_instances()
    cached = [k for k in instances if type(k).get_params is _get_params]
    assert {type(k).__name__ for k in cached} >= {"Matern", "ConstantKernel", "WhiteKernel",
                                                   "HammingKernel", "RBF"}
    assert all(type(k).__module__.startswith("skopt.") for k in cached)
    assert sk.Kernel.hyperparameters is ORIGINAL["hyperparameters"]
    assert sk.Kernel.get_params is ORIGINAL["get_params"]
    for k in cached:
        assert type(k).hyperparameters.fget is _hyperparameters
        assert k.hyperparameters == ORIGINAL["hyperparameters"].fget(k), type(k)
        for deep in (True, False):
            assert repr(k.get_params(deep)) == repr(ORIGINAL["get_params"](k, deep)), type(k)
