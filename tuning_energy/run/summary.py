"""What a run of a study tells its user at the end (`StudySummary.lines`), read from the store.

Two energies, named apart: `training_energy_j` (the trials' meter windows alone) and
`total_energy_j` (what the trials are charged: training + proposing + storage,
accounting.charged_total_j; a lower bound when a trial's training energy is unknown). The
runner stores both as study attrs of the same names.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from tuning_energy.energy.accounting import charged_co2_g, charged_total_j, training_measured
from tuning_energy.energy.methods import label
from tuning_energy.store.runs import mixture_lines, provenance
from tuning_energy.store.url import StoreURL

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class StudySummary:
    study_name: str
    storage: str  # the store URL without its password
    n_trials_budget: int
    n_finished: int
    n_failed: int
    ran_now: int
    best_value: float | None  # the metric's best (max or min, by its direction)
    best_params: dict[str, Any]
    training_energy_j: float | None  # training energy of all trials (their meter windows)
    energy_method: str
    wall_s: float
    propose_s: float
    stop_reason: str
    interrupted: bool = False
    n_pruned: int = 0
    energy_saved_j: float = 0.0  # estimated energy the pruned trials did not spend
    propose_energy_j: float | None = None  # the strategy's own energy (outside trials)
    store_s: float = 0.0  # storage round trips (store_s of the trials: overhead.py)
    store_energy_j: float | None = None
    total_energy_j: float | None = None  # charged: training + proposing + storage
    co2_g: float | None = None  # of the charged energy (accounting.charged_co2_g)
    carbon_source: str | None = None  # the intensity's, as the study stored it
    n_unmeasured: int = 0  # trials without a training-energy measurement
    machines: dict[str, int] = field(default_factory=dict)  # hardware_id -> trials
    energy_methods: dict[str, int] = field(default_factory=dict)  # method -> trials
    idle_note: str | None = None  # the idle baseline of this run, or why there is none
    extra: dict[str, Any] = field(default_factory=dict)
    metric: str = "accuracy"  # the study's first objective's name
    direction: str = "maximize"

    @property
    def best_accuracy(self) -> float | None:
        """The best value under the built-in objective's metric name."""
        return self.best_value

    @property
    def propose_share_of_energy(self) -> float | None:
        """The strategy's own energy (`propose_energy_j`, its computation proposing
        parameters) / the charged total (`total_energy_j`: training + proposing + storage):
        what share of the search's energy the strategy itself cost."""
        if self.propose_energy_j is None or not self.total_energy_j:
            return None
        return self.propose_energy_j / self.total_energy_j

    @property
    def mixed(self) -> bool:
        """Trials from more than one machine or energy method."""
        return len(self.machines) > 1 or len(self.energy_methods) > 1

    def lines(self) -> list[str]:
        e = self.training_energy_j
        energy = "training energy not measured" if e is None else \
            f"training energy {e:,.1f} J ({e / 3600:.4f} Wh)"
        low = "≥ " if self.n_unmeasured else ""
        unmeasured = (f"; {self.n_unmeasured} trial(s) without a training-energy measurement"
                      if self.n_unmeasured else "")
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in self.best_params.items())
        best = "none" if self.best_value is None else f"{self.best_value:.4f}"
        method = " + ".join(self.energy_methods) if len(self.energy_methods) > 1 \
            else self.energy_method
        estimate = label(self.energy_methods or [self.energy_method]).text()
        method += f" ({estimate})" if estimate else ""
        store = f", {self.store_energy_j:,.1f} J" if self.store_energy_j is not None else ""
        return [
            f"study      {self.study_name}  in {self.storage}",
            f"trials     {self.n_finished}/{self.n_trials_budget} finished, {self.n_failed} failed,"
            f" {self.ran_now} run now ({self.stop_reason})",
            f"best       {self.metric} {best}  ({params})"
            + ("" if self.direction == "maximize" else f" ({self.direction}d)"),
            f"energy     {energy}, all trials incl. failed{unmeasured}; method {method}",
            f"search     {self.propose_s:.2f} s proposing parameters (the strategy's own cost,"
            " its set-up and any model build"
            + (f", {self.propose_energy_j:,.1f} J = {self.propose_share_of_energy:.1%} of "
               f"the charged total" if self.propose_share_of_energy is not None else "")
            + f"); {self.store_s:.2f} s storage round trips{store}",
            *([f"charged    {low}{self.total_energy_j:,.1f} J: training + proposing + storage "
               f"(what max_energy_j and energy to target count)"]
              if self.total_energy_j is not None else []),
            *([f"co2        {low}{self.co2_g:.3g} g CO2e of the charged energy "
               f"({self.carbon_source})"] if self.co2_g is not None else []),
            *mixture_lines(self.machines, self.energy_methods),
            *([f"idle power {self.idle_note}"] if self.idle_note else []),
            *([f"pruned     {self.n_pruned} trials, ~{self.energy_saved_j:,.1f} J saved "
               f"(estimated from the epochs not run)"] if self.n_pruned else []),
            f"wall time  {self.wall_s:.1f} s",
        ]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def value(t) -> float | None:
    """The metric of a finished trial (its first objective; None for pruned trials and
    non-finite values)."""
    if t.state != TrialState.COMPLETE or not t.values:
        return None
    v = t.values[0]
    return v if v is not None and math.isfinite(v) else None


