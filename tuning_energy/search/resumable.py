"""Optuna's samplers reseeded from (seed, trial number) before each trial, so that a resumed
study continues with new points and stays reproducible; and the import of a sampler's
libraries when it is built (`import_libraries`, metered as its set-up)."""

from __future__ import annotations

import importlib.util
from typing import Any

from optuna.samplers import BaseSampler, GPSampler, RandomSampler, TPESampler
from optuna.samplers._lazy_random_state import LazyRandomState
from optuna.trial import FrozenTrial

from tuning_energy.seeds import sampler_seed

# ---------------------------------------------------------------- per-trial seeding


derive_seed = sampler_seed  # a per-trial seed: the same (seed, trial), the same point


def import_libraries(modules: tuple[str, ...]) -> None:
    """Import the libraries a sampler's proposals use, when the sampler is built.

    The runner meters the sampler's construction and charges it to the run's first
    proposal (metered_sampler.py); left to the first GP proposal, the import was charged to
    that trial, and the first proposals paid the model template too. A module this version of
    the library lacks is skipped (Optuna 4.3's GPSampler has no batched L-BFGS module).
    """
    for name in modules:
        if importlib.util.find_spec(name) is not None:  # absent from this version: unused
            importlib.import_module(name)


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
    #: what GPSampler imports at its first proposal (its _LazyImports, and theirs)
    LIBRARIES = ("torch", "scipy.optimize", "scipy.stats.qmc", "optuna._gp.gp",
                 "optuna._gp.acqf", "optuna._gp.optim_mixed", "optuna._gp.batched_lbfgsb",
                 "optuna._gp.prior", "optuna._gp.search_space")

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed
        import_libraries(self.LIBRARIES)
        # ... and what they set up at their first use: scipy's Sobol tables (read from a
        # file), torch's device context (`with torch.device("cpu")` in sample_relative)
        import torch
        from scipy.stats import qmc

        qmc.Sobol(d=1, seed=0)
        with torch.device("cpu"):
            pass
