"""`seek`: what P(reach the target) / joules proposes (Optuna's own sampler suite: in
test_samplers.py, beside SkoptSampler's)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import create_trial

from tuning_energy.config import parse_config
from tuning_energy.errors import ConfigError
from tuning_energy.search.seek import SeekSampler
from tuning_energy.search.strategies import make_sampler

from .conftest import tiny_doc

optuna.logging.set_verbosity(optuna.logging.WARNING)


SPACE = {"n_conv": IntDistribution(0, 3), "lr": FloatDistribution(1e-4, 1e-1, log=True),
         "relu": CategoricalDistribution([False, True])}


def accuracy(p: dict) -> float:
    """MLPs (n_conv 0) level off at 0.90; a conv layer reaches 0.985 at lr 10^-2.5."""
    top = 0.90 if p["n_conv"] == 0 else 0.985
    return top - 0.03 * abs(math.log10(p["lr"]) + 2.5)


def energy_j(p: dict) -> float:
    return 1.0 + 4.0 * p["n_conv"]


def proposals(cost: str, n_seen: int = 24, n_asked: int = 6, seed: int = 0,
              pessimism: float = 1.0) -> list[dict]:
    """What seek proposes after n_seen random trials of `accuracy` (target 0.98)."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(direction="maximize", sampler=SeekSampler(
        seed, target=0.98, search_space=SPACE, cost=cost, bound=1.0, n_points=500,
        pessimism=pessimism))
    for _ in range(n_seen):
        p = {"n_conv": int(rng.integers(0, 4)), "lr": float(10 ** rng.uniform(-4, -1)),
             "relu": bool(rng.integers(0, 2))}
        study.add_trial(create_trial(params=p, distributions=SPACE,
                                     value=accuracy(p) + float(rng.normal(0, 0.003)),
                                     user_attrs={"energy_j": energy_j(p)}))
    out = []
    for _ in range(n_asked):
        trial = study.ask(SPACE)
        out.append(trial.params)
        trial.set_user_attr("energy_j", energy_j(trial.params))
        study.tell(trial, accuracy(trial.params))
    return out


def test_a_cheap_model_that_cannot_reach_the_target_gets_no_priority():
    """MLPs cost a fifth of a one-conv model and level off below the target: P / joules
    still proposes conv models, near the learning rate that reaches it."""
    for seed in range(3):
        asked = proposals("measured", seed=seed)
        assert sum(p["n_conv"] >= 1 for p in asked) >= 5, asked
        assert np.median([abs(math.log10(p["lr"]) + 2.5) for p in asked]) < 0.5


def test_of_models_equally_likely_to_reach_it_the_cheaper_is_proposed():
    """One conv layer reaches the target as three do at a third of their joules: with the
    cost, the proposals have fewer conv layers than those of P alone. (With the plain
    predictive, pessimism 0: at the default 1 both stay beside the best trial seen.)"""
    with_cost = [p["n_conv"] for s in range(3) for p in proposals("measured", seed=s,
                                                                   pessimism=0.0)]
    without = [p["n_conv"] for s in range(3) for p in proposals("none", seed=s, pessimism=0.0)]
    assert np.mean(with_cost) < np.mean(without)


def test_the_flops_of_the_builtin_datasets_are_those_of_the_loaded_data():
    from tuning_energy.cnn.data import load_dataset
    from tuning_energy.cnn.models import DATASET_SHAPES

    for dataset in ("digits", "mnist1d"):  # the ones that need no download
        cfg = parse_config(tiny_doc(data={"dataset": dataset}))
        data = load_dataset(cfg.data, progress=False)
        assert DATASET_SHAPES[dataset] == (data.input_shape, data.n_classes), dataset


def test_seek_needs_the_configs_target():
    doc = tiny_doc()
    del doc["target_accuracy"]
    with pytest.raises(ConfigError, match="strategy 'seek' needs the config's target: set "
                                          "target_accuracy"):
        make_sampler("seek", parse_config(doc), 0)


@pytest.mark.parametrize("table, key", [({"cost": "watts"}, "strategy.seek.cost"),
                                        ({"n_points": 0}, "strategy.seek.n_points"),
                                        ({"typo": 1}, "strategy.seek.typo")])
def test_strategy_seek_errors_name_the_key(table, key):
    with pytest.raises(ConfigError, match=key):
        parse_config(tiny_doc(strategy={"seek": table}))
