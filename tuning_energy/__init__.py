"""tuning-energy: what did this hyperparameter search cost in energy?

The public Python API (the README's "Python API" section has a runnable example):

    load_config(path) -> StudyConfig      read and validate a study TOML file
    parse_config(dict) -> StudyConfig     the same from a dict
    run_study(config, strategy, seed, storage_url) -> StudySummary
                                          create or resume a study and run its budget
    metered(f, meter="auto", target=None) -> callable
                                          a plain Optuna objective f(trial), energy-metered
    TrialContext                          what a config's `[objective] function(params, ctx)`
                                          gets as `ctx`
    analysis                              the tidy trials table and the analyses on it
    export_trials(storage_url, path, fmt) the trials table as CSV or Parquet
    build_meter(meter_config) -> MeterChoice
                                          the meter a config asks for (`.meter`), and why
    Measurement                           the energy of one meter window, with its method

The names are imported on first use: `import tuning_energy` stays cheap (no torch, optuna
or pandas until a name that needs them is used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# name -> module that defines it (None: the name is that module itself)
_LAZY: dict[str, str | None] = {
    "load_config": ".config",
    "parse_config": ".config",
    "StudyConfig": ".config",
    "run_study": ".run.runner",
    "StudySummary": ".run.summary",
    "analysis": None,
    "metered": ".objective.plain_optuna",
    "TrialContext": ".objective.context",
    "export_trials": ".report.export",
    "build_meter": ".energy",
    "MeterChoice": ".energy",
    "Measurement": ".energy",
}

__all__ = [  # a literal list, for type checkers; the same names as _LAZY
    "__version__", "load_config", "parse_config", "StudyConfig", "run_study", "StudySummary",
    "analysis", "export_trials", "build_meter", "MeterChoice", "Measurement", "metered",
    "TrialContext",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports
    from tuning_energy import analysis
    from tuning_energy.config import StudyConfig, load_config, parse_config
    from tuning_energy.energy import Measurement, MeterChoice, build_meter
    from tuning_energy.objective.context import TrialContext
    from tuning_energy.objective.plain_optuna import metered
    from tuning_energy.report.export import export_trials
    from tuning_energy.run.runner import run_study
    from tuning_energy.run.summary import StudySummary


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tuning_energy' has no attribute {name!r}")
    module = _LAZY[name]
    value = importlib.import_module(f".{name}" if module is None else module, __name__)
    if module is not None:
        value = getattr(value, name)
    globals()[name] = value  # the next lookup skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
