"""The suite's problems as committed: each target follows its written rule, recomputed from
the pilot's committed trials (figures/suite/pilot.parquet), and the MNIST-1D claim the
problem rests on (conv blocks matter) holds in them."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from tuning_energy.config import load_config

ROOT = Path(__file__).resolve().parents[1]
PILOT = ROOT / "figures" / "suite" / "pilot.parquet"
PILOT_SEEDS = [100, 101, 102]


def _pilot(problem: str) -> pd.DataFrame:
    t = pd.read_parquet(PILOT)
    return t[t["study"].str.startswith(f"{problem}-random-s")]


@pytest.mark.parametrize("problem", ["mnist1d", "hgb"])
def test_the_target_is_the_median_pilot_best_rounded_down(problem):
    config = load_config(ROOT / "studies" / f"{problem}.toml")
    pilot = _pilot(problem)
    assert sorted(pilot["seed"].unique()) == PILOT_SEEDS
    # the pilot ran random search only, each seed for the config's whole budget
    assert set(pilot["strategy"]) == {"random"}
    assert (pilot.groupby("study")["trial"].count() == config.budget.n_trials).all()
    median_best = pilot.groupby("study")["accuracy"].max().median()
    assert config.target == math.floor(round(median_best * 100, 6)) / 100


def test_mnist1d_separates_models_without_and_with_conv_blocks():
    pilot = _pilot("mnist1d")
    best = pilot.groupby("param_n_conv")["accuracy"].max()
    assert best[0] < 0.7  # no conv block: an MLP
    assert best[3] > 0.9  # three conv blocks
    assert best[0] < load_config(ROOT / "studies" / "mnist1d.toml").target
