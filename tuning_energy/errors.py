"""One base class for every error tuning-energy raises on purpose.

Each message names the field (dotted path where there is one), the bad value and what is
allowed, so that the CLI can print it as it is and exit.
"""

from __future__ import annotations


class TuningEnergyError(Exception):
    """Base class: an error the user can fix; the CLI prints its message and exits 2."""


class ConfigError(TuningEnergyError, ValueError):
    """A study configuration (TOML or CLI flag) is invalid."""


class MeterUnavailable(TuningEnergyError, RuntimeError):
    """A meter that was asked for cannot measure here; the message says why and the fix."""


class StorageError(TuningEnergyError, RuntimeError):
    """The storage URL is invalid or the store cannot be used as asked."""


class DataError(TuningEnergyError, RuntimeError):
    """A dataset's files are missing, cannot be downloaded or do not hold what they should;
    the message names the dataset, the folder, the files expected and where to get them."""


class StudyAborted(TuningEnergyError, RuntimeError):
    """A study stopped early for a reason the user must look at (e.g. repeated failures)."""
