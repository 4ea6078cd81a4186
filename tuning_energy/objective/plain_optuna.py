"""`metered(objective)`: a plain Optuna objective `f(trial)`, energy-metered.

    import optuna, tuning_energy

    def objective(trial):
        x = trial.suggest_float("x", -10, 10)
        return (x - 2) ** 2

    study = optuna.create_study(storage="sqlite:///studies/mine.db", study_name="mine-tpe-s0")
    study.optimize(tuning_energy.metered(objective, target=0.5), n_trials=30)

Each call runs `f` inside one meter window and stores the same energy attrs on the trial as
the runner's objective does (objective.energy_attrs: `energy_j`, `energy_method`,
`energy_by_device_j`, `energy_error`, `duration_s`, `avg_power_w`; energy/baseline.py:
`idle_power_w` (None: not measured here), `energy_net_j`, `co2_g`; store/runs.py: `run_id`,
`hardware_id`), also when `f` raises or prunes (the attrs are written before the exception
goes on to Optuna). A value that is not a finite number (NaN, inf: the trial diverged)
is the one rule of the runner's objective (objective/context.py): the trial gets
`diverged = true` and `fail_reason`, keeps its energy, and is returned to Optuna as NaN,
which records it FAIL and goes on with the study. The sampler is wrapped in a `MeteredSampler` on the first call, so the
strategy's own computation that ran before the call (relative sampling at `ask`) is stored
as `propose_s` / `propose_energy_j`; sampling inside `f` (a `suggest_*` call that samples
independently) is part of the call's window, and so of `energy_j`.

The study gets the attrs the analysis reads (once, on the first call): `strategy`, `seed`,
`energy_method`, `meter`, `hardware`, and a small `config` (its `name` is the comparison;
its metric and direction, the `target` for energy to target, and its pruner once it has
pruned a trial: the strategy is then labelled `tpe+median`). So `figures`, `show`, `export`
and the dashboard work on the store like on one the runner wrote.

Comparison, strategy and seed (`study_identity`): the keyword arguments `comparison`,
`strategy`, `seed` when given; else from a study named as `tuning-energy study` names them,
`<comparison>-<strategy>-s<seed>` with `<strategy>` the sampler's name (`quad-tpe-s0`,
`quad-random-s0` and `quad-tpe-s1` are comparison `quad`, seeds 0 and 1 of tpe and
random); else the comparison is the study's name, the strategy the sampler's name (from its
class: `tpe`, `random`, `gp`, `grid`, `bayes`, ...) and the seed 0.
"""

from __future__ import annotations

import math
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna

from tuning_energy.config import METER_KINDS, MeterConfig
from tuning_energy.errors import ConfigError

#: Optuna's samplers (and ours) by the strategy name the analysis shows.
_STRATEGY_NAMES = (
    ("SkoptSampler", "bayes"), ("GPSampler", "gp"), ("TPESampler", "tpe"),
    ("RandomSampler", "random"), ("GridSampler", "grid"), ("CmaEsSampler", "cmaes"),
    ("NSGAIISampler", "nsga2"), ("NSGAIIISampler", "nsga3"), ("QMCSampler", "qmc"),
    ("BruteForceSampler", "bruteforce"),
)
_PRUNER_NAMES = (("MedianPruner", "median"), ("SuccessiveHalvingPruner", "asha"),
                 ("HyperbandPruner", "hyperband"), ("NopPruner", "none"))


def strategy_of(sampler: Any) -> str:
    """The strategy name of an Optuna sampler, from its class (its bases included)."""
    sampler = getattr(sampler, "sampler", sampler)  # a MeteredSampler's inner sampler
    for cls in type(sampler).__mro__:
        for name, strategy in _STRATEGY_NAMES:
            if cls.__name__ == name:
                if strategy == "bayes" and getattr(sampler, "_cost_attr", None):
                    return "bayes-eips"
                return strategy
    return type(sampler).__name__.lower()


def study_identity(study_name: str, sampler_strategy: str, comparison: str | None = None,
                   strategy: str | None = None, seed: int | None = None) -> tuple[str, str, int]:
    """(comparison, strategy, seed) of a metered study: the arguments given, the rest parsed
    from a name `<comparison>-<strategy>-s<seed>` (the strategy being `strategy` or, not
    given, the sampler's `sampler_strategy`), else the study's name, the sampler's strategy,
    seed 0."""
    strategy = strategy or sampler_strategy
    parsed = re.fullmatch(rf"(.+)-{re.escape(strategy)}-s(\d+)", study_name)
    if comparison is None:
        comparison = parsed.group(1) if parsed else study_name
    if seed is None:
        seed = int(parsed.group(2)) if parsed else 0
    return comparison, strategy, seed


def _pruner_of(pruner: Any) -> str:
    for cls in type(pruner).__mro__:
        for name, label in _PRUNER_NAMES:
            if cls.__name__ == name:
                return label
    return type(pruner).__name__.lower()


