"""The `target` pruner: stop a trial whose learning curve will not reach the target.

Rank-based pruners (median, ASHA) compare trials at an early step; on the default study the
configurations that win at 20 epochs, small learning rates, look worst after one to three,
and ASHA at rungs 1, 3, 9 pruned them. This pruner asks a question about the trial alone:
will its final value reach the target? (Domhan, Springenberg & Hutter, "Speeding up
automatic hyperparameter optimization of deep neural networks by extrapolation of learning
curves", IJCAI 2015.)

At each report after `grace_steps` reports, the trial's curve (its reported values against
step + 1) is fitted by each of a small ensemble of increasing, saturating families
(`FAMILIES`, scipy's curve_fit):

    pow3      c - a t^-alpha
    exp3      c - a exp(-b t)
    logpower  c / (1 + (t / e^b)^-a)   (positive values only: not for a negated loss)

The first report is left out (SKIP_FIRST). For each family that fits, P(final value reaches
the target) is estimated by drawing the parameters from the fit's normal approximation
(popt, COV_INFLATION x pcov), evaluating the curve at the last step (`n_steps`) and adding
the fit's residual noise (the final value is one noisy epoch, not the curve). The
ensemble's P is the largest over the families that fit (the most hopeful family decides:
pruning a trial that would have reached the target costs a whole search's worth of luck). The trial is pruned
when P < `threshold`; with no family fitting it is never pruned (no evidence, no pruning).
A minimised metric is negated (a falling loss is a rising curve). With `upper` (1 for an
accuracy) the curves' ceiling and the draws are capped there.

A pruned trial keeps the energy it spent, as every pruned trial does here
(objective.py), and `energy_saved_j` estimates what its remaining steps would have cost.
Deterministic: the draws are seeded by the trial's number and step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection

#: Parameter draws per family.
N_DRAWS = 256
#: The fit's parameter covariance is widened this many times (standard deviations x2):
#: curve_fit's covariance takes the epochs' errors as independent, and they are not (a
#: curve wanders for several epochs). Chosen on the replay in docs/seek.md.
COV_INFLATION = 4.0
#: Reports left out of the fit at the start: the first epoch's value (0.1-0.8 on the default
#: study) is mostly the initialisation and bent the families' shapes.
SKIP_FIRST = 1


def _pow3(t, c, a, alpha):
    return c - a * np.power(t, -alpha)


def _exp3(t, c, a, b):
    return c - a * np.exp(-b * t)


def _logpower(t, c, a, b):
    return c / (1.0 + np.power(t / np.exp(b), -a))


#: name -> (curve, initial guess from (ys, ceiling guess), lower bounds, upper bounds but c's)
FAMILIES: dict[str, tuple[Callable, Callable, tuple, tuple]] = {
    "pow3": (_pow3, lambda y, c: (c, max(c - y[0], 1e-3), 0.5), (-np.inf, 0.0, 0.0),
             (None, np.inf, 5.0)),
    "exp3": (_exp3, lambda y, c: (c, max(c - y[0], 1e-3), 0.3), (-np.inf, 0.0, 0.0),
             (None, np.inf, 5.0)),
    "logpower": (_logpower, lambda y, c: (c, 1.0, 0.0), (1e-9, 0.0, -10.0),
                 (None, 10.0, 10.0)),
}


def p_reach(steps: np.ndarray, values: np.ndarray, n_steps: int, target: float,
            upper: float | None = None, seed: int = 0) -> float | None:
    """P(the curve's value at step n_steps - 1 >= target), from the ensemble; None when no
    family fits (too few points, or curve_fit fails). steps 0-based, values rising."""
    from scipy.optimize import curve_fit

    t = np.asarray(steps, dtype=float)[SKIP_FIRST:] + 1.0
    y = np.asarray(values, dtype=float)[SKIP_FIRST:]
    ok = np.isfinite(y)
    t, y = t[ok], y[ok]
    if len(y) < 4:  # three parameters and a residual
        return None
    rng = np.random.default_rng(seed)
    ceiling = np.inf if upper is None else float(upper)
    guess_c = min(float(y.max()) + 0.5 * max(float(np.ptp(y)), 1e-3), ceiling - 1e-6)
    ps = []
    for name, (curve, guess, lower, high) in FAMILIES.items():
        if name == "logpower" and (y.min() <= 0 or ceiling <= 0):
            continue  # a ratio of positive values: not for a negated loss
        hi = (ceiling, *high[1:])
        p0 = np.clip(guess(y, guess_c), np.array(lower) + 1e-9, np.array(hi) - 1e-9)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                popt, pcov = curve_fit(curve, t, y, p0=p0, bounds=(lower, hi), maxfev=2000)
        except (RuntimeError, ValueError):
            continue
        resid = y - curve(t, *popt)
        noise = math.sqrt(float(resid @ resid) / max(1, len(y) - len(popt)))
        if not np.all(np.isfinite(pcov)):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            draws = rng.multivariate_normal(popt, COV_INFLATION * pcov, size=N_DRAWS,
                                            method="eigh")
        draws = np.clip(draws, lower, hi)
        with np.errstate(all="ignore"):
            final = curve(float(n_steps), *draws.T) + noise * rng.standard_normal(N_DRAWS)
        final = np.where(np.isfinite(final), final, -np.inf)
        ps.append(float(np.mean(np.minimum(final, ceiling) >= target)))
    return max(ps) if ps else None


class TargetPruner(BasePruner):
    """Prune when P(the trial's final value reaches `target`) < `threshold`.

    TargetPruner(target, n_steps, *, grace_steps=8, threshold=0.05, upper=None)

    target: the value a trial must reach (at or above for a maximised study, at or below for
    a minimised one). n_steps: the reports a whole trial makes (epochs); the final value is
    the one at step n_steps - 1. grace_steps: reports before a trial can be pruned.
    upper: the metric's ceiling (1 for an accuracy; for a minimised metric, the floor).
    """

    def __init__(self, target: float, n_steps: int, *, grace_steps: int = 8,
                 threshold: float = 0.05, upper: float | None = None) -> None:
        if not isinstance(target, int | float) or not math.isfinite(target):
            raise ValueError(f"TargetPruner: target = {target!r}; must be a finite number")
        if n_steps < 1 or grace_steps < 1:
            raise ValueError(f"TargetPruner: n_steps = {n_steps}, grace_steps = {grace_steps}; "
                             f"both must be >= 1")
        if not 0 <= threshold < 1:
            raise ValueError(f"TargetPruner: threshold = {threshold!r}; must be in [0, 1)")
        self.target, self.n_steps = float(target), int(n_steps)
        self.grace_steps, self.threshold, self.upper = int(grace_steps), float(threshold), upper

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        values = trial.intermediate_values
        if len(values) < self.grace_steps or trial.last_step is None or \
                trial.last_step >= self.n_steps - 1:
            return False
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        steps = np.array(sorted(values), dtype=float)
        ys = sign * np.array([values[int(s)] for s in steps], dtype=float)
        upper = None if self.upper is None else sign * self.upper
        p = p_reach(steps, ys, self.n_steps, sign * self.target, upper=upper,
                    seed=trial.number * 1_000 + int(trial.last_step))
        return p is not None and p < self.threshold
