"""A study's bill before it runs: charged energy, CO2 and wall time, projected from a
calibration (run/estimate.py measures it), with a median and an 80% interval.

The model, per trial of the study:

    charged_j = energy of one step(x) x steps + overhead_j

- one step: an epoch of the built-in CNN, one `ctx.report` of an own objective; its energy
  for a configuration x comes from the calibration's trials, which each ran one step of a
  configuration spread over the space's cost range. With FLOPs (the CNN), a line through
  log(J per step) against log(FLOPs per sample); without them, the calibration's spread.
- overhead_j: what a calibration trial was charged around its step (proposing + storage;
  for the CNN also its set-up and final evaluation: run/estimate.py).

The study's total is a sum over `n_trials` configurations the strategy will pick, which the
estimate cannot know: each simulated study draws them from a pool of random configurations
of the space, tilted towards cheap or costly ones by a random amount (a search that settles
on large models costs more than one that settles on small ones), with the calibration's
residual spread per trial (at least `MIN_SPREAD`). p10, median and p90 are over the
simulated studies. Wall time is projected the same way from the steps' durations.

Pure: numbers in, numbers out; nothing here trains or reads a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_SPREAD = 0.15  # log-sd per trial: a FLOPs prediction misses by ~17% in the median here
N_SIMULATED = 2000
SEED = 20261205


@dataclass(frozen=True)
class CalibrationPoint:
    """One calibration trial: one step of configuration x."""

    step_j: float
    step_s: float
    overhead_j: float
    overhead_s: float
    flops: float | None = None


@dataclass(frozen=True)
class Interval:
    median: float
    p10: float
    p90: float

    def scaled(self, factor: float) -> Interval:
        return Interval(self.median * factor, self.p10 * factor, self.p90 * factor)

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "p10": self.p10, "p90": self.p90}


@dataclass(frozen=True)
class Projection:
    energy_j: Interval
    wall_s: Interval
    n_studies: int
    trials_per_study: int
    steps: int
    model: str  # how a step's cost was modelled, in words


def _fit(points: Sequence[CalibrationPoint], pool_flops: np.ndarray | None,
         attr: str) -> tuple[np.ndarray | float, float, str]:
    """log-cost of one step for each pool configuration (or one value), its log-sd, words."""
    y = np.log([max(getattr(p, attr), 1e-12) for p in points])
    flops = [p.flops for p in points]
    if pool_flops is not None and all(f for f in flops) and len(set(flops)) >= 2:
        x = np.log(np.asarray(flops, dtype=float))
        slope, intercept = np.polyfit(x, y, 1)
        resid = y - (intercept + slope * x)
        sd = float(np.sqrt(np.sum(resid**2) / max(len(y) - 2, 1)))
        return (intercept + slope * np.log(pool_flops), max(sd, MIN_SPREAD),
                f"log(J per step) linear in log(FLOPs per sample) over {len(points)} "
                f"calibration steps (slope {slope:.2f})")
    sd = float(np.std(y, ddof=1)) if len(y) > 1 else 0.0
    return (float(np.median(y)), max(sd, MIN_SPREAD),
            f"the spread of {len(points)} calibration steps (no FLOPs to tell "
            f"configurations apart)")


def project(points: Sequence[CalibrationPoint], *, n_trials: int, steps: int,
            n_studies: int = 1, pool_flops: Sequence[float] | None = None,
            seed: int = SEED) -> Projection:
    """The charged energy and wall time of `n_studies` studies of `n_trials` trials of
    `steps` steps each, from the calibration `points`; `pool_flops`: FLOPs per sample of
    random configurations of the space (None: an objective without FLOPs)."""
    if not points:
        raise ValueError("project: no calibration point")
    pool = np.asarray(pool_flops, dtype=float) if pool_flops is not None else None
    log_j, sd_j, words = _fit(points, pool, "step_j")
    log_s, sd_s, _ = _fit(points, pool, "step_s")
    overhead_j = float(np.median([p.overhead_j for p in points]))
    overhead_s = float(np.median([p.overhead_s for p in points]))
    rng = np.random.default_rng(seed)
    total_j = np.zeros(N_SIMULATED)
    total_s = np.zeros(N_SIMULATED)
    n = n_trials * n_studies
    for i in range(N_SIMULATED):
        if isinstance(log_j, np.ndarray):
            tilt = rng.uniform(-1.0, 1.0)  # towards cheap (-1) or costly (+1) configurations
            w = np.exp(tilt * (log_j - log_j.max()))
            pick = rng.choice(len(log_j), size=n, p=w / w.sum())
            mu_j, mu_s = log_j[pick], np.asarray(log_s)[pick]
        else:
            mu_j, mu_s = np.full(n, log_j), np.full(n, log_s)
        # the calibration's own error: one factor for the whole study
        scale = rng.normal(0.0, sd_j / np.sqrt(len(points)))
        noise = rng.normal(0.0, 1.0, n)
        total_j[i] = np.sum(np.exp(mu_j + scale + sd_j * noise)) * steps + n * overhead_j
        total_s[i] = np.sum(np.exp(mu_s + scale + sd_s * noise)) * steps + n * overhead_s

    def interval(v: np.ndarray) -> Interval:
        p10, med, p90 = np.percentile(v, [10, 50, 90])
        return Interval(float(med), float(p10), float(p90))

    return Projection(interval(total_j), interval(total_s), n_studies, n_trials, steps, words)
