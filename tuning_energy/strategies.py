"""Search strategies. Each one only returns an Optuna sampler; the objective is shared.

- `grid`:   `levels` values per float parameter (log-spaced for log parameters), every
            value of int and bool parameters; visited in a seeded random order without
            repeats, so a budget smaller than the grid runs a seeded subset (as the paper's
            64 grid points). Optuna's GridSampler skips points already in the study.
- `random`: seeded uniform / log-uniform sampling (Optuna's RandomSampler, reseeded per
            trial number so that a resumed study does not replay its first points).
- `bayes`:  scikit-optimize's Gaussian-process `Optimizer` behind `SkoptSampler`, rebuilt
            from the study's finished trials at every proposal (a resumed study continues
            where it stopped). Acquisition PI and a few random initial points by default,
            as Yarally et al. With several workers, trials still RUNNING are told to the GP
            with the worst value seen so far ("constant liar"), so that concurrent
            proposals differ.
- `tpe`:    Optuna's multivariate TPE.
- `gp`:     Optuna's GPSampler (log EI, its own GP in PyTorch).
- `mo`:     multi-objective: maximise accuracy and minimise energy_j (MO-TPE); the study
            keeps the Pareto set (`study.best_trials`).
- `bayes-eips`: the scikit-optimize driver with a cost-aware acquisition, expected
            improvement per joule (skopt's EIps with each trial's energy as its cost).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
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
from optuna.samplers import BaseSampler, GPSampler, GridSampler, RandomSampler, TPESampler
from optuna.samplers._lazy_random_state import LazyRandomState
from optuna.trial import FrozenTrial, TrialState

from .config import PRUNERS, BayesConfig, ParamSpec, StudyConfig
from .errors import ConfigError


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


# ---------------------------------------------------------------- random


def derive_seed(seed: int, trial_number: int) -> int:
    """A per-trial seed: the same (seed, trial) gives the same point in any process."""
    return (seed * 1_000_003 + trial_number * 7_919 + 1) % 2**32


def _reseed(sampler: BaseSampler, seed: int) -> None:
    """Reseed every random state of a sampler and of the samplers it holds."""
    for i, value in enumerate(vars(sampler).values()):
        if isinstance(value, LazyRandomState):
            value.rng.seed((seed + 7_919 * i) % 2**32)
        elif isinstance(value, BaseSampler):
            _reseed(value, (seed + 104_729 * (i + 1)) % 2**32)


class _PerTrialSeeded:
    """Mixin: reseed the sampler from (seed, trial number) before each trial.

    A seeded Optuna sampler replays its random stream from the start in a new process, so a
    resumed study would rerun the points it already ran (the random sampler, and the random
    start-up trials of TPE and GP). Seeding per trial number makes a resumed or shared
    study continue with new points and stay reproducible.
    """

    _base_seed: int | None = None

    def before_trial(self, study, trial: FrozenTrial) -> None:
        if self._base_seed is not None:
            _reseed(self, derive_seed(self._base_seed, trial.number))  # type: ignore[arg-type]
        super().before_trial(study, trial)  # type: ignore[misc]


class ResumableRandomSampler(_PerTrialSeeded, RandomSampler):
    def __init__(self, seed: int | None = None) -> None:
        super().__init__(seed)
        self._base_seed = seed


class ResumableTPESampler(_PerTrialSeeded, TPESampler):
    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed


class ResumableGPSampler(_PerTrialSeeded, GPSampler):
    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed


# ---------------------------------------------------------------- bayes (scikit-optimize)


class SkoptSampler(BaseSampler):
    """scikit-optimize's GP `Optimizer` as an Optuna sampler.

    At each proposal the GP is rebuilt from the study's COMPLETE trials (the study is the
    single source of truth), so a resumed or shared study continues where it stopped.
    Until `n_initial_points` trials are complete, points are drawn at random. Values are
    maximised (we tell skopt the negated objective). Parameters outside the declared space
    fall back to independent random sampling.

    Constant liar: trials RUNNING in other workers (their parameters already in the store)
    are told to the GP with the worst finished value, which pushes the acquisition away
    from them; a single process never has such trials, so it is unaffected.
    """

    def __init__(
        self,
        search_space: dict[str, BaseDistribution],
        options: BayesConfig | None = None,
        seed: int | None = None,
        cost_attr: str | None = None,
    ) -> None:
        self._space = dict(search_space)
        self._options = options or BayesConfig()
        self._seed = seed
        # Cost-aware acquisition (EIps / PIps): skopt models log(cost) with a second GP and
        # divides the improvement by it. skopt calls the cost "time"; we give it energy.
        self._cost_attr = cost_attr
        if cost_attr is not None and not self._options.acq_func.endswith("ps"):
            self._options = dataclasses.replace(self._options, acq_func="EIps")
        self._random = ResumableRandomSampler(seed=seed)
        self._dims = [self._dimension(n, d) for n, d in self._space.items()]
        self._kernel_cache: tuple[Any, tuple[Any, float | None]] | None = None
        self._template: tuple[Any, Any] | None = None  # (cooked GP, empty Optimizer)

    @staticmethod
    def _dimension(name: str, dist: BaseDistribution):
        from skopt.space import Categorical, Integer, Real

        if isinstance(dist, FloatDistribution):
            return Real(dist.low, dist.high, prior="log-uniform" if dist.log else "uniform", name=name)
        if isinstance(dist, IntDistribution):
            return Integer(dist.low, dist.high, prior="log-uniform" if dist.log else "uniform", name=name)
        if isinstance(dist, CategoricalDistribution):
            return Categorical(list(range(len(dist.choices))), name=name)  # indices: any type
        raise TypeError(f"SkoptSampler: unsupported distribution {dist!r}")

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def before_trial(self, study, trial: FrozenTrial) -> None:
        self._random.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return self._space

    def _to_internal(self, trial: FrozenTrial) -> list[Any] | None:
        row = []
        for name, dist in self._space.items():
            if name not in trial.params:
                return None
            value = trial.params[name]
            if isinstance(dist, CategoricalDistribution):
                value = dist.choices.index(value)
            row.append(value)
        return row

    def optimizer(self, study: optuna.Study, trial_number: int = 0) -> Any:
        """A fitted skopt Optimizer over the study's finished trials (None while too few)."""
        trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                          TrialState.RUNNING), use_cache=True)
        xs, ys, running = [], [], []
        for t in trials:
            row = self._to_internal(t)
            if row is not None and t.state == TrialState.RUNNING:
                running.append(row)  # in another worker (ours has no parameters yet)
                continue
            if row is None or t.value is None or not math.isfinite(t.value):
                continue
            sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
            if self._cost_attr is None:
                xs.append(row)
                ys.append(sign * t.value)
                continue
            cost = t.user_attrs.get(self._cost_attr)
            if cost is not None and cost > 0:  # unmeasured energy is never taken as free
                xs.append(row)
                ys.append([sign * t.value, float(cost)])
        o = self._options
        if len(xs) < o.n_initial_points:
            return None
        if running and ys:  # constant liar: the worst value so far (skopt minimises)
            if self._cost_attr is None:
                lie: Any = max(ys)
            else:  # EIps: the worst value at the median cost
                lie = [max(y[0] for y in ys), float(np.median([y[1] for y in ys]))]
            xs, ys = xs + running, ys + [lie] * len(running)
        seed = None if self._seed is None else derive_seed(self._seed, trial_number) % 2**31
        opt = self._skopt_optimizer(seed, self._kernel(xs, ys))
        with warnings.catch_warnings():
            # "The objective has been evaluated at point ... before": harmless for a GP.
            warnings.simplefilter("ignore", UserWarning)
            opt.tell(xs, ys)
        return opt

    def _skopt_optimizer(self, seed: int | None, kernel: tuple[Any, float] | None = None):
        """An empty skopt Optimizer seeded with `seed`, as
        `Optimizer(dims, base_estimator=cook_estimator("GP", ...), random_state=seed, ...)`
        would build it, without building it: constructing one normalises the space and cooks
        the GP again (~30 ms of scipy distribution objects, half of a proposal between kernel
        refits). The template is built once; each proposal gets a shallow copy with its own
        seed, its own GP and empty state (tests check the proposals are the same)."""
        from sklearn.base import clone
        from sklearn.utils import check_random_state

        if self._template is None:
            from skopt import Optimizer
            from skopt.utils import cook_estimator

            o = self._options
            # skopt's own GP ("GP"), cooked here so that its kernel-fit restarts are ours.
            gp = cook_estimator("GP", space=self._dims, random_state=None,
                                n_restarts_optimizer=o.gp_n_restarts_optimizer)
            self._template = (gp, Optimizer(
                self._dims, base_estimator=clone(gp), acq_func=o.acq_func, n_initial_points=0,
                acq_optimizer=o.acq_optimizer, random_state=0,
                acq_func_kwargs={"xi": o.xi, "kappa": o.kappa},
                acq_optimizer_kwargs={"n_points": o.n_points,
                                      "n_restarts_optimizer": o.n_restarts_optimizer}))
        gp_template, empty = self._template
        gp = clone(gp_template).set_params(random_state=seed)
        if kernel is not None:  # hyperparameters fitted earlier, kept fixed (no L-BFGS)
            gp.set_params(kernel=kernel[0], noise=kernel[1], optimizer=None)
        opt = copy.copy(empty)
        if "ps" in opt.acq_func:  # EIps / PIps: skopt fits (objective, log cost) jointly
            from sklearn.multioutput import MultiOutputRegressor

            opt.base_estimator_ = MultiOutputRegressor(gp)
        else:
            opt.base_estimator_ = gp
        opt.rng = check_random_state(seed)  # what Optimizer(random_state=seed) starts from
        opt.Xi, opt.yi, opt.models, opt.cache_ = [], [], [], {}
        opt._n_initial_points = opt.n_initial_points_
        if hasattr(empty, "gains_"):  # gp_hedge updates it in place
            opt.gains_ = empty.gains_.copy()
        return opt

    def _kernel(self, xs: list, ys: list) -> tuple[Any, float] | None:
        """GP kernel hyperparameters fitted on the first m = k * floor(n / k) points.

        The L-BFGS fit of the kernel is most of a proposal's cost (~60 likelihood
        evaluations); refitting every k trials keeps the GP's behaviour and cuts that k-fold.
        The fit depends only on those first m points (trial order) and the seed, so a
        resumed study refits them and proposes exactly what an uninterrupted one would.
        """
        k = self._options.gp_refit_every
        m = len(xs) // k * k
        if k <= 1 or m < self._options.n_initial_points or self._cost_attr is not None:
            return None  # EIps fits a second GP on the cost: refit both every time
        key = (m, repr(xs[:m]), repr(ys[:m]))
        if self._kernel_cache is None or self._kernel_cache[0] != key:
            seed = None if self._seed is None else derive_seed(self._seed, m) % 2**31
            opt = self._skopt_optimizer(seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                opt.tell(xs[:m], ys[:m], fit=True)
            kernel = opt.models[-1].kernel_
            base, noise = (kernel.k1, kernel.k2.noise_level) if hasattr(kernel, "k2") and \
                type(kernel.k2).__name__ == "WhiteKernel" else (kernel, None)
            self._kernel_cache = (key, (base, noise))
        return self._kernel_cache[1]

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        if study._is_multi_objective():
            raise ConfigError("strategy 'bayes' is single-objective; use strategy 'mo'")
        opt = self.optimizer(study, trial.number)
        if opt is None:
            return {}  # initial random points: sample_independent draws them
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            point = opt.ask()
        out: dict[str, Any] = {}
        for (name, dist), value in zip(self._space.items(), point, strict=True):
            if isinstance(dist, CategoricalDistribution):
                out[name] = dist.choices[int(value)]
            elif isinstance(dist, IntDistribution):
                out[name] = int(value)
            else:
                out[name] = float(value)
        return out

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)


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


