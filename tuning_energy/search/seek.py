"""`seek`: the candidate most likely to reach the target per predicted joule.

Energy to target is the charged energy of every trial up to the first one that reaches the
target. For the least expected cost until a first success the optimal order of independent
trials is by P(success) / cost (Simon & Kadane, "Optimal problem-solving search: all-or-none
solutions", 1975); it is also the Pandora's-box Gittins index (Xie et al., NeurIPS 2024) of
a box whose reward is 1 when the trial reaches the target: E[(R - g)+] = P (1 - g) = lambda
x cost gives g = 1 - lambda x cost / P, highest where P / cost is. Unlike expected
improvement per joule (`bayes-eips`, `bayes-cool`), a cheap point that cannot reach the
target gets no priority however cheap: its P is ~0.

`SeekSampler` (an ordinary Optuna sampler, built on `SkoptSampler`'s GP):

- The first `n_initial_points` trials: random points, as `bayes`.
- Then: of `n_points` random candidates, the one with the largest
  log P(reach | x) - log predicted joules(x).
- P(reach | x): the GP's predictive distribution of the trial's final value (skopt's GP on
  the values SkoptSampler tells it, pruned trials at their last report), the fitted noise
  included (a trial is one noisy draw, not the mean): P = Phi((mu - target) / sigma) for a
  maximised metric, Phi((target - mu) / sigma) for a minimised one. With `bound` (1 for an
  accuracy) the GP models log(bound - value), the log of the error, for a maximised metric
  (log(value - bound) for a minimised one), and the target likewise. On the raw accuracy
  a few diverged trials (0.1-0.6) set the GP's noise, and with it a 0.96-everywhere MLP got
  a P near a conv's at an eighth of its joules: the first pilot spent 18 of 30 trials on
  MLPs (docs/seek.md). On the error's log 0.96 and 0.98 are as far apart as 0.6 and 0.8.
- Pessimism (default 1): P is computed from the GP's mean taken one of its own standard
  deviations worse, the trial's noise still around it. With the plain predictive (0), a
  point far from every trial (its mean the average trial's, its spread wide) got as much
  P as one beside the best trial, and the cheap one of them won: 1 of 3 pilot seeds
  reached the target; with 1, 3 of 3 (docs/seek.md). It keeps P / joules from paying for
  exploration the GP only imagines, at the price of a search that stays near what worked.
- Joules: `cost="flops"`: the candidate's forward FLOPs (the `flops` callable: the built-in
  CNN's, from its architecture) and a log-log fit of the finished trials' full joules on
  their `flops_per_sample` (energy/predict.py's joules-per-FLOP ratio while the trials have
  fewer than two distinct FLOPs counts). `cost="measured"`: the model of measured joules
  over the search space that `bayes-cool` uses (cost_cooling.MeasuredCostModel: a linear
  trend plus a GP on log joules). `cost="none"`: P alone. A trial's full joules: its
  `energy_j`, or for a pruned trial what its whole budget would have taken
  (cost_cooling.full_cost_j).

Deterministic per (seed, trial number): a resumed study proposes what an uninterrupted one
would. With several workers the GP gets `bayes`'s constant liar for running trials.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from tuning_energy.config.seek import SEEK_COSTS
from tuning_energy.energy.predict import EnergyPredictor
from tuning_energy.search.cost_cooling import MeasuredCostModel, full_cost_j
from tuning_energy.search.samplers import SkoptSampler, derive_seed
from tuning_energy.search.skopt_space import _decode

#: The fitted log-log slope of joules on FLOPs is kept in [0, MAX_SLOPE]: a handful of
#: noisy trials must not make more work look cheaper, nor explode the extrapolation.
MAX_SLOPE = 2.0

#: The least noise variance the GP may fit (its values are normalised to unit variance).
#: Fitted freely, it fell to skopt's floor (1e-5) on the first pilot's trials and the GP
#: interpolated them with length scales of a quarter of lr's and beta2's ranges, so that
#: somewhere among 1,000 MLP candidates it saw a P(reach) of one half (docs/seek.md). A
#: repeated trial differs by a validation sample or two: noise there is real.
NOISE_FLOOR = 0.05

#: The smallest distance to the bound the GP is told (a perfect score is not -inf).
MIN_GAP = 1e-6

Flops = Callable[[dict[str, Any]], float | None]


def log_p_reach(gp, x: np.ndarray, target_y: float, pessimism: float = 0.0) -> np.ndarray:
    """log P(a trial's value <= target_y) at points x (skopt minimises: values are negated
    for a maximised metric), from the GP's predictive mean and its standard deviation with
    the fitted noise added back (skopt predicts noise-free). pessimism k: the mean is taken
    k standard deviations of the GP's own uncertainty worse (k = 0: the plain predictive)."""
    from scipy.stats import norm

    mu, std = gp.predict(x, return_std=True)
    noise = getattr(gp, "noise_", None) or 0.0
    scale = getattr(gp, "y_train_std_", 1.0)
    sd = np.sqrt(np.asarray(std) ** 2 + noise * scale ** 2)
    sd = np.maximum(sd, 1e-12)
    return norm.logcdf((target_y - np.asarray(mu) - pessimism * np.asarray(std)) / sd)


