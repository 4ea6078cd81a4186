"""`bayes-cool`: expected improvement per predicted joule, cost-cooled (CArBO).

Energy to target is the energy of every trial up to the first one that reaches the target,
so a strategy that only knows accuracy pays for its expensive guesses in full. Lee et al.
("Cost-aware Bayesian optimization", CArBO, 2020) divide the acquisition by the predicted
cost raised to a power alpha that "cools" from 1 to 0 over the budget: early proposals are
steered to cheap points, late ones chase accuracy alone, so the search neither stays
cheap and poor (as EIps, our `bayes-eips`, tends to) nor pays for the expensive corner
while it is still learning.

`CostCooledSampler` (an ordinary Optuna sampler, as `SkoptSampler` whose GP it reuses):

- The first `n_initial_points` trials: random points, as `bayes`. (CArBO's cost-effective
  initial design, space-filling points per predicted joule, was tried with EI: on the
  default study it settled on the MLPs, 1 J a trial, best 0.964-0.978 on 3 seeds, which
  do not reach its 0.98 target; that needs a conv layer, 3.5 J a trial.)
- Then: of `n_points` random candidates the one with the largest expected improvement
  (skopt's `gaussian_ei` on the objective GP, `xi` from the options) per predicted joule to
  the power alpha = ALPHA_START x (n_trials - n) / (n_trials - n_initial_points), n the
  trials finished: from 1 after the initial points to 0 at the end of the budget.
- The predicted joules come from a linear trend plus a second GP (skopt's) on the log of
  each finished trial's full cost (a GP alone would not extrapolate to cheaper corners): `energy_j` of a complete trial; for a pruned trial
  the energy its whole budget would have taken, from the first-epoch predictor
  (`predicted_energy_epoch1_j`, one measured epoch x epochs; else `energy_j +
  energy_saved_j`). A trial without a known cost is not told to the cost GP (unmeasured
  energy is never taken as free).

Deterministic per (seed, trial number), so a resumed study proposes what an uninterrupted
one would. With several workers the objective GP gets the constant liar as `bayes` does;
the cost GP sees finished trials only.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from tuning_energy.search.samplers import SkoptSampler, derive_seed
from tuning_energy.search.skopt_space import _decode, _encode


def full_cost_j(trial: FrozenTrial) -> float | None:
    """The joules the trial's whole budget takes (measured, or projected for a pruned one)."""
    attrs = trial.user_attrs
    cost = attrs.get("energy_j")
    if trial.state == TrialState.PRUNED:
        projected = attrs.get("predicted_energy_epoch1_j")
        saved = attrs.get("energy_saved_j")
        if projected is not None:
            cost = projected
        elif cost is not None and saved is not None:
            cost = cost + saved
        else:
            cost = None
    if cost is None or not math.isfinite(float(cost)) or cost <= 0:
        return None
    return float(cost)


#: The cost exponent right after the initial points: CArBO's schedule, from 1. (At 0.5 the
#: cost hardly steered EI on the test objective of tests/test_strategies.py.)
ALPHA_START = 1.0
#: Ridge penalty of the cost model's linear trend (features scaled to [0, 1]).
TREND_RIDGE = 0.1


def cooling_alpha(n_finished: int, n_trials: int, n_initial: int) -> float:
    """The cost exponent: ALPHA_START after the initial points, 0 at the end of the budget."""
    if n_trials <= n_initial:
        return 0.0
    left = (n_trials - n_finished) / (n_trials - n_initial)
    return ALPHA_START * float(min(1.0, max(0.0, left)))