def _bayes(config: StudyConfig, seed: int) -> BaseSampler:
    return SkoptSampler(distributions(config.search_space), config.strategy.bayes, seed=seed)


def _bayes_eips(config: StudyConfig, seed: int) -> BaseSampler:
    return SkoptSampler(distributions(config.search_space), config.strategy.bayes, seed=seed,
                        cost_attr="energy_j")


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
}

#: Objectives per strategy: `mo` maximises accuracy and minimises the trial's energy.
#: The strategies driven by scikit-optimize (SkoptSampler): [strategy.bayes] is theirs.
SKOPT_STRATEGIES = ("bayes", "bayes-eips")
MULTI_OBJECTIVE = {"mo": (("accuracy", "maximize"), ("energy_j", "minimize"))}


def objectives(name: str) -> tuple[tuple[str, str], ...]:
    """(metric name, direction) pairs of the study that strategy `name` runs."""
    return MULTI_OBJECTIVE.get(name, (("accuracy", "maximize"),))


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
    """The pruner named in `[pruning]`; the step is the epoch, the value validation accuracy."""
    p = config.pruning
    if p.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials,
                                           n_warmup_steps=p.n_warmup_epochs)
    if p.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_epochs,
                                                      reduction_factor=p.reduction_factor)
    if p.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_epochs,
                                              max_resource=config.train.epochs,
                                              reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()
