"""`SkoptSampler`, the `bayes` strategy: a Gaussian process over the study's finished trials,
scikit-optimize's `Optimizer` (or, for the default options, its numbers computed without
importing skopt: native_bayes.py), as an ordinary Optuna sampler."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import FrozenTrial, TrialState

from tuning_energy.config import parse_bayes
from tuning_energy.errors import ConfigError
from tuning_energy.search.resumable import ResumableRandomSampler, derive_seed, import_libraries
from tuning_energy.search.skopt_space import (
    _decode,
    _encoded,
    fast_acquisition,
    fast_transform,
    fitted_model,
    skopt_dimension,
)

# ---------------------------------------------------------------- what the GP is told


def observed_value(trial: FrozenTrial) -> float | None:
    """The value a finished trial tells the GP, or None.

    COMPLETE: its value. PRUNED: its last reported intermediate value (the one at its largest
    step), which is what Optuna stores as a pruned trial's value and what CmaEsSampler
    (consider_pruned_trials) and TPESampler (ranking pruned trials) read. A pruned trial that
    reported nothing, or a value that is not finite, is not told.
    """
    if trial.state == TrialState.COMPLETE:
        value = trial.value
    elif trial.state == TrialState.PRUNED and trial.intermediate_values:
        value = max(trial.intermediate_values.items())[1]
    else:
        return None
    return float(value) if value is not None and math.isfinite(value) else None


def fitted_hyperparameters(gp) -> tuple[Any, float | None]:
    """(kernel, noise level) that scikit-optimize's GP fitted, to refit it with them fixed.

    skopt's GaussianProcessRegressor.fit (noise="gaussian") fits `kernel + WhiteKernel`, then
    keeps the fitted noise level in `noise_` and zeroes the WhiteKernel in `kernel_` (for
    noise-free predictions). `kernel_` alone is therefore a noise-free GP: the noise must
    come from `noise_`. Passing both back as `kernel=..., noise=..., optimizer=None` rebuilds
    the same GP (skopt adds a fixed WhiteKernel of that level).
    """
    from sklearn.gaussian_process.kernels import Sum, WhiteKernel

    kernel, noise = gp.kernel_, getattr(gp, "noise_", None)
    if noise is not None:
        if not (isinstance(kernel, Sum) and isinstance(kernel.k2, WhiteKernel)):
            raise TypeError(f"SkoptSampler: unexpected noisy GP kernel {kernel!r}")
        kernel = kernel.k1
    return kernel, noise


# ---------------------------------------------------------------- SkoptSampler


class SkoptSampler(BaseSampler):
    """scikit-optimize's Gaussian-process `Optimizer` as an Optuna sampler.

    SkoptSampler(seed=None, *, search_space=None, cost_attr=None, **options)

    options: the `[strategy.bayes]` keys (acq_func, n_initial_points, acq_optimizer,
    n_points, n_restarts_optimizer, gp_n_restarts_optimizer, gp_refit_every, xi, kappa).
    search_space: the distributions to model; without it the space is inferred from the
    study as Optuna's own relative samplers do (the intersection of the finished trials'
    distributions, single-valued ones left out); other parameters are sampled at random.
    cost_attr: a user attr holding each trial's cost (e.g. "energy_j"): the acquisition
    becomes expected improvement per unit of cost (skopt's EIps, a second GP on log cost).

    At each proposal the GP is rebuilt from the study's finished trials (the study is the
    single source of truth), so a resumed or shared study continues where it stopped. Told
    to the GP: COMPLETE trials with their value, PRUNED trials with their last reported
    value (`observed_value`). Until `n_initial_points` trials are told, points are random.
    Values are maximised or minimised as the study says (skopt minimises: we negate).

    Constant liar: trials RUNNING in other workers (their parameters already in the store)
    are told with the worst finished value, which pushes the acquisition away from them; a
    single process never has such trials. The kernel fit below never sees these rows
    (`_kernel`; `bayes-eips`, whose skopt fits value and cost jointly, excepted).
    """

    #: imported when the sampler is built (`import_libraries`); subclasses add theirs
    LIBRARIES: tuple[str, ...] = (
        "skopt", "skopt.utils", "skopt.space", "sklearn.gaussian_process.kernels",
        "sklearn.multioutput", "tuning_energy.search.skopt_gp")
    #: ... and instead, where the proposals are computed without skopt (`_native_space`)
    NATIVE_LIBRARIES: tuple[str, ...] = ("tuning_energy.search.native_bayes",)

    def __init__(self, seed: int | None = None, *,
                 search_space: dict[str, BaseDistribution] | None = None,
                 cost_attr: str | None = None, **options: Any) -> None:
        self._options = parse_bayes(options, path="SkoptSampler")
        self._seed = seed
        self._given_space = dict(search_space) if search_space is not None else None
        self._intersection = IntersectionSearchSpace(include_pruned=True)
        # Cost-aware acquisition (EIps): skopt models log(cost) with a second GP and divides
        # the improvement by it. skopt calls the cost "time"; we give it energy.
        self._cost_attr = cost_attr
        if cost_attr is not None:
            self._options = dataclasses.replace(self._options, acq_func="EIps")
        self._random = ResumableRandomSampler(seed=seed)
        self._template: tuple[Any, ...] | None = None  # `_template_for`
        self._kernel_cache: tuple[Any, tuple[Any, float | None]] | None = None
        self._rows: tuple[Any, dict] | None = None  # (space, its `_encoded` rows)
        modelled = {n: d for n, d in (self._given_space or {}).items() if not d.single()}
        # Proposals without skopt (native_bayes.py: the same points), for SkoptSampler's own
        # sample_relative and the options and space it computes; skopt is then not imported.
        # Set-up, as the imports: the first GP proposal would build the space or template.
        from tuning_energy.search.native_bayes import GPSpace, eligible

        self._native = type(self).sample_relative is SkoptSampler.sample_relative \
            and eligible(self._options)
        self._gp_space: tuple[Any, Any] | None = None  # (space key, native GPSpace or None)
        if self._native and modelled:
            self._gp_space = (tuple(modelled.items()), GPSpace.of(modelled))
            self._native = self._gp_space[1] is not None
        import_libraries(self.NATIVE_LIBRARIES if self._native else self.LIBRARIES)
        if modelled and not self._native:
            self._template_for(modelled)

    @property
    def options(self):
        """The BayesConfig in use (acq_func EIps when a cost_attr is given)."""
        return self._options

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def before_trial(self, study, trial: FrozenTrial) -> None:
        self._random.before_trial(study, trial)

    @staticmethod
    def _refuse_multi_objective(study) -> None:
        if study._is_multi_objective():
            raise ConfigError(
                f"SkoptSampler (strategy 'bayes') is single-objective and this study has "
                f"{len(study.directions)} objectives; use strategy 'mo' (or Optuna's "
                f"TPESampler) for a multi-objective study")

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        self._refuse_multi_objective(study)
        space = self._given_space
        if space is None:
            space = self._intersection.calculate(study, use_cache=True)
        return {n: d for n, d in space.items() if not d.single()}

    def _observations(self, study, space, exclude: int | None):
        """(xs, ys) of the finished trials in trial order, and the running trials' points."""
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        xs, ys, running = [], [], []
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        key, rows = tuple(space.items()), self._rows
        if rows is None or rows[0] != key:  # (another thread may hold the previous one)
            rows = self._rows = (key, {})
        for t in study._get_trials(deepcopy=False, states=states, use_cache=True):
            row = None if t.number == exclude else _encoded(t, space, rows[1])
            if row is None:
                continue
            if t.state == TrialState.RUNNING:
                running.append(row)  # in another worker (ours has no parameters yet)
                continue
            value = observed_value(t)
            if value is None:
                continue
            if self._cost_attr is None:
                xs.append(row)
                ys.append(sign * value)
            elif (cost := self._cost(t)) is not None:
                xs.append(row)
                ys.append([sign * value, cost])
        return xs, ys, running

    def _cost(self, trial: FrozenTrial) -> float | None:
        """The cost of running the trial's point. Unmeasured cost is never taken as free.

        A pruned trial spent only part of it: with cost_attr "energy_j" its cost is the
        energy spent plus the objective's estimate of what the remaining epochs would have
        spent (`energy_saved_j`); without that estimate it is not told to the EIps GP (the
        cost GP would learn that pruned points are cheap).
        """
        cost = trial.user_attrs.get(self._cost_attr)
        if trial.state == TrialState.PRUNED:
            saved = trial.user_attrs.get("energy_saved_j") if self._cost_attr == "energy_j" \
                else None
            cost = None if cost is None or saved is None else cost + saved
        return float(cost) if cost is not None and cost > 0 else None

    def optimizer(self, study: optuna.Study, trial_number: int = 0,
                  search_space: dict[str, BaseDistribution] | None = None,
                  fit: bool = True) -> Any:
        """A fitted skopt Optimizer over the study's finished trials (None while too few).

        search_space: as sample_relative gets it (default: what this sampler infers).
        fit: False: told, not fitted (skopt's fit in tell also runs an acquisition pass for
        the next ask; a caller with its own acquisition fits the GP by `fitted_model`)."""
        if search_space is None:
            search_space = self.infer_relative_search_space(study, None)
        if not search_space:
            return None
        told = self._told(study, search_space, trial_number, None)
        if told is None:
            return None
        xs, ys, kernel, seed = told
        opt = self._skopt_optimizer(search_space, seed, kernel)
        with warnings.catch_warnings():
            # "The objective has been evaluated at point ... before": harmless for a GP.
            warnings.simplefilter("ignore", UserWarning)
            if "ps" in opt.acq_func:  # EIps: tell takes the log of the costs
                opt.tell(xs, ys, fit=fit)
            else:  # tell's checks (each point in the space, each value a number) hold by
                opt._tell(xs, ys, fit=fit)  # construction: `_encode`, `observed_value`
        return opt

    def _told(self, study, space, trial_number: int, gp_space):
        """(xs, ys, kernel, seed) of a proposal: the finished trials' points and values, then
        the running trials' at the constant liar's value; the kernel `_kernel` fitted on the
        finished ones (by skopt's GP, or by native_bayes on `gp_space`); the proposal's
        seed. None while too few trials have finished."""
        xs, ys, running = self._observations(study, space, exclude=trial_number)
        if not xs or len(xs) < self._options.n_initial_points:
            return None
        kernel = self._kernel(space, xs, ys, bool(running), gp_space)  # finished only
        if running:  # constant liar: the worst value so far (skopt minimises)
            if self._cost_attr is None:
                lie: Any = max(ys)
            else:  # EIps: the worst value at the median cost
                lie = [max(y[0] for y in ys), float(np.median([y[1] for y in ys]))]
            xs, ys = xs + running, ys + [lie] * len(running)
        seed = None if self._seed is None else derive_seed(self._seed, trial_number) % 2**31
        return xs, ys, kernel, seed

    def _native_space(self, space: dict[str, BaseDistribution]) -> Any:
        """native_bayes's GPSpace of `space` (built once per space), or None where this
        sampler proposes with skopt's code."""
        if not self._native:
            return None
        key, known = tuple(space.items()), self._gp_space  # (one read: threads share it)
        if known is None or known[0] != key:
            from tuning_energy.search.native_bayes import GPSpace

            known = self._gp_space = (key, GPSpace.of(space))
        return known[1]

    @staticmethod
    def fitted_model(opt: Any) -> Any:
        """The GP that `opt.tell(..., fit=True)` would fit (its `models[-1]`), fitted on an
        Optimizer told with fit=False, without skopt's acquisition pass after the fit."""
        return fitted_model(opt)

    def _skopt_optimizer(self, space: dict[str, BaseDistribution], seed: int | None,
                         kernel: tuple[Any, float | None] | None = None):
        """An empty skopt Optimizer seeded with `seed`, as
        `Optimizer(dims, base_estimator=cook_estimator("GP", ...), random_state=seed, ...)`
        would build it, without building it: constructing one normalises the space and cooks
        the GP again (~30 ms of scipy distribution objects, half of a proposal between kernel
        refits). The template is built once per search space; each proposal gets a shallow
        copy with its own seed, its own GP and empty state (tests check the proposals are
        the same). kernel: (kernel, noise level) fitted earlier, kept fixed (no L-BFGS)."""
        from sklearn.utils import check_random_state

        _, _, gp_template, empty, gp_params = self._template_for(space)
        # Built from the template's parameters, not cloned: skopt clones the estimator before
        # each fit (so does every fit here), so this one is never fitted nor changed.
        params = {**gp_params, "random_state": seed}
        if kernel is not None:
            params.update(kernel=kernel[0], noise=kernel[1], optimizer=None)
        gp = type(gp_template)(**params)
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
        fast_acquisition(opt)  # skopt's acquisition pass in tell, cheaper (skopt_space.py)
        return opt

    def _template_for(self, space: dict[str, BaseDistribution]) -> tuple[Any, ...]:
        """(space key, dims, cooked GP, empty Optimizer, the GP's parameters) for `space`,
        built once per search space (`_skopt_optimizer`)."""
        from sklearn.base import clone

        key, template = tuple(space.items()), self._template  # (one read: threads share it)
        if template is None or template[0] != key:
            from skopt import Optimizer
            from skopt.utils import cook_estimator

            from tuning_energy.search.skopt_gp import fast_gp

            o = self._options
            dims = [skopt_dimension(n, d) for n, d in space.items()]
            # skopt's own GP ("GP"), cooked here so that its kernel-fit restarts are ours.
            gp = fast_gp(cook_estimator("GP", space=dims, random_state=None,
                                        n_restarts_optimizer=o.gp_n_restarts_optimizer))
            empty = Optimizer(
                dims, base_estimator=clone(gp), acq_func=o.acq_func, n_initial_points=0,
                acq_optimizer=o.acq_optimizer, random_state=0,
                acq_func_kwargs={"xi": o.xi, "kappa": o.kappa},
                acq_optimizer_kwargs={"n_points": o.n_points,
                                      "n_restarts_optimizer": o.n_restarts_optimizer})
            fast_transform(empty.space)
            # get_params reads the constructor's signature: once, not per proposal
            template = self._template = (key, dims, gp, empty, gp.get_params(deep=False))
        return template

    def _kernel(self, space, xs: list, ys: list, lies: bool = False,
                gp_space: Any = None) -> tuple[Any, float | None] | None:
        """GP kernel and noise level fitted on the first m = k * floor(n / k) finished trials
        (at most the last `gp_fit_max_points` of them).

        The L-BFGS fit of the kernel is most of a proposal's cost (~60 likelihood
        evaluations, each O(m^3)); refitting every k trials keeps the GP's behaviour and
        cuts that k-fold, and the cap keeps it flat once the study is long. The GP is then
        conditioned on every trial with that kernel (one Cholesky). The fit depends only on
        those points (trial order) and the seed, so a resumed study refits them and proposes
        exactly what an uninterrupted one would. xs, ys: finished trials only, never
        constant-liar rows (a cached kernel would keep the lies after the trials finished).
        `lies`: constant-liar rows will be told: the kernel is fitted here on the finished
        trials even when skopt would refit every proposal (gp_refit_every = 1), so that
        skopt's refit in tell never fits the lies. `gp_space`: native_bayes's space, whose
        fit gives the same hyperparameters as scikit-learn kernels (None: skopt's GP).
        """
        k, cap = self._options.gp_refit_every, self._options.gp_fit_max_points
        if self._cost_attr or (k <= 1 and (cap == 0 or len(xs) <= cap) and not lies):
            return None  # skopt refits in tell (EIps fits a second GP on the cost too)
        m = len(xs) // k * k
        if m == 0 or m < self._options.n_initial_points:
            return None
        lo = max(0, m - cap) if cap else 0
        key = (tuple(space.items()), gp_space is None, m, repr(xs[lo:m]), repr(ys[lo:m]))
        cached = self._kernel_cache  # one read: threads share it
        if cached is not None and cached[0] == key:
            return cached[1]
        seed = None if self._seed is None else derive_seed(self._seed, m) % 2**31
        if gp_space is not None:  # the same fit, without skopt (native_bayes.py)
            from tuning_energy.search.native_bayes import fit_kernel

            fitted = fit_kernel(gp_space.transform(xs[lo:m]), ys[lo:m],
                                self._options.gp_n_restarts_optimizer, seed)
        else:
            opt = self._skopt_optimizer(space, seed)
            # what opt.tell(xs, ys, fit=True) fits, without the acquisition pass after it
            from sklearn.base import clone

            gp = clone(opt.base_estimator_)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                gp.fit(opt.space.transform(xs[lo:m]), ys[lo:m])
            fitted = fitted_hyperparameters(gp)
        self._kernel_cache = (key, fitted)
        return fitted

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        self._refuse_multi_objective(study)
        if not search_space:
            return {}
        point = None  # None: the initial random points (sample_independent draws them)
        gp_space = self._native_space(search_space)
        if gp_space is not None:  # what skopt's Optimizer would ask, without skopt
            from tuning_energy.search.native_bayes import propose

            told = self._told(study, search_space, trial.number, gp_space)
            if told is not None:
                xs, ys, kernel, seed = told
                point = propose(gp_space, xs, ys, kernel, seed, self._options)
        elif (opt := self.optimizer(study, trial.number, search_space)) is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                point = opt.ask()
        return {} if point is None else _decode(point, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        self._refuse_multi_objective(study)
        return self._random.sample_independent(study, trial, param_name, param_distribution)