accuracy = value  # the built-in objective's metric, by its name


def metric_of(study: optuna.Study) -> tuple[str, str]:
    """(the first objective's name, its direction): `accuracy`, `maximize` unless set."""
    names = study.metric_names or ["accuracy"]
    return names[0], study.directions[0].name.lower()


def best_trial(trials, direction: str = "maximize"):
    """The COMPLETE trial with the best metric (None: none has one)."""
    scored = [t for t in trials if value(t) is not None]
    if not scored:
        return None
    return (max if direction == "maximize" else min)(scored, key=value)


def best_value(study: optuna.Study) -> float | None:
    best = best_trial(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                      metric_of(study)[1])
    return None if best is None else value(best)


best_accuracy = best_value


def study_summary(study, storage_url, n_budget, ran, t_start, reason, meter,
                  idle_note: str | None = None) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    metric, direction = metric_of(study)
    best_t = best_trial(trials, direction)
    attrs = [t.user_attrs for t in trials]
    measured = [e for a in attrs if (e := a.get("energy_j")) is not None]
    origin = provenance(attrs)
    return StudySummary(
        study_name=study.study_name, storage=StoreURL.parse(storage_url).redacted,
        n_trials_budget=n_budget,
        n_finished=sum(t.state in FINISHED for t in trials),
        n_failed=sum(t.state == TrialState.FAIL for t in trials), ran_now=ran,
        best_value=value(best_t) if best_t else None,
        best_params=dict(best_t.params) if best_t else {},
        training_energy_j=sum(measured) if measured else None,
        energy_method=study.user_attrs.get("energy_method", meter.method),
        wall_s=time.perf_counter() - t_start,
        propose_s=sum(a.get("propose_s") or 0.0 for a in attrs),
        stop_reason=reason,
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        energy_saved_j=sum(a.get("energy_saved_j") or 0.0 for a in attrs),
        propose_energy_j=_sum_or_none(a.get("propose_energy_j") for a in attrs),
        store_s=sum(a.get("store_s") or 0.0 for a in attrs),
        store_energy_j=_sum_or_none(a.get("store_energy_j") for a in attrs),
        total_energy_j=charged_total_j(attrs) if measured else None,
        n_unmeasured=sum(t.state in (*FINISHED, TrialState.FAIL) and not training_measured(a)
                         for t, a in zip(trials, attrs, strict=True)),
        machines=dict(origin["machines"]), energy_methods=dict(origin["energy_methods"]),
        idle_note=idle_note, metric=metric, direction=direction,
        co2_g=co2_total_g(study, attrs) if measured else None,
        carbon_source=study.user_attrs.get("carbon_source"),
    )


def co2_total_g(study, attrs) -> float | None:
    """g CO2e of the study's charged energy (accounting.charged_co2_g per trial, at the
    study's stored intensity); None without a stored intensity or a measured trial."""
    intensity = study.user_attrs.get("carbon_intensity_g_per_kwh")
    if intensity is None:
        return None
    pue = study.user_attrs.get("pue") or 1.0
    return _sum_or_none(charged_co2_g(a, intensity, pue) for a in attrs)


def _sum_or_none(values) -> float | None:
    measured = [v for v in values if v is not None]
    return sum(measured) if measured else None
