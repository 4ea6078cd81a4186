"""Search strategies. Each one only returns an Optuna sampler; the objective is shared.

- `grid`:   `levels` values per float parameter (log-spaced for log parameters), every
            value of int and bool parameters; visited in a seeded random order without
            repeats, so a budget smaller than the grid runs a seeded subset (as the paper's
            64 grid points). Optuna's GridSampler skips points already in the study.
- `random`: seeded uniform / log-uniform sampling (Optuna's RandomSampler, reseeded per
            trial number so that a resumed study does not replay its first points).
- `bayes`:  scikit-optimize's Gaussian-process `Optimizer` behind `SkoptSampler`
            (samplers.py), rebuilt from the study's finished trials at every proposal (a
            resumed study continues where it stopped); pruned trials are told with their
            last reported accuracy. Acquisition PI and a few random initial points by
            default, as Yarally et al. With several workers, trials still RUNNING are told
            to the GP with the worst value seen so far ("constant liar"), so that
            concurrent proposals differ.
- `tpe`:    Optuna's multivariate TPE.
- `gp`:     Optuna's GPSampler (log EI, its own GP in PyTorch).
- `mo`:     multi-objective: maximise accuracy and minimise energy_j (MO-TPE); the study
            keeps the Pareto set (`study.best_trials`).
- `bayes-eips`: the scikit-optimize driver with a cost-aware acquisition, expected
            improvement per joule (skopt's EIps with each trial's energy as its cost).
- `bayes-cool`: energy-aware: expected improvement per predicted joule, cost-cooled
            (CArBO): the cost's weight falls from 1 to 0 over the budget (cost_cooling.py).
- `seek`:   the candidate most likely to reach the config's target per predicted joule
            (P(reach | x) from the GP, joules from FLOPs or a model of measured joules;
            seek.py, `[strategy.seek]`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, GridSampler

from tuning_energy.config import PRUNERS, ParamSpec, StudyConfig
from tuning_energy.errors import ConfigError
from tuning_energy.search.cost_cooling import CostCooledSampler
from tuning_energy.search.samplers import (
    ResumableGPSampler,
    ResumableRandomSampler,
    ResumableTPESampler,
    SkoptSampler,
)
from tuning_energy.search.seek import SeekSampler


def distributions(space: Sequence[ParamSpec]) -> dict[str, BaseDistribution]:
    """Optuna distributions for a search space, in declaration order."""
    out: dict[str, BaseDistribution] = {}
    for p in space:
        if p.type == "float":
            out[p.name] = FloatDistribution(float(p.low), float(p.high), log=p.log)
        elif p.type == "int":
            out[p.name] = IntDistribution(int(p.low), int(p.high), log=p.log)
        else:
            out[p.name] = CategoricalDistribution(list(p.choices))
    return out


def suggest_params(trial: optuna.Trial, space: Sequence[ParamSpec]) -> dict[str, Any]:
    """Ask the trial for every parameter of the space (the sampler picks the values)."""
    out: dict[str, Any] = {}
    for p in space:
        if p.type == "float":
            out[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
        elif p.type == "int":
            out[p.name] = trial.suggest_int(p.name, p.low, p.high, log=p.log)
        else:
            out[p.name] = trial.suggest_categorical(p.name, list(p.choices))
    return out


# ---------------------------------------------------------------- grid


def grid_values(p: ParamSpec, levels: int) -> list[Any]:
    if p.type in ("bool", "categorical"):
        return list(p.choices)
    if p.type == "int":
        values = np.unique(np.round(
            np.geomspace(p.low, p.high, levels) if p.log else np.arange(p.low, p.high + 1)
        ).astype(int))
        return [int(v) for v in values]
    if p.low == p.high:
        return [float(p.low)]
    raw = np.geomspace(p.low, p.high, levels) if p.log else np.linspace(p.low, p.high, levels)
    values = [float(v) for v in raw]
    values[0], values[-1] = float(p.low), float(p.high)  # exact ends: always in bounds
    return values


def grid_space(space: Sequence[ParamSpec], levels: int) -> dict[str, list[Any]]:
    return {p.name: grid_values(p, levels) for p in space}


def grid_size(space: Sequence[ParamSpec], levels: int) -> int:
    return math.prod(len(v) for v in grid_space(space, levels).values())


# ---------------------------------------------------------------- registry

SamplerFactory = Callable[[StudyConfig, int], BaseSampler]


class _BudgetGridSampler(GridSampler):
    """GridSampler without its `study.stop()` when the grid is used up: that call only works
    inside `study.optimize()` and raised from the runner's `study.tell()` on the last point
    of a whole grid. The runner already caps the budget at the grid size."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def _grid(config: StudyConfig, seed: int) -> BaseSampler:
    return _BudgetGridSampler(grid_space(config.search_space, config.strategy.grid_levels),
                              seed=seed)


def _random(config: StudyConfig, seed: int) -> BaseSampler:
    return ResumableRandomSampler(seed=seed)


def _bayes(config: StudyConfig, seed: int, cost_attr: str | None = None) -> BaseSampler:
    return SkoptSampler(seed, search_space=distributions(config.search_space),
                        cost_attr=cost_attr, **dataclasses.asdict(config.strategy.bayes))


def _bayes_eips(config: StudyConfig, seed: int) -> BaseSampler:
    return _bayes(config, seed, cost_attr="energy_j")


def _bayes_cool(config: StudyConfig, seed: int) -> BaseSampler:
    return CostCooledSampler(seed, n_trials=config.budget.n_trials,
                             search_space=distributions(config.search_space),
                             **dataclasses.asdict(config.strategy.bayes))


