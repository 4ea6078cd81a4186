"""`tuning-energy estimate`: what a study (or a comparison) will cost, before it runs.

A short calibration runs first, through the same runner, meter and accounting as a real
study, in a throw-away SQLite store: `CALIBRATION_TRIALS` trials of configurations spread
over the space's cost range (for the built-in CNN: picked by FLOPs per sample from random
configurations; for an own objective: random), each stopped after its first step by the
per-trial energy cap (an epoch of the CNN; one `ctx.report` of an own objective, which
needs `[objective] steps` to know how many steps a trial has). analysis/projection.py turns
the steps' energy and time into the study's charged energy, and CO2 follows from the
config's carbon intensity (energy/carbon.py). What the calibration itself was charged is
reported beside the estimate.

The CNN's epoch is read inside the trial's own meter window (its energy up to the epoch's
report, which the objective stores as `predicted_energy_epoch1_j`), not as the difference
between a one-epoch and a two-epoch trial: an epoch (~0.2 J on the default study here) is
small against what separate trials differ by (their set-up, evaluation, the machine's load),
so the difference made repeated estimates of one study disagree by up to 2x.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from tuning_energy.analysis.projection import CalibrationPoint, Interval, Projection, project
from tuning_energy.config import StudyConfig
from tuning_energy.energy.accounting import PROPOSING, STORING, charged_energy_j
from tuning_energy.energy.carbon import Carbon, resolve_carbon
from tuning_energy.errors import ConfigError
from tuning_energy.store.storage import open_storage
from tuning_energy.store.url import StoreURL

CALIBRATION_TRIALS = 5
POOL = 256  # random configurations whose FLOPs stand for the space
SEED = 0


@dataclass(frozen=True)
class Estimate:
    projection: Projection
    co2_g: Interval
    carbon: Carbon
    calibration_energy_j: float
    calibration_wall_s: float
    method: str
    strategies: tuple[str, ...]
    seeds: int
    remaining_trials: int

    def as_json(self) -> dict[str, Any]:
        p = self.projection
        return {
            "energy_j": p.energy_j.as_dict(),
            "energy_kwh": p.energy_j.scaled(1 / 3.6e6).as_dict(),
            "co2_g": self.co2_g.as_dict(),
            "wall_s": p.wall_s.as_dict(),
            "calibration_energy_j": self.calibration_energy_j,
            "calibration_wall_s": self.calibration_wall_s,
            "method": self.method,
            "interval": "p10-p90 (80%)",
            "carbon_intensity_g_per_kwh": self.carbon.intensity_g_per_kwh,
            "carbon_source": self.carbon.source,
            "pue": self.carbon.pue,
            "studies": p.n_studies,
            "strategies": list(self.strategies),
            "seeds": self.seeds,
            "trials_per_study": p.trials_per_study,
            "trials_to_run": self.remaining_trials,
            "steps_per_trial": p.steps,
        }

    def lines(self) -> list[str]:
        p, e = self.projection, self.projection.energy_j

        def rng(i: Interval, fmt: str) -> str:
            return f"{fmt.format(i.median)} (80%: {fmt.format(i.p10)} to {fmt.format(i.p90)})"

        what = (f"{p.n_studies} studies ({', '.join(self.strategies)} x {self.seeds} seeds)"
                if p.n_studies > 1 else f"study ({self.strategies[0]})")
        return [
            f"estimate   {what}: {self.remaining_trials} trials to run, "
            f"{p.steps} steps each",
            f"energy     {rng(e, '{:,.0f} J')} = {e.median / 3.6e6:.3g} kWh charged",
            f"co2        {rng(self.co2_g, '{:.3g} g')} at "
            f"{self.carbon.intensity_g_per_kwh:g} g/kWh x PUE {self.carbon.pue:g} "
            f"({self.carbon.source})",
            f"wall time  {rng(p.wall_s, '{:,.0f} s')}",
            f"method     {self.method}",
            f"calibration {self.calibration_energy_j:,.1f} J in "
            f"{self.calibration_wall_s:.1f} s "
            f"({self.calibration_energy_j / e.median:.1%} of the estimate's median)",
        ]


def _pool_flops(config: StudyConfig, pool: list[dict[str, Any]]) -> list[float] | None:
    """FLOPs per sample of each configuration (built-in CNN only; models.spec_flops, as
    seek prices its candidates: no data loaded, one count per distinct model)."""
    if not config.objective.builtin:
        return None
    from tuning_energy.cnn.models import ModelSpec, spec_flops

    return [float(spec_flops(ModelSpec.from_params(config.param_values(p)),
                             config.data.dataset)) for p in pool]


def _random_pool(config: StudyConfig, n: int, seed: int) -> list[dict[str, Any]]:
    from tuning_energy.search.strategies import suggest_params

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [suggest_params(study.ask(), config.search_space) for _ in range(n)]


def _spread(flops: list[float] | None, k: int) -> list[int]:
    """Indices of k pool configurations spread over the cost range (by FLOPs quantile)."""
    if flops is None:
        return list(range(k))
    order = sorted(range(len(flops)), key=flops.__getitem__)
    return [order[round(q * (len(order) - 1) / (k - 1))] for q in range(k)]


def steps_per_trial(config: StudyConfig) -> int:
    if config.objective.builtin:
        return config.train.epochs
    if config.objective.steps is None:
        raise ConfigError(
            f"estimate: [objective] steps is not set in the config, so a trial's length is "
            f"unknown: a calibration step (one ctx.report) cannot be scaled to a whole "
            f"trial. Set `steps` under [objective] to how many times {config.objective.function}"
            f" calls ctx.report per trial (and have it call ctx.report), or run a short "
            f"study (--trials 3) and read its charged energy")
    return config.objective.steps


def _run_calibration(config: StudyConfig, params: list[dict[str, Any]], url: str,
                     seed: int) -> tuple[list[dict[str, Any]], Any]:
    """Each configuration of `params` as one trial of a random-search study in `url`, in
    order: (each trial's user attrs, the run's summary)."""
    from tuning_energy.run.runner import run_study, study_name

    study = optuna.create_study(storage=url, study_name=study_name(config, "random", seed))
    for p in params:
        study.enqueue_trial(p)
    summary = run_study(config, "random", seed, url, progress=False, out=io.StringIO(),
                        partial_energy_s=None)
    trials = optuna.load_study(study_name=study.study_name, storage=url).trials
    return [t.user_attrs for t in sorted(trials, key=lambda t: t.number)], summary


def _overhead(a: dict[str, Any]) -> tuple[float, float]:
    """What a trial was charged around its training window: (J, s)."""
    return (sum(float(a.get(k) or 0.0) for k in (PROPOSING, STORING)),
            float(a.get("propose_s") or 0.0) + float(a.get("store_s") or 0.0))


def calibrate(config: StudyConfig, seed: int = SEED
              ) -> tuple[list[CalibrationPoint], list[float] | None, float, float, str]:
    """(points, FLOPs of the random pool, calibration charged J and wall s, meter method).

    Each picked configuration runs one step: the built-in CNN trains for one epoch, an own
    objective runs to its first ctx.report (the per-trial energy cap stops it there). The
    CNN's epoch costs what its window measured up to the epoch's report; the rest of the
    trial (the final evaluation, proposing and storage) is a per-trial overhead. Its wall
    time is split in the same proportion (where the window's energy at the report is not
    known, the whole window is the step)."""
    steps_per_trial(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pool = _random_pool(config, POOL, seed)
    flops = _pool_flops(config, pool)
    params = [pool[i] for i in _spread(flops, CALIBRATION_TRIALS)]
    budget = dataclasses.replace(config.budget, n_trials=CALIBRATION_TRIALS, max_energy_j=None,
                                 max_co2_g=None, timeout_s=None, max_trial_energy_j=None)
    if config.objective.builtin:
        config = config.with_overrides(budget=budget,
                                       train=dataclasses.replace(config.train, epochs=1))
    else:  # stopped after the first step by an energy cap no step can stay under
        config = config.with_overrides(budget=dataclasses.replace(budget,
                                                                  max_trial_energy_j=1e-12))
    with tempfile.TemporaryDirectory(prefix="tuning-energy-estimate-") as tmp:
        trials, summary = _run_calibration(config.with_overrides(
            name=f"{config.name}-calibration"), params,
            f"sqlite:///{Path(tmp) / 'calibration.db'}", seed)
    points = []
    for a in trials:
        if a.get("energy_j") is None or not a.get("duration_s"):
            continue
        j1, s1 = float(a["energy_j"]), float(a["duration_s"])
        oj, os_ = _overhead(a)
        step_j, step_s = j1, s1
        # one epoch here, so the energy at the first report x the reports is that epoch's
        at_report = a.get("predicted_energy_epoch1_j") if config.objective.builtin else None
        if at_report is not None and 0 < float(at_report) <= j1:
            step_j = float(at_report)
            step_s = s1 * step_j / j1
            oj, os_ = oj + j1 - step_j, os_ + s1 - step_s
        points.append(CalibrationPoint(step_j=step_j, step_s=step_s, overhead_j=oj,
                                       overhead_s=os_, flops=a.get("flops_per_sample")))
    if not points:
        raise ConfigError("estimate: no calibration trial was measured (the meter measured "
                          "nothing); nothing to project from")
    spent = sum(e for a in trials if (e := charged_energy_j(a)) is not None)
    return points, flops, spent, summary.wall_s, summary.energy_method


def estimate(config: StudyConfig, strategies: list[str], seeds: int = 1,
             storage_url: StoreURL | str | None = None) -> Estimate:
    """The projected bill of `strategies` x `seeds` studies of `config`; trials already
    finished in `storage_url` (a resumed study) are not counted again."""
    from tuning_energy.run.runner import study_name
    from tuning_energy.run.summary import FINISHED
    from tuning_energy.search.strategies import grid_size

    steps = steps_per_trial(config)
    storage = open_storage(storage_url) if storage_url is not None and \
        StoreURL.parse(storage_url).exists() else None
    budgets = []
    for s in strategies:
        n = config.budget.n_trials
        if s == "grid":
            n = min(n, grid_size(config.search_space, config.strategy.grid_levels))
        for seed in range(seeds):
            done = 0
            if storage is not None:
                try:
                    st = optuna.load_study(study_name=study_name(config, s, seed),
                                           storage=storage)
                    done = sum(t.state in FINISHED for t in st.get_trials(deepcopy=False))
                except KeyError:
                    pass
            budgets.append(max(n - done, 0))
    points, flops, cal_j, cal_s, meter = calibrate(config)
    total = sum(budgets)
    n_studies = sum(b > 0 for b in budgets) or 1
    proj = project(points, n_trials=max(round(total / n_studies), 1), steps=steps,
                   n_studies=n_studies, pool_flops=flops)
    carbon = resolve_carbon(config.meter)
    co2 = proj.energy_j.scaled(carbon.co2_g(1.0) or 0.0)
    pruned = [s for s in strategies if "+" in s] or (
        [] if config.pruning.pruner == "none" else strategies)
    steps_run = ("each trained for one epoch (an epoch costs what its meter window measured "
                 "up to the epoch's end)"
                 if config.objective.builtin else "each run for one step (one ctx.report)")
    method = (f"calibrated: {len(points)} configurations {steps_run}, spread over the space's "
              f"cost range, metered as a study is ({meter}); "
              f"{proj.model}; the study's configurations drawn at random, tilted towards "
              f"cheap or costly ones; overhead per trial: what a calibration trial cost "
              f"around its steps (proposing + storage at random search's cost"
              + ("; the CNN's set-up and final evaluation" if config.objective.builtin else "")
              + ")")
    if pruned:
        method += (f"; every trial counted in full: pruning ({', '.join(pruned)}) makes the "
                   f"real bill lower")
    return Estimate(proj, co2, carbon, cal_j, cal_s, method, tuple(strategies), seeds, total)
