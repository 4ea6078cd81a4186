"""Runs of one study: resuming under analysis-only changes, on another machine or with
another meter (recorded per run and per trial, and said by the summary)."""

from __future__ import annotations

import dataclasses
import io

import optuna
import pytest

from tuning_energy.config import parse_config
from tuning_energy.errors import StorageError
from tuning_energy.run import runner as runner_mod
from tuning_energy.run.runner import run_study
from tuning_energy.store.runs import RUN_PREFIX, runs

from .conftest import tiny_doc
from .energy.fake_powercap import FakePowercap


def more_trials(config, n):
    return config.with_overrides(budget=dataclasses.replace(config.budget, n_trials=n))


def test_keys_that_change_only_the_analysis_do_not_block_a_resume(tiny_config, storage_url):
    run_study(tiny_config, "random", 0, storage_url, progress=False)
    changed = parse_config(tiny_doc(
        target_accuracy=0.9, budget={"n_trials": 4},
        meter={"kind": "estimate", "idle_s": 1.0, "region": "FR", "pue": 1.3},
        data={"root": "/elsewhere/data"}))
    out = io.StringIO()
    summary = run_study(changed, "random", 0, storage_url, progress=False, out=out)
    assert summary.ran_now == 1 and summary.n_finished == 4
    assert "target_accuracy: stored 0.5, now 0.9" in out.getvalue()
    study = optuna.load_study(study_name="tiny-random-s0", storage=storage_url)
    assert study.user_attrs["config"] == changed.to_dict()  # the analysis reads the new one
    assert study.user_attrs["config.meter"]["pue"] == 1.3
    (first, second) = runs(study.user_attrs)
    assert second["config_changes"] and not first["config_changes"]


def test_keys_that_change_the_trials_still_block_a_resume(tiny_config, storage_url):
    run_study(tiny_config, "random", 0, storage_url, progress=False)
    other = parse_config(tiny_doc(meter={"kind": "estimate", "idle_s": 0, "cpu_tdp_w": 99.0}))
    with pytest.raises(StorageError, match="meter.cpu_tdp_w: stored None, now 99.0"):
        run_study(other, "random", 0, storage_url, progress=False)


def fake_machine(name: str, cpu: str):
    return lambda: {"host": name, "cpu": cpu, "cpu_cores": 8, "cpu_cores_usable": 8,
                    "gpus": "none", "platform": "Linux", "python": "3.11"}


def test_a_resume_on_another_machine_and_meter_is_recorded_and_reported(
        tmp_path, storage_url, monkeypatch):
    powercap = FakePowercap(tmp_path / "rapl")  # machine A: readable RAPL counters
    powercap.zone("intel-rapl:0", "package-0", 1_000_000)
    meter = {"kind": "auto", "idle_s": 0}
    on_a = parse_config(tiny_doc(meter={**meter, "powercap_root": str(powercap.root)},
                                 budget={"n_trials": 2}))
    monkeypatch.setattr(runner_mod, "hardware_info", fake_machine("alpha", "Xeon A"))
    first = run_study(on_a, "random", 0, storage_url, progress=False)
    assert first.energy_methods == {"rapl": 2} and not first.mixed
    assert not any("MIXED" in line for line in first.lines())

    # Machine B: no RAPL where the config now points, so `auto` estimates the CPU.
    on_b = parse_config(tiny_doc(meter={**meter, "powercap_root": str(tmp_path / "none")},
                                 budget={"n_trials": 3}))
    monkeypatch.setattr(runner_mod, "hardware_info", fake_machine("beta", "EPYC B"))
    out = io.StringIO()
    second = run_study(on_b, "random", 0, storage_url, progress=False, out=out)
    assert second.ran_now == 1
    assert "this run is on beta: EPYC B: the study will mix machines" in out.getvalue()
    assert "the study will mix energy methods" in out.getvalue()

    study = optuna.load_study(study_name="tiny-random-s0", storage=storage_url)
    recorded = runs(study.user_attrs)
    assert [r["hardware_id"] for r in recorded] == ["alpha: Xeon A", "beta: EPYC B"]
    assert [r["energy_method"] for r in recorded] == ["rapl", "estimate-cpu-tdp-tree"]
    assert all(f"{RUN_PREFIX}{r['run_id']}" in study.user_attrs for r in recorded)
    assert study.user_attrs["hardware"]["host"] == "alpha"  # what the first run recorded
    by_trial = [(t.user_attrs["run_id"], t.user_attrs["hardware_id"],
                 t.user_attrs["energy_method"]) for t in study.trials]
    assert by_trial == [(recorded[0]["run_id"], "alpha: Xeon A", "rapl")] * 2 + \
        [(recorded[1]["run_id"], "beta: EPYC B", "estimate-cpu-tdp-tree")]

    assert second.mixed
    assert second.machines == {"alpha: Xeon A": 2, "beta: EPYC B": 1}
    lines = "\n".join(second.lines())
    assert "MIXED      this study's trials ran on 2 machines: alpha: Xeon A (2 trials); " \
           "beta: EPYC B (1 trial)" in lines
    assert "MIXED      this study's energy comes from 2 methods: rapl (2 trials); " \
           "estimate-cpu-tdp-tree (1 trial)" in lines
    assert "method rapl + estimate-cpu-tdp-tree" in lines

    # The report and the trials table say the same: the study pools two machines and methods.
    from tuning_energy import analysis as an
    from tuning_energy.report.report import mixed_lines

    table = an.trials_table(storage_url)
    assert list(table["hardware_id"]) == ["alpha: Xeon A"] * 2 + ["beta: EPYC B"]
    report = "\n".join(mixed_lines(table))
    assert "**MIXED**: `tiny-random-s0`'s trials ran on 2 machines (alpha: Xeon A; beta: EPYC B)" \
        in report
    assert "were metered by 2 methods (estimate-cpu-tdp-tree; rapl)" in report
    # ... and the summary labels the estimated part of the pooled methods
    assert "partly an ESTIMATE" in lines


def test_the_summary_labels_an_estimate(storage_url):
    summary = run_study(parse_config(tiny_doc(budget={"n_trials": 1})), "random", 0,
                        storage_url, progress=False)
    energy = next(line for line in summary.lines() if line.startswith("energy"))
    assert "method estimate-cpu-tdp-tree (an ESTIMATE (estimate-cpu-tdp-tree), modelled, not measured)" \
        in energy