def _needs_target(config: StudyConfig, what: str) -> float:
    if config.target is None:
        key = "target_accuracy" if config.objective.builtin else "[objective] target"
        raise ConfigError(f"{what} needs the config's target: set {key} (the value a trial "
                          f"must reach)")
    return config.target


def _seek(config: StudyConfig, seed: int) -> BaseSampler:
    o = config.strategy.seek
    cost = o.cost if o.cost != "auto" else "flops" if config.objective.builtin else "measured"
    flops = None
    if cost == "flops":
        if not config.objective.builtin:
            raise ConfigError("strategy.seek.cost = 'flops': only the built-in CNN objective "
                              "has FLOPs; use 'measured' (a model of the measured joules)")
        from tuning_energy.cnn.models import ModelSpec, spec_flops

        def flops(params: dict[str, Any]) -> float:
            return spec_flops(ModelSpec.from_params(config.param_values(params)),
                              config.data.dataset)
    options = {**dataclasses.asdict(config.strategy.bayes),
               "n_initial_points": o.n_initial_points, "n_points": o.n_points}
    return SeekSampler(seed, target=_needs_target(config, "strategy 'seek'"),
                       search_space=distributions(config.search_space), cost=cost,
                       flops=flops, bound=1.0 if config.metric == "accuracy" else None,
                       pessimism=o.pessimism,
                       **options)


def _tpe(config: StudyConfig, seed: int) -> BaseSampler:
    return ResumableTPESampler(seed=seed, multivariate=True, constant_liar=True,
                               n_startup_trials=config.strategy.bayes.n_initial_points)


def _gp(config: StudyConfig, seed: int) -> BaseSampler:
    return ResumableGPSampler(seed=seed, n_startup_trials=config.strategy.bayes.n_initial_points)


def _mo(config: StudyConfig, seed: int) -> BaseSampler:
    # MO-TPE: NSGA-II needs generations of tens of trials; our budgets are tens in all.
    return ResumableTPESampler(seed=seed, multivariate=True, constant_liar=True,
                               n_startup_trials=config.strategy.bayes.n_initial_points)


STRATEGIES: dict[str, SamplerFactory] = {
    "grid": _grid,
    "random": _random,
    "bayes": _bayes,
    "tpe": _tpe,
    "gp": _gp,
    "mo": _mo,
    "bayes-eips": _bayes_eips,
    "bayes-cool": _bayes_cool,
    "seek": _seek,
}

#: The strategies driven by scikit-optimize (SkoptSampler): [strategy.bayes] is theirs.
SKOPT_STRATEGIES = ("bayes", "bayes-eips", "bayes-cool", "seek")
#: Objectives per strategy: `mo` also minimises the trial's energy (after the metric).
MULTI_OBJECTIVE = {"mo": (("accuracy", "maximize"), ("energy_j", "minimize"))}


def objectives(name: str, config: StudyConfig | None = None) -> tuple[tuple[str, str], ...]:
    """(metric name, direction) pairs of the study that strategy `name` runs: the config's
    metric (`[objective]`; the built-in CNN's `accuracy`, maximised), and for `mo` the
    trial's energy, minimised."""
    metric = ("accuracy", "maximize") if config is None else (config.metric, config.direction)
    return (metric, *MULTI_OBJECTIVE[name][1:]) if name in MULTI_OBJECTIVE else (metric,)


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise ConfigError(
            f"strategy = {name!r}: unknown strategy; allowed values are {', '.join(STRATEGIES)}"
        )
    return name


def parse_variant(spec: str) -> tuple[str, str | None]:
    """'tpe' -> ('tpe', None); 'tpe+asha' -> ('tpe', 'asha'): a strategy with a pruner, as
    `make compare STRATEGIES=tpe,tpe+asha` names it (and the analysis labels it)."""
    name, _, pruner = spec.partition("+")
    check_strategy(name)
    if not pruner:
        return name, None
    if pruner not in PRUNERS[1:]:
        raise ConfigError(f"strategy = {spec!r}: unknown pruner {pruner!r} after '+'; allowed "
                          f"values are {', '.join(PRUNERS[1:])}")
    if name in MULTI_OBJECTIVE:
        raise ConfigError(f"strategy = {spec!r}: {name} is multi-objective and Optuna cannot "
                          f"prune it; use {name} without '+{pruner}'")
    return name, pruner


def make_sampler(name: str, config: StudyConfig, seed: int) -> BaseSampler:
    """The sampler for strategy `name`, seeded."""
    return STRATEGIES[check_strategy(name)](config, seed)


# ---------------------------------------------------------------- pruners


def make_pruner(config: StudyConfig) -> optuna.pruners.BasePruner:
    """The pruner named in `[pruning]`; the step is the epoch (a function's ctx.report step),
    the value the metric (validation accuracy for the built-in CNN objective)."""
    p = config.pruning
    if p.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials,
                                           n_warmup_steps=p.n_warmup_epochs)
    if p.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_epochs,
                                                      reduction_factor=p.reduction_factor)
    if p.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_epochs,
                                              max_resource=config.n_steps or "auto",
                                              reduction_factor=p.reduction_factor)
    if p.pruner == "target":
        from tuning_energy.search.target_pruner import TargetPruner

        if config.n_steps is None:
            raise ConfigError("pruning.pruner = 'target': needs the number of reports a whole "
                              "trial makes, to extrapolate to its last ([objective] steps)")
        return TargetPruner(_needs_target(config, "pruning.pruner = 'target'"), config.n_steps,
                            grace_steps=p.grace_epochs, threshold=p.threshold,
                            upper=1.0 if config.metric == "accuracy" else None)
    return optuna.pruners.NopPruner()