class MeteredObjective:
    """`objective(trial)` inside a meter window (see the module doc); made by `metered`."""

    def __init__(self, objective: Callable[[optuna.Trial], Any], meter: str = "auto",
                 target: float | None = None, seed: int | None = None,
                 meter_config: MeterConfig | None = None, out=None,
                 comparison: str | None = None, strategy: str | None = None):
        if not callable(objective):
            raise ConfigError(f"metered(objective={objective!r}): must be a function of an "
                              f"Optuna trial")
        if meter not in METER_KINDS:
            raise ConfigError(f"metered(meter={meter!r}): allowed values are "
                              f"{', '.join(map(repr, METER_KINDS))}")
        self.objective = objective
        self.meter_config = meter_config or MeterConfig(kind=meter, idle_s=0.0)
        for name, v in (("comparison", comparison), ("strategy", strategy)):
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise ConfigError(f"metered({name}={v!r}): must be a non-empty string")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"metered(seed={seed!r}): must be an int")
        self.target = target
        self.seed = seed
        self.comparison = comparison
        self.strategy = strategy
        self.out = out
        self._choice = None
        self._on_measurement = None
        self._studies: dict[int, dict[str, Any]] = {}  # study id -> run attrs of its trials

    def _meter(self):
        if self._choice is None:
            from tuning_energy.energy import build_meter
            from tuning_energy.energy.baseline import TrialEnergyAttrs
            from tuning_energy.energy.carbon import resolve_carbon

            self._choice = build_meter(self.meter_config)
            self._on_measurement = TrialEnergyAttrs(None, resolve_carbon(self.meter_config))
        return self._choice.meter

    def _setup(self, study: optuna.Study) -> dict[str, Any]:
        """Once per study: wrap its sampler, store the study attrs, record this run."""
        key = study._study_id
        if key in self._studies:
            return self._studies[key]
        from tuning_energy._version import __version__
        from tuning_energy.search.metered_sampler import MeteredSampler
        from tuning_energy.store.runs import hardware_info, record_run

        meter = self._meter()
        if not isinstance(study.sampler, MeteredSampler):
            study.sampler = MeteredSampler(study.sampler, meter)
        attrs = study.user_attrs
        if "config" not in attrs:
            names = study.metric_names or ["value"] * len(study.directions)
            metric = names[0]
            direction = study.directions[0].name.lower()
            comparison, strategy, seed = study_identity(
                study.study_name, strategy_of(study.sampler), self.comparison, self.strategy,
                self.seed)
            config = {"name": comparison,
                      "objective": {"function": None, "metric": metric,
                                    "direction": direction, "target": self.target},
                      # set to the study's pruner once it prunes a trial (Optuna's
                      # default MedianPruner is on every study, used or not)
                      "pruning": {"pruner": "none"},
                      "target_accuracy": self.target if metric == "accuracy" else None}
            for k, v in {"strategy": strategy, "seed": seed, "config": config,
                         "hardware": hardware_info(), "energy_method": meter.method,
                         "meter": self._choice.describe(), "metered": True,
                         "tuning_energy_version": __version__}.items():
                study.set_user_attr(k, v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_attrs = record_run(study, hardware_info(), self._choice, self.out or sys.stdout,
                                   idle_power_w=None, idle_note="not measured (metered())")
        self._studies[key] = run_attrs
        return run_attrs

    def __call__(self, trial: optuna.Trial) -> Any:
        from tuning_energy.objective.objective import energy_attrs
        from tuning_energy.search.metered_sampler import MeteredSampler
        from tuning_energy.store.trial_writes import set_user_attrs

        run_attrs = self._setup(trial.study)
        meter = self._meter()
        sampler = trial.study.sampler
        proposed = {}
        if isinstance(sampler, MeteredSampler):  # what the sampler spent at ask
            own = sampler.take_cost(trial._trial_id)
            proposed = {"propose_s": own.duration_s, "propose_energy_j": own.energy_j}
        window = meter.begin()
        diverged: dict[str, Any] = {}
        try:
            result = self.objective(trial)
            if (why := _not_finite(result)) is not None:
                diverged = {"diverged": True, "fail_reason": why}
                return [math.nan] * len(result) if _many(result) else math.nan
            return result
        except optuna.TrialPruned:
            self._pruned(trial.study)
            raise
        finally:  # also when it raised or pruned: the trial keeps its energy
            m = meter.end(window)
            if isinstance(sampler, MeteredSampler):
                sampler.take_cost(trial._trial_id)  # inside the window: part of energy_j
            set_user_attrs(trial, {**proposed, **run_attrs, **energy_attrs(m),
                                   **self._on_measurement(m), **diverged})

    def _pruned(self, study: optuna.Study) -> None:
        """The study's pruner is in use: the analysis labels the strategy with it."""
        config = study.user_attrs.get("config") or {}
        pruner = _pruner_of(study.pruner)
        if (config.get("pruning") or {}).get("pruner") != pruner and pruner != "none":
            study.set_user_attr("config", {**config, "pruning": {"pruner": pruner}})

    def close(self) -> None:
        if self._choice is not None:
            self._choice.meter.close()


def _many(result: Any) -> bool:
    return isinstance(result, Sequence) and not isinstance(result, str)


def _not_finite(result: Any) -> str | None:
    """Why `result` (a value, or a sequence of them) means the trial diverged: a number that
    is NaN or inf; None otherwise (what is not a number, Optuna refuses as it does)."""
    for v in result if _many(result) else [result]:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(f):
            return f"diverged: the objective returned {f} (not a finite number)"
    return None


def metered(objective: Callable[[optuna.Trial], Any], meter: str = "auto", *,
            target: float | None = None, comparison: str | None = None,
            strategy: str | None = None, seed: int | None = None) -> MeteredObjective:
    """Wrap a plain Optuna objective `f(trial)` so that each call is energy-metered.

    meter: `auto` (the best meter this machine has), `estimate`, `rapl` or `nvml`.
    target: energy to target's target, in the objective's units (reached at or past it in
    the study's direction).
    comparison, strategy, seed: the comparison the study belongs to (studies of one
    comparison are analysed together), its strategy's name and its seed, e.g.
    `metered(f, comparison="quad", strategy="tpe", seed=0)`. Not given: parsed from a study
    named `<comparison>-<strategy>-s<seed>` (`quad-tpe-s0`, the strategy being the
    sampler's name), else the study's name, the sampler's name and seed 0 (module doc).
    """
    return MeteredObjective(objective, meter, target=target, seed=seed,
                            comparison=comparison, strategy=strategy)