class MeasuredCostModel:
    """The joules a point costs, modelled from the measured cost of the finished trials (for
    samplers built on SkoptSampler: it uses the GP template and `gp_fit_max_points`).
    `bayes-cool` and `seek` (for an objective without FLOPs) share it."""

    def _costed(self, study, space) -> tuple[list[list[Any]], list[float], int]:
        """(points, full costs) of finished trials with a known cost; and how many finished."""
        rows, costs, finished = [], [], 0
        for t in study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                           TrialState.PRUNED), use_cache=True):
            finished += 1
            row = _encode(t.params, space)
            cost = full_cost_j(t)
            if row is not None and cost is not None:
                rows.append(row)
                costs.append(cost)
        return rows, costs, finished

    def _predict_log_cost(self, space, rows, costs, x, seed) -> np.ndarray:
        """Predicted log joules at the candidates: a linear trend (ridge) plus skopt's GP on
        what the trend leaves. A GP alone reverts to the mean away from the trials run, so
        after an initial design without a cheap point it would never predict one (e.g. no
        MLP among the random points: it took an MLP for as dear as the convs it saw)."""
        y = np.log(np.asarray(costs, dtype=float))
        if cap := self._options.gp_fit_max_points:  # the latest trials, as the kernel fit
            rows, y = rows[-cap:], y[-cap:]
        if len(rows) < 2 or np.ptp(y) == 0:
            return np.full(len(x), float(y.mean()))
        from sklearn.base import clone
        from sklearn.linear_model import Ridge

        seen = space.transform(rows)
        trend = Ridge(alpha=TREND_RIDGE).fit(seen, y)
        rest = y - trend.predict(seen)
        out = trend.predict(x)
        if np.ptp(rest) > 1e-9:
            gp = clone(self._template[2]).set_params(random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gp.fit(seen, rest)
                out = out + gp.predict(x)
        return np.asarray(out, dtype=float)


class CostCooledSampler(MeasuredCostModel, SkoptSampler):
    """Expected improvement per predicted joule^alpha, alpha cooling from 1 to 0.

    CostCooledSampler(seed=None, *, n_trials, search_space=None, **options)

    n_trials: the study's trial budget (the cooling schedule runs over it).
    options: the `[strategy.bayes]` keys but `acq_func`: the acquisition is EI, as CArBO's.
    (With `bayes`'s PI, whose log falls by tens between candidates, the cost's factor of a
    few rarely changed a proposal: on a test objective whose accuracy ignores n_conv it
    proposed what bayes did on 2 of 4 seeds; with EI it spent 1.4-6x less than EI alone.)
    """

    LIBRARIES = (*SkoptSampler.LIBRARIES, "sklearn.linear_model", "skopt.acquisition")

    def __init__(self, seed: int | None = None, *, n_trials: int,
                 search_space: dict[str, BaseDistribution] | None = None,
                 **options: Any) -> None:
        super().__init__(seed, search_space=search_space, **{**options, "acq_func": "EI"})
        if n_trials < 1:
            raise ValueError(f"CostCooledSampler: n_trials = {n_trials}; must be >= 1")
        self._n_trials = int(n_trials)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        self._refuse_multi_objective(study)
        if not search_space:
            return {}
        rows, costs, finished = self._costed(study, search_space)
        if not rows or finished < self._options.n_initial_points:
            return {}  # the initial points are random (sample_independent), as bayes's
        # told, not fitted: skopt's fit in tell would also run its own acquisition pass,
        # thrown away here (about 8% of a proposal); the GP is fitted alone
        opt = self.optimizer(study, trial.number, search_space, fit=False)
        if opt is None:  # the initial random points (or no objective values yet)
            return {}
        model = self.fitted_model(opt)
        seed = None if self._seed is None else derive_seed(self._seed, trial.number) % 2**31
        space = opt.space
        candidates = space.rvs(self._options.n_points, random_state=np.random.RandomState(seed))
        x = space.transform(candidates)
        log_cost = self._predict_log_cost(space, rows, costs, x, seed)
        from skopt.acquisition import gaussian_ei

        gain = gaussian_ei(x, model, y_opt=float(np.min(opt.yi)), xi=self._options.xi)
        alpha = cooling_alpha(finished, self._n_trials, self._options.n_initial_points)
        score = np.log(np.maximum(gain, 0.0) + 1e-300) - alpha * log_cost
        # ties (no improvement expected anywhere): the cheapest candidate
        best = int(np.lexsort((log_cost, -score))[0])
        return _decode(candidates[best], search_space)

