"""The objective on its own (no runner hooks), on a real SQLite store: every trial attr that
describes a measurement comes from the measurement itself."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import tiny_doc
from tuning_energy.cnn import function as cnn_module
from tuning_energy.cnn.data import load_dataset
from tuning_energy.cnn.function import CnnObjective
from tuning_energy.config import parse_config
from tuning_energy.energy import EstimateMeter, Measurement
from tuning_energy.objective import objective as objective_module
from tuning_energy.objective.objective import Objective, energy_attrs
from tuning_energy.run.runner import run_study
from tuning_energy.run.worker_energy import PARTIAL, TrialWindowMeter


def test_energy_attrs_keep_what_the_meter_adds_to_a_measurement():
    m = Measurement(12.0, {"cpu0": 12.0}, 1.0, "rapl",
                    extra={"crosscheck_energy_j": 11.5, "crosscheck_method": "codecarbon"})
    attrs = energy_attrs(m)
    assert attrs["crosscheck_energy_j"] == 11.5 and attrs["crosscheck_method"] == "codecarbon"


def _worker_trial(config, storage_url, monkeypatch) -> optuna.trial.FrozenTrial:
    """One trial run by the objective alone (no on_measurement hook) on a worker's meter
    (TrialWindowMeter) whose heartbeat wrote the energy so far while it trained."""
    meter = TrialWindowMeter(EstimateMeter(cpu_tdp_w=100.0, cpu_cores=1))
    study = optuna.create_study(storage=storage_url, direction="maximize")
    objective = Objective(config, CnnObjective(config, load_dataset(config.data)), meter)
    trial = study.ask()
    params = objective.propose(trial, meter.begin())
    real_fit = cnn_module.fit
    written = []

    def fit(*args, **kwargs):  # inside the trial's window: a heartbeat writes it
        written.append(meter.write_partial(trial))
        return real_fit(*args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(cnn_module, "fit", fit)
        meter.arm()  # as the heartbeat does before the trial's window opens
        values = objective.values(objective.run(trial, params))
    study.tell(trial, values)
    meter.close()
    assert written == [True]
    return study.trials[0]


def test_a_trial_whose_energy_so_far_was_written_ends_not_partial(tiny_config, storage_url,
                                                                    monkeypatch):
    """A worker's meter (TrialWindowMeter) wrote the energy so far on the trial while it
    trained (energy_partial = true); the objective, built without an on_measurement hook,
    writes the final energy: the COMPLETE trial must not stay marked partial."""
    frozen = _worker_trial(tiny_config, storage_url, monkeypatch)
    assert frozen.state == TrialState.COMPLETE and frozen.user_attrs["energy_j"] > 0
    assert frozen.user_attrs[PARTIAL] is False


def _readme_section(title: str) -> str:
    text = (Path(__file__).resolve().parents[1] / "docs" / "attrs.md").read_text()
    return text.split(f"# {title}\n", 1)[1]


def test_the_docs_list_every_attr_a_trial_gets(storage_url, monkeypatch):
    """Every trial user attr that real runs leave (a crash, trials pruned by the energy cap,
    a CodeCarbon cross-check, a Ctrl-C, a worker's trial) is listed in objective.py's module
    docstring and in docs/attrs.md ("What each trial stores")."""
    pytest.importorskip("codecarbon")  # the `crosscheck` extra, which `make test` installs
    monkeypatch.chdir(storage_url.removeprefix("sqlite:///").rsplit("/", 1)[0])
    config = parse_config(tiny_doc(train={"epochs": 3}, meter={"idle_s": 0.1},
                                   budget={"n_trials": 4, "max_trial_energy_j": 1e-9}))
    real_fit = cnn_module.fit
    calls = []

    def fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory (test)")  # a FAIL with its error
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C: a FAIL with its fail_reason
        return real_fit(*args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(cnn_module, "fit", fit)
        summary = run_study(config, "random", 0, storage_url, progress=False,
                            out=io.StringIO(), cross_check="codecarbon")
    assert summary.interrupted and summary.n_pruned == 2
    study = optuna.load_study(study_name=summary.study_name, storage=storage_url)
    keys = {k for t in study.trials for k in t.user_attrs}
    keys |= set(_worker_trial(dataclasses.replace(config, budget=dataclasses.replace(
        config.budget, max_trial_energy_j=None)), storage_url, monkeypatch).user_attrs)
    assert {"error", "fail_reason", "pruned_reason", "crosscheck_energy_j", "idle_power_w",
            PARTIAL} <= keys  # the runs above reached every path
    doc = set(re.findall(r"[a-z][a-z0-9_]+", objective_module.__doc__))
    assert not keys - doc, f"objective.py's docstring misses {sorted(keys - doc)}"
    readme = set(re.findall(r"`([a-z][a-z0-9_]+)`", _readme_section("What each trial stores")))
    assert not keys - readme, f"docs/attrs.md misses {sorted(keys - readme)}"
