"""The end-of-study summary and the study attrs it leaves: training energy and the charged
total named apart, on a real SQLite store."""

from __future__ import annotations

import io
import math
import re

import optuna
import pytest

from tuning_energy.run.runner import run_study


def test_training_energy_and_the_charged_total_are_named_apart(tiny_config, storage_url):
    out = io.StringIO()
    summary = run_study(tiny_config, "bayes", 0, storage_url, progress=False, out=out)
    study = optuna.load_study(study_name=summary.study_name, storage=storage_url)
    attrs = [t.user_attrs for t in study.trials]
    training = sum(a["energy_j"] for a in attrs)
    proposing = sum(a["propose_energy_j"] for a in attrs)
    storing = sum(a["store_energy_j"] for a in attrs)
    assert proposing > 0 and storing > 0

    # study attrs: the training alone under its own name; total_energy_j is what the
    # trials are charged, as `total_energy_j` means in the analysis
    assert study.user_attrs["training_energy_j"] == pytest.approx(training)
    assert study.user_attrs["total_energy_j"] == pytest.approx(training + proposing + storing)

    lines = summary.lines()
    energy = next(ln for ln in lines if ln.startswith("energy "))
    assert re.search(rf"training energy {training:,.1f} J", energy), energy
    charged = next(ln for ln in lines if ln.startswith("charged "))
    assert f"{training + proposing + storing:,.1f} J" in charged
    # the strategy's share: of the charged total, and said so
    search = next(ln for ln in lines if ln.startswith("search "))
    m = re.search(r"= ([\d.]+)% of the charged total", search)
    assert m, search
    share = proposing / (training + proposing + storing)
    assert math.isclose(float(m.group(1)), 100 * share, abs_tol=0.051)
