"""The strategy contract: every strategy passes it (as Optuna's sampler tests do)."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
from optuna.trial import TrialState

from tuning_energy.config import parse_config
from tuning_energy.errors import ConfigError
from tuning_energy.search.strategies import (
    STRATEGIES,
    grid_size,
    grid_values,
    make_sampler,
    objectives,
    suggest_params,
)
from tuning_energy.store.storage import open_storage

from .conftest import tiny_doc

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "n_conv": {"type": "int", "low": 0, "high": 3},
    "relu": {"type": "bool"},
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "beta1": {"type": "float", "low": 0.1, "high": 0.99},
}


def config():
    return parse_config(tiny_doc(search_space=SPACE))


def fake_accuracy(p: dict) -> float:
    """A cheap deterministic stand-in for training, peaked inside the space."""
    return 1.0 - abs(math.log10(p["lr"]) + 2.5) / 3 - abs(p["beta1"] - 0.8) / 2 \
        - 0.05 * abs(p["n_conv"] - 1) - (0.0 if p["relu"] else 0.05)


def fake_energy_j(p: dict) -> float:
    """Conv blocks cost the most, as measured (RQ2)."""
    return 2.0 + 4.0 * p["n_conv"] + (0.3 if p["relu"] else 0.0)


def run(strategy: str, seed: int, n: int, storage=None, name="s") -> optuna.Study:
    cfg = config()
    metrics = objectives(strategy)
    study = optuna.create_study(storage=storage, study_name=name,
                                directions=[d for _, d in metrics],
                                sampler=make_sampler(strategy, cfg, seed), load_if_exists=True)
    for _ in range(n):
        trial = study.ask()
        params = suggest_params(trial, cfg.search_space)
        energy = fake_energy_j(params)
        trial.set_user_attr("energy_j", energy)
        values = [fake_accuracy(params), energy][: len(metrics)]
        study.tell(trial, values)
    return study


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
class TestStrategyContract:
    def test_proposes_in_bounds_values_of_the_right_type(self, strategy):
        study = run(strategy, 0, 8)
        for t in study.trials:
            p = t.params
            assert isinstance(p["n_conv"], int) and 0 <= p["n_conv"] <= 3
            assert isinstance(p["relu"], bool)
            assert isinstance(p["lr"], float) and 1e-4 <= p["lr"] <= 1e-1
            assert isinstance(p["beta1"], float) and 0.1 <= p["beta1"] <= 0.99

    def test_reproducible_for_a_seed_and_different_across_seeds(self, strategy):
        a = [t.params for t in run(strategy, 3, 8).trials]
        b = [t.params for t in run(strategy, 3, 8).trials]
        c = [t.params for t in run(strategy, 4, 8).trials]
        assert a == b
        assert a != c

    def test_resumes_in_a_store_without_losing_trials(self, strategy, storage_url):
        storage = open_storage(storage_url)
        run(strategy, 0, 5, storage=storage, name="r")
        # A new process: new sampler object, same study in the store.
        study = run(strategy, 0, 4, storage=storage, name="r")
        trials = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(trials) == 9
        keys = [tuple(sorted(t.params.items())) for t in trials]
        assert len(set(keys)) == 9, "a resumed study reran a point it had run"


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_parameter_with_one_value_is_proposed_as_it_is(strategy):
    """low == high in the config: scikit-optimize cannot build such a dimension (it raised
    on the first GP proposal); every strategy proposes the one value."""
    cfg = parse_config(tiny_doc(search_space={
        **SPACE, "n_conv": {"type": "int", "low": 2, "high": 2},
        "beta1": {"type": "float", "low": 0.9, "high": 0.9}}))
    metrics = objectives(strategy)
    study = optuna.create_study(directions=[d for _, d in metrics],
                                sampler=make_sampler(strategy, cfg, 0))
    for _ in range(7):  # past the random start: the GP proposes
        trial = study.ask()
        params = suggest_params(trial, cfg.search_space)
        study.tell(trial, [fake_accuracy(params), fake_energy_j(params)][: len(metrics)])
    assert {(t.params["n_conv"], t.params["beta1"]) for t in study.trials} == {(2, 0.9)}
    assert len({(t.params["lr"], t.params["relu"]) for t in study.trials}) == 7


def test_grid_levels_are_log_spaced_and_exact_at_the_ends():
    cfg = config()
    lr = next(p for p in cfg.search_space if p.name == "lr")
    values = grid_values(lr, 5)
    assert values[0] == 1e-4 and values[-1] == 1e-1
    ratios = [values[i + 1] / values[i] for i in range(4)]
    assert all(abs(r - ratios[0]) < 1e-9 * ratios[0] for r in ratios)
    assert grid_size(cfg.search_space, 5) == 4 * 2 * 5 * 5


def test_grid_budget_below_grid_size_is_a_seeded_subset_without_repeats():
    study = run("grid", 0, 40)
    keys = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(keys) == 40
    again = [t.params for t in run("grid", 0, 40).trials]
    assert again == [t.params for t in study.trials]


def test_bayes_beats_random_on_a_smooth_objective():
    """The GP driver must use what it learned: median over seeds, 15 trials."""
    def best(strategy, seed):
        return max(t.values[0] for t in run(strategy, seed, 15).trials)

    seeds = range(3)  # median of three
    bayes = sorted(best("bayes", s) for s in seeds)[1]
    rand = sorted(best("random", s) for s in seeds)[1]
    assert bayes >= rand


def test_bayes_eips_spends_less_energy_per_trial_than_bayes():
    """Expected improvement per joule steers the GP towards cheap models."""
    def mean_energy(strategy):
        trials = run(strategy, 0, 16).trials[5:]  # after the shared random start
        return sum(t.user_attrs["energy_j"] for t in trials) / len(trials)

    assert mean_energy("bayes-eips") < mean_energy("bayes")


def test_mo_keeps_a_pareto_set_of_accuracy_and_energy():
    study = run("mo", 0, 12)
    assert len(study.directions) == 2
    front = study.best_trials
    assert front
    for t in front:  # no trial is better in both accuracy and energy
        assert not any(o.values[0] > t.values[0] and o.values[1] < t.values[1]
                       for o in study.trials)


def test_unknown_strategy_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match="allowed values are grid, random, bayes"):
        make_sampler("annealing", config(), 0)


def test_a_resumed_bayes_study_proposes_what_an_uninterrupted_one_would(storage_url):
    """The GP's kernel is refitted every few trials on a fixed prefix of the trials, so a
    new process (empty cache) must land on the same points."""
    whole = [t.params for t in run("bayes", 1, 14).trials]
    storage = open_storage(storage_url)
    run("bayes", 1, 8, storage=storage, name="r")
    resumed = run("bayes", 1, 6, storage=storage, name="r")
    assert [t.params for t in resumed.trials] == whole


@pytest.mark.parametrize("options", [
    {},  # PI, sampling: the paper's driver
    {"acq_func": "EI", "acq_optimizer": "lbfgs", "n_points": 300, "n_restarts_optimizer": 2},
    {"acq_func": "gp_hedge"},
    {"cost_attr": "energy_j"},  # bayes-eips: EIps on (objective, cost) pairs
])
def test_the_reused_skopt_optimizer_proposes_what_a_fresh_one_would(options):
    """SkoptSampler copies one template Optimizer instead of building one per proposal:
    with the same seed, points and kernel it must ask for exactly the point skopt's own
    constructor would. The kernel kept between refits is the one skopt fitted, noise
    included: skopt keeps the fitted noise level in `noise_` and zeroes it in `kernel_`."""
    import numpy as np
    from skopt import Optimizer
    from skopt.utils import cook_estimator

    from tuning_energy.search.samplers import SkoptSampler, fitted_hyperparameters
    from tuning_energy.search.strategies import distributions

    space = distributions(parse_config(tiny_doc()).search_space)
    sampler = SkoptSampler(0, search_space=space, **{"n_points": 500, **options})
    opts = sampler.options
    rng = np.random.default_rng(0)
    ps = "ps" in opts.acq_func
    xs, ys = [], []
    for _ in range(12):
        xs.append([int(rng.integers(0, 2)), int(rng.integers(0, 2)),
                   float(10 ** rng.uniform(-3, -1)), float(rng.uniform(0.5, 0.95))])
        y = -float(rng.uniform(0.5, 0.99)) + float(rng.normal(0, 0.05))
        ys.append([y, float(rng.uniform(1, 10))] if ps else y)
    sampler._skopt_optimizer(space, 0)  # builds the template
    dims = sampler._template[1]

    def fresh(seed, kernel=None, noise=None):
        gp = cook_estimator("GP", space=dims, random_state=seed,
                            n_restarts_optimizer=opts.gp_n_restarts_optimizer)
        if kernel is not None:
            gp.kernel, gp.noise, gp.optimizer = kernel, noise, None
        return Optimizer(dims, base_estimator=gp, acq_func=opts.acq_func,
                         n_initial_points=0, acq_optimizer=opts.acq_optimizer,
                         random_state=seed, acq_func_kwargs={"xi": opts.xi, "kappa": opts.kappa},
                         acq_optimizer_kwargs={"n_points": opts.n_points,
                                               "n_restarts_optimizer": opts.n_restarts_optimizer})

    fitted = fresh(7)
    fitted.tell(xs[:10], ys[:10])
    gp = fitted.models[-1] if not ps else None
    cases = [(None, None)]
    if gp is not None:  # between refits: the kernel and noise fitted on the first 10 points
        assert gp.noise_ > 1e-3  # these noisy points have a real noise term
        cases.append(((gp.kernel_.k1, gp.noise_), fitted_hyperparameters(gp)))
    for seed in (3, 11):  # twice each: the template must come out of a proposal unchanged
        for want_kernel, kernel in cases:
            want = fresh(seed, *(want_kernel or ()))
            got = sampler._skopt_optimizer(space, seed, kernel)
            want.tell(xs, ys)
            got.tell(xs, ys)
            assert got.ask() == want.ask()


def test_bayes_cool_never_takes_an_unmeasured_cost_as_free():
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from tuning_energy.search.cost_cooling import full_cost_j

    d = {"x": FloatDistribution(0, 1)}
    done = create_trial(params={"x": 0.5}, distributions=d, value=0.9,
                        user_attrs={"energy_j": 4.0})
    pruned = create_trial(params={"x": 0.5}, distributions=d, state=TrialState.PRUNED,
                          intermediate_values={0: 0.5}, user_attrs={
                              "energy_j": 0.4, "energy_saved_j": 3.6,
                              "predicted_energy_epoch1_j": 4.2})
    unmeasured = create_trial(params={"x": 0.5}, distributions=d, value=0.9,
                              user_attrs={"energy_j": None})
    pruned_unprojected = create_trial(params={"x": 0.5}, distributions=d,
                                      state=TrialState.PRUNED, intermediate_values={0: 0.5},
                                      user_attrs={"energy_j": 0.4})
    assert full_cost_j(done) == 4.0
    assert full_cost_j(pruned) == 4.2  # the whole budget, from the first epoch's energy
    assert full_cost_j(unmeasured) is None
    assert full_cost_j(pruned_unprojected) is None  # its 0.4 J is not what the point costs


def test_bayes_cool_prefers_the_cheaper_of_equally_good_points():
    """Accuracy independent of n_conv, energy 1 + 8 x n_conv: after the random start,
    bayes-cool's proposals must cost less than those of the same GP and EI without the
    cost term (bayes with acq_func EI), over the same seeds."""
    cfg = config()

    def spent(strategy: str, seed: int) -> float:
        ei = cfg.with_overrides(  # the cost's weight cools over the 20-trial budget
            budget=dataclasses.replace(cfg.budget, n_trials=20),
            strategy=dataclasses.replace(cfg.strategy, bayes=dataclasses.replace(
                cfg.strategy.bayes, acq_func="EI")))
        study = optuna.create_study(direction="maximize",
                                    sampler=make_sampler(strategy, ei, seed))
        for _ in range(20):
            trial = study.ask()
            p = suggest_params(trial, cfg.search_space)
            trial.set_user_attr("energy_j", 1.0 + 8.0 * p["n_conv"])
            study.tell(trial, 1.0 - abs(math.log10(p["lr"]) + 2.5) / 3
                       - abs(p["beta1"] - 0.8) / 2)
        return sum(t.user_attrs["energy_j"] for t in study.trials[5:])

    assert sum(spent("bayes-cool", s) for s in range(4)) < \
        0.7 * sum(spent("bayes", s) for s in range(4))


def test_bayes_cool_runs_no_acquisition_pass_but_its_own(monkeypatch):
    """bayes-cool scores its candidates by EI per predicted joule; skopt's acquisition pass
    after fitting the GP (for an ask that never comes) would be energy thrown away."""
    import skopt.optimizer.optimizer as skopt_optimizer

    passes = []
    original = skopt_optimizer._gaussian_acquisition

    def counted(*args, **kwargs):
        passes.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(skopt_optimizer, "_gaussian_acquisition", counted)
    study = run("bayes-cool", 0, 8)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 8
    assert passes == []


#: What a fresh interpreter runs: build the strategy's sampler, then 8 proposals (past every
#: random start) on the contract's fake objective; print the modules the proposals imported.
_FRESH = """
import sys
from tests.test_strategies import config, fake_accuracy, fake_energy_j, objectives
from tuning_energy.search.strategies import make_sampler, suggest_params
import optuna
strategy = sys.argv[1]
sampler = make_sampler(strategy, config(), 0)
study = optuna.create_study(directions=[d for _, d in objectives(strategy)], sampler=sampler)
before = set(sys.modules)
for _ in range(8):
    trial = study.ask()
    params = suggest_params(trial, config().search_space)
    trial.set_user_attr("energy_j", fake_energy_j(params))
    study.tell(trial, [fake_accuracy(params), fake_energy_j(params)][:len(study.directions)])
print(" ".join(sorted(set(sys.modules) - before)))
"""


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_proposals_import_nothing(strategy):
    """A strategy's libraries are imported when its sampler is built (start-up), never in a
    proposal: an import in the first GP proposal charged that trial's proposing ~0.3 s of
    CPU (scikit-optimize), a one-off cost that strategies importing at start-up never pay."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", _FRESH, strategy], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = proc.stdout.split()
    assert imported == [], f"{strategy}'s proposals imported {imported}"
