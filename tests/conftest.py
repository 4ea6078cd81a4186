"""Shared fixtures: tiny, fast study configs and temporary real SQLite stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuning_energy.config import StudyConfig, parse_config

# Results with convolutions differ between 1 and 2 torch threads: fix it in tests.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY = {
    "name": "tiny",
    "target_accuracy": 0.5,
    "data": {"dataset": "digits", "split_seed": 0, "val_fraction": 0.25},
    "train": {"epochs": 1, "batch_size": 128, "torch_threads": 1, "device": "cpu"},
    "budget": {"n_trials": 3},
    "meter": {"kind": "estimate", "idle_s": 0},
    "strategy": {"bayes": {"n_initial_points": 2, "n_points": 200}},
    "search_space": {
        "n_conv": {"type": "int", "low": 0, "high": 1},
        "relu": {"type": "bool"},
        "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
        "beta1": {"type": "float", "low": 0.5, "high": 0.95},
    },
}


def tiny_doc(**overrides) -> dict:
    """A deep copy of the tiny config with top-level sections updated."""
    import copy

    doc = copy.deepcopy(TINY)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    return doc


@pytest.fixture
def tiny_config() -> StudyConfig:
    return parse_config(tiny_doc())


@pytest.fixture
def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'energy.db'}"