class SeekSampler(MeasuredCostModel, SkoptSampler):
    """P(the trial reaches the target | x) / predicted joules(x), maximised.

    SeekSampler(seed=None, *, target, search_space=None, cost="measured", flops=None,
                bound=None, pessimism=1.0, **options)

    target: the value a trial must reach (at or above for a maximised study, at or below
    for a minimised one). cost: "flops" (needs `flops(params) -> forward FLOPs per sample`),
    "measured" or "none" (see the module doc). bound: the metric's best possible value (1
    for an accuracy, 0 for an error), modelled on the log of the distance to it.
    pessimism: how many of the GP's standard deviations its mean is taken worse by.
    options: the `[strategy.bayes]` keys (n_initial_points, n_points and the GP's); the
    acquisition is this index, not acq_func.
    """

    LIBRARIES = (*SkoptSampler.LIBRARIES, "sklearn.linear_model", "skopt.acquisition",
                 "scipy.stats", "sklearn.exceptions", "skopt.learning.gaussian_process.kernels")

    def __init__(self, seed: int | None = None, *, target: float,
                 search_space: dict[str, BaseDistribution] | None = None,
                 cost: str = "measured", flops: Flops | None = None,
                 bound: float | None = None, pessimism: float = 1.0,
                 **options: Any) -> None:
        super().__init__(seed, search_space=search_space, **options)
        if not isinstance(target, int | float) or not math.isfinite(target):
            raise ValueError(f"SeekSampler: target = {target!r}; must be a finite number "
                             f"(the value a trial must reach)")
        if cost not in SEEK_COSTS[1:]:
            raise ValueError(f"SeekSampler: cost = {cost!r}; allowed values are "
                             f"{', '.join(map(repr, SEEK_COSTS[1:]))}")
        if cost == "flops" and flops is None:
            raise ValueError("SeekSampler: cost = 'flops' needs flops=, a function of the "
                             "parameters giving the model's forward FLOPs per sample")
        self._target = float(target)
        self._cost_kind = cost
        self._flops = flops
        self._bound = None if bound is None else float(bound)
        self._pessimism = float(pessimism)

    def _to_model(self, y: float, sign: float) -> float:
        """A value as SkoptSampler tells it (y = sign x value, minimised; sign -1 for a
        maximised metric) on the GP's scale: with a bound, the log of the distance to it
        (floored at 1e-6)."""
        if self._bound is None:
            return y
        return math.log(max(y - sign * self._bound, MIN_GAP))

    def _observations(self, study, space, exclude):
        xs, ys, running = super()._observations(study, space, exclude)
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        return xs, [self._to_model(y, sign) for y in ys], running

    def _skopt_optimizer(self, space, seed, kernel=None):
        """SkoptSampler's, with the GP's noise level fitted no lower than NOISE_FLOOR."""
        opt = super()._skopt_optimizer(space, seed, kernel)
        if kernel is None:  # a cached kernel carries the noise fitted with the floor
            from skopt.learning.gaussian_process.kernels import WhiteKernel

            gp = opt.base_estimator_
            gp.set_params(kernel=gp.kernel + WhiteKernel(
                noise_level=1.0, noise_level_bounds=(NOISE_FLOOR, 1e5)))
        return opt

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        self._refuse_multi_objective(study)
        with warnings.catch_warnings():
            # "noise_level is close to the specified lower bound": NOISE_FLOOR at work
            from sklearn.exceptions import ConvergenceWarning

            warnings.simplefilter("ignore", ConvergenceWarning)
            opt = self.optimizer(study, trial.number, search_space) if search_space else None
        if opt is None:
            return {}  # the initial random points: sample_independent draws them
        seed = None if self._seed is None else derive_seed(self._seed, trial.number) % 2**31
        candidates = opt.space.rvs(self._options.n_points,
                                   random_state=np.random.RandomState(seed))
        x = opt.space.transform(candidates)
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        log_p = log_p_reach(opt.models[-1], x, self._to_model(sign * self._target, sign),
                            self._pessimism)
        log_cost = self.log_joules(study, search_space, opt.space, candidates, x, seed)
        score = log_p - log_cost
        best = int(np.lexsort((log_cost, -score))[0])  # ties: the cheapest
        return _decode(candidates[best], search_space)

    def log_joules(self, study, search_space, space, candidates, x, seed) -> np.ndarray:
        """Predicted log joules of each candidate (0 everywhere with cost "none" or while no
        finished trial has a known cost: P alone decides)."""
        zeros = np.zeros(len(candidates))
        if self._cost_kind == "none":
            return zeros
        if self._cost_kind == "measured":
            rows, costs, _ = self._costed(study, search_space)
            return self._predict_log_cost(space, rows, costs, x, seed) if rows else zeros
        flops = np.array([self._flops(_decode(c, search_space)) or math.nan
                          for c in candidates], dtype=float)
        fit = self._flops_fit(study)
        if fit is None or not np.all(np.isfinite(flops) & (flops > 0)):
            return zeros
        slope, intercept = fit
        return intercept + slope * np.log(flops)

    @staticmethod
    def _flops_fit(study) -> tuple[float, float] | None:
        """(slope, intercept) of log full joules on log FLOPs over the finished trials."""
        log_f, log_j = [], []
        predictor = EnergyPredictor()
        for t in study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                           TrialState.PRUNED), use_cache=True):
            f, j = t.user_attrs.get("flops_per_sample"), full_cost_j(t)
            if f and j is not None:
                log_f.append(math.log(f))
                log_j.append(math.log(j))
                predictor.observe(f, 1, j)  # joules per FLOP of a whole trial
        if not log_f:
            return None
        if np.ptp(log_f) == 0:  # one FLOPs count: the ratio estimator, slope 1
            return 1.0, math.log(predictor.predict(1.0, 1))
        slope, intercept = np.polyfit(log_f, log_j, 1)
        slope = float(min(MAX_SLOPE, max(0.0, slope)))
        return slope, float(np.mean(np.array(log_j) - slope * np.array(log_f)))
