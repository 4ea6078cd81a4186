"""The objective and the runner on real temporary SQLite stores."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuning_energy.config import parse_config
from tuning_energy.errors import StorageError, StudyAborted
from tuning_energy.run import runner as runner_mod
from tuning_energy.run.runner import run_study, study_name

from .conftest import tiny_doc, write_tiny

REPO = Path(__file__).resolve().parents[1]
TRIAL_ATTRS = {"energy_j", "energy_method", "energy_by_device_j", "duration_s", "avg_power_w",
               "n_params", "flops_per_sample", "epochs_run", "diverged", "train_loss",
               "propose_s"}
STUDY_ATTRS = {"strategy", "seed", "config", "hardware", "energy_method",
               "tuning_energy_version", "torch_version"}


def load(storage_url, name="tiny-random-s0"):
    return optuna.load_study(study_name=name, storage=storage_url)


def test_every_trial_carries_real_energy_and_its_method(tiny_config, storage_url):
    summary = run_study(tiny_config, "random", 0, storage_url, progress=False)
    assert summary.n_finished == 3 and summary.n_failed == 0
    study = load(storage_url)
    assert study.metric_names == ["accuracy"]
    assert STUDY_ATTRS <= set(study.user_attrs)
    assert study.user_attrs["config"] == tiny_config.to_dict()
    assert study.user_attrs["energy_method"] == "estimate-cpu-tdp-tree"
    for t in study.trials:
        assert t.state == TrialState.COMPLETE
        assert TRIAL_ATTRS <= set(t.user_attrs), TRIAL_ATTRS - set(t.user_attrs)
        a = t.user_attrs
        assert 0.0 <= t.value <= 1.0
        assert a["energy_j"] > 0 and a["energy_method"] == "estimate-cpu-tdp-tree"
        assert math.isclose(sum(a["energy_by_device_j"].values()), a["energy_j"])
        assert math.isclose(a["avg_power_w"], a["energy_j"] / a["duration_s"])
        assert a["epochs_run"] == 1 and a["diverged"] is False
        assert a["n_params"] > 0 and a["flops_per_sample"] > 0 and a["propose_s"] >= 0
    assert math.isclose(summary.training_energy_j, sum(t.user_attrs["energy_j"] for t in study.trials))


def test_a_diverged_trial_is_recorded_not_fatal(storage_url):
    doc = tiny_doc(fixed={"lr": 1e20}, search_space={"n_conv": {"type": "int", "low": 0, "high": 0}})
    del doc["search_space"]["lr"]
    summary = run_study(parse_config(doc), "random", 0, storage_url, progress=False)
    assert summary.n_finished == 3
    for t in load(storage_url).trials:
        assert t.state == TrialState.COMPLETE
        assert t.user_attrs["diverged"] is True
        assert t.user_attrs["train_loss"] is None  # NaN is not stored as a number
        assert t.user_attrs["energy_j"] > 0  # it still cost energy
        assert t.value <= 0.2


def test_rerun_runs_only_what_is_left_and_a_finished_study_runs_nothing(tiny_config, storage_url):
    import dataclasses

    first = run_study(tiny_config, "bayes", 0, storage_url, progress=False)
    assert first.ran_now == 3
    bigger = tiny_config.with_overrides(budget=dataclasses.replace(tiny_config.budget, n_trials=5))
    second = run_study(bigger, "bayes", 0, storage_url, progress=False)
    assert second.ran_now == 2 and second.n_finished == 5
    third = run_study(bigger, "bayes", 0, storage_url, progress=False)
    assert third.ran_now == 0 and third.stop_reason == "budget already spent"
    assert len(load(storage_url, "tiny-bayes-s0").trials) == 5


def test_a_different_config_under_the_same_name_is_refused(tiny_config, storage_url):
    run_study(tiny_config, "random", 0, storage_url, progress=False)
    other = parse_config(tiny_doc(train={"epochs": 2}))
    with pytest.raises(StorageError, match=r"different config \(train.epochs: stored 1, now 2\)"):
        run_study(other, "random", 0, storage_url, progress=False)


def test_only_the_studys_own_strategy_options_must_match_on_resume(tiny_config, storage_url):
    run_study(tiny_config, "random", 0, storage_url, progress=False)
    bayes_opts = dataclasses.replace(tiny_config.strategy.bayes, n_points=50)
    other = tiny_config.with_overrides(
        strategy=dataclasses.replace(tiny_config.strategy, bayes=bayes_opts),
        budget=dataclasses.replace(tiny_config.budget, n_trials=4))
    assert run_study(other, "random", 0, storage_url, progress=False).n_finished == 4


@pytest.mark.parametrize("key, old_value, now", [
    ("gp_refit_every", 1, 5),  # before it, the kernel was refit at every trial
    ("gp_fit_max_points", 0, 64),  # before it, the kernel was fit on every trial
])
def test_a_study_stored_before_a_bayes_key_resumes_only_with_the_old_behaviour(
        tiny_config, storage_url, key, old_value, now):
    run_study(tiny_config, "bayes", 0, storage_url, progress=False)
    # As an earlier tuning-energy stored it: without the key.
    study = load(storage_url, "tiny-bayes-s0")
    stored = study.user_attrs["config"]
    del stored["strategy"]["bayes"][key]
    study.set_user_attr("config", stored)
    more = dataclasses.replace(tiny_config.budget, n_trials=4)
    with pytest.raises(StorageError, match=f"strategy.bayes.{key}: stored {old_value}, now {now}"):
        run_study(tiny_config.with_overrides(budget=more), "bayes", 0, storage_url,
                  progress=False)
    old = tiny_config.with_overrides(budget=more, strategy=dataclasses.replace(
        tiny_config.strategy, bayes=dataclasses.replace(tiny_config.strategy.bayes,
                                                        **{key: old_value})))
    assert run_study(old, "bayes", 0, storage_url, progress=False).n_finished == 4


def raise_on_call(monkeypatch, n: int, exc: BaseException):
    """Make the objective's n-th training (1-based) raise `exc`; the others run for real."""
    real_run = runner_mod.Objective.run
    calls = {"n": 0}

    def run(self, trial, params):
        calls["n"] += 1
        if calls["n"] == n:
            raise exc
        return real_run(self, trial, params)

    monkeypatch.setattr(runner_mod.Objective, "run", run)
    return real_run


def test_ctrl_c_marks_the_trial_fail_and_resume_completes_the_budget(
        tiny_config, storage_url, monkeypatch):
    real_fit = raise_on_call(monkeypatch, 2, KeyboardInterrupt())
    summary = run_study(tiny_config, "random", 0, storage_url, progress=False)
    assert summary.interrupted and summary.n_finished == 1
    states = [t.state for t in load(storage_url).trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL]
    monkeypatch.setattr(runner_mod.Objective, "run", real_fit)
    resumed = run_study(tiny_config, "random", 0, storage_url, progress=False)
    assert resumed.ran_now == 2
    trials = load(storage_url).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert not any(t.state == TrialState.RUNNING for t in trials)


def test_a_crashing_trial_is_fail_with_its_error_and_the_study_goes_on(
        tiny_config, storage_url, monkeypatch):
    raise_on_call(monkeypatch, 1, RuntimeError("out of memory (simulated)"))
    summary = run_study(tiny_config, "random", 0, storage_url, progress=False)
    assert summary.n_finished == 3 and summary.n_failed == 1
    failed = load(storage_url).trials[0]
    assert failed.state == TrialState.FAIL
    assert "out of memory (simulated)" in failed.user_attrs["error"]


def test_five_failures_in_a_row_stop_with_a_clear_error(tiny_config, storage_url, monkeypatch):
    def always(self, trial, params):
        raise ValueError("broken model")

    monkeypatch.setattr(runner_mod.Objective, "run", always)
    with pytest.raises(StudyAborted, match="5 trials in a row failed.*broken model"):
        run_study(tiny_config, "random", 0, storage_url, progress=False)
    assert [t.state for t in load(storage_url).trials] == [TrialState.FAIL] * 5


def test_energy_budget_stops_the_study(storage_url):
    cfg = parse_config(tiny_doc(budget={"n_trials": 50, "max_energy_j": 1e-9}))
    summary = run_study(cfg, "random", 0, storage_url, progress=False)
    assert summary.ran_now == 1 and "energy budget" in summary.stop_reason


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tuning_energy.cli", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kw)


def _wait_for_running(storage_url, name, timeout_s=120.0, max_complete=None):
    """Until a trial is RUNNING after at least one COMPLETE one (and, with `max_complete`,
    no more than that many: a signal sent while the study's last trial runs may land after
    the process has finished it and exited). Polls over one store connection once the
    study exists (a new one per poll took longer than a trial on a loaded CI machine)."""
    deadline = time.time() + timeout_s
    study = None
    while time.time() < deadline:
        if study is None:
            with contextlib.suppress(KeyError):  # not created yet
                study = load(storage_url, name)
        trials = study.get_trials(deepcopy=False) if study is not None else []
        n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
        if n_complete >= 1 and trials[-1].state == TrialState.RUNNING and \
                (max_complete is None or n_complete <= max_complete):
            return
        time.sleep(0.05)
    raise AssertionError("the study never had a trial RUNNING")


def _slow_config(tmp_path, n_trials: int, conv_low: int):
    """slow.toml: 12-epoch trials of 2-3 conv blocks, long enough to signal mid-trial."""
    return write_tiny(tmp_path / "slow.toml", name="slow", train={"epochs": 12, "batch_size": 64},
                      budget={"n_trials": n_trials},
                      search_space={"n_conv": {"type": "int", "low": conv_low, "high": 3}})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_process_resumes_to_exactly_the_budget(tmp_path, sig):
    """Ctrl-C (SIGINT) or kill -9 in the middle of a trial, then the same command again."""
    cfg = _slow_config(tmp_path, n_trials=3, conv_low=2)
    url = f"sqlite:///{tmp_path / 'energy.db'}"
    args = ["study", "--config", str(cfg), "--strategy", "random", "--storage", url,
            "--no-progress"]
    proc = _cli(*args)
    _wait_for_running(url, "slow-random-s0", max_complete=1)  # the 2nd of 3 trials
    os.kill(proc.pid, sig)
    out, _ = proc.communicate(timeout=60)
    trials = load(url, "slow-random-s0").trials
    if sig == signal.SIGINT:
        assert proc.returncode == 130, out
        assert "Resume with the same command" in out
        assert trials[-1].state == TrialState.FAIL
    else:
        assert trials[-1].state == TrialState.RUNNING  # what kill -9 leaves behind
    again = _cli(*args)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    trials = load(url, "slow-random-s0").trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert not any(t.state == TrialState.RUNNING for t in trials)
    if sig == signal.SIGKILL:
        assert "marked 1 trial(s) left RUNNING" in out


def test_cli_errors_are_clear(tmp_path):
    from tuning_energy.cli import main

    assert main(["study", "--strategy", "annealing"]) == 2
    assert main(["study", "--config", str(tmp_path / "none.toml")]) == 2
    assert main(["show", "--storage", "redis://localhost"]) == 2
    assert main(["show", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"]) == 2


def test_cli_error_messages(tmp_path, capsys):
    from tuning_energy.cli import main

    main(["study", "--strategy", "annealing"])
    assert "allowed values are grid, random, bayes" in capsys.readouterr().err
    main(["show", "--storage", "redis://localhost"])
    assert "allowed forms are sqlite:///" in capsys.readouterr().err
    main(["show", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"])
    assert "run `make study`" in capsys.readouterr().err


def test_show_lists_each_study(tiny_config, storage_url, capsys):
    from tuning_energy.cli import main

    run_study(tiny_config, "grid", 1, storage_url, progress=False)
    assert main(["show", "--storage", storage_url]) == 0
    out = capsys.readouterr().out
    assert study_name(tiny_config, "grid", 1) in out and "estimate-cpu-tdp-tree" in out


def test_a_trial_killed_hard_keeps_the_energy_it_spent(tmp_path):
    """kill -9 in the middle of a trial of a single-process (SQLite) run: the energy written
    so far stays on the trial (energy_partial), the next run marks it FAIL, and the totals
    and the analysis count it."""
    from tuning_energy.analysis import trials_table

    cfg = _slow_config(tmp_path, n_trials=1, conv_low=3)
    url = f"sqlite:///{tmp_path / 'energy.db'}"
    args = ["study", "--config", str(cfg), "--strategy", "random", "--storage", url,
            "--no-progress", "--partial-energy-s", "0.3"]
    proc = _cli(*args)
    try:
        deadline = time.monotonic() + 120
        killed, study = None, None
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            if study is None:  # one store connection once the study exists: each poll is
                with contextlib.suppress(KeyError):  # then one query, even on a loaded CI
                    study = load(url, "slow-random-s0")
            for t in study.get_trials(deepcopy=False) if study is not None else ():
                if t.state == TrialState.RUNNING and t.user_attrs.get("energy_partial"):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = t
                    break
            time.sleep(0.05)
        assert killed is not None, "no trial had its energy so far written while it ran: " \
            + (proc.communicate(timeout=60)[0] if proc.poll() is not None else "still running")
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)
    left = load(url, "slow-random-s0").trials[killed.number]
    assert left.state == TrialState.RUNNING  # what kill -9 leaves behind ...
    assert left.user_attrs["energy_partial"] is True  # ... with the energy spent so far
    spent_j = left.user_attrs["energy_j"]
    assert spent_j > 0 and left.user_attrs["energy_method"] == "estimate-cpu-tdp-tree"

    again = _cli(*args[:-2], "--partial-energy-s", "0")  # the rest runs without writes
    try:
        out, _ = again.communicate(timeout=300)
    finally:
        if again.poll() is None:
            again.kill()
            again.communicate(timeout=60)
    assert again.returncode == 0, out
    assert "marked 1 trial(s) left RUNNING" in out
    study = load(url, "slow-random-s0")
    dead = study.trials[killed.number]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["energy_partial"] is True and dead.user_attrs["energy_j"] == spent_j
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 1
    assert not any(t.user_attrs.get("energy_partial") for t in finished)
    # The totals count it: the study's total and the analysis' table.
    every_j = sum(t.user_attrs["energy_j"] for t in study.trials)
    assert study.user_attrs["training_energy_j"] == pytest.approx(every_j)
    from tuning_energy.energy.accounting import charged_total_j

    assert study.user_attrs["total_energy_j"] == pytest.approx(
        charged_total_j(t.user_attrs for t in study.trials))
    assert every_j > sum(t.user_attrs["energy_j"] for t in finished)
    table = trials_table(url, ["slow-random-s0"])
    row = table[table["number"] == killed.number].iloc[0]
    assert row["state"] == "FAIL" and row["energy_j"] == pytest.approx(spent_j)
    assert bool(row["energy_partial"])


def test_partial_energy_interval_must_not_be_negative(tiny_config, storage_url):
    from tuning_energy.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--partial-energy-s\) = -1: .*>= 0 \(0: never\)"):
        run_study(tiny_config, "random", 0, storage_url, progress=False, partial_energy_s=-1)


def test_show_prints_the_charged_energy_and_its_estimate_label(tiny_config, storage_url,
                                                               capsys):
    """`show` gives each study the energy compare gives it (training + proposing + storage)
    and says when any part of it is an estimate."""
    from tuning_energy.cli import main
    from tuning_energy.run.compare import studies_lines
    from tuning_energy.store.storage import open_storage

    run_study(tiny_config, "random", 0, storage_url, progress=False)
    cpu = study_name(tiny_config, "random", 0)
    # A study stored as a GPU machine without readable RAPL stores it: NVML + CPU estimate.
    gpu = optuna.create_study(storage=open_storage(storage_url), study_name="gpu-random-s0")
    method = "nvml-counter+estimate-cpu-tdp-tree"
    for k, v in {"strategy": "random", "seed": 0, "energy_method": method}.items():
        gpu.set_user_attr(k, v)
    for acc in (0.5, 0.7):
        gpu.add_trial(optuna.create_trial(value=acc, user_attrs={
            "energy_j": 10.0, "energy_method": method,
            "energy_by_device_j": {"gpu0": 7.0, "cpu0": 3.0},
            "propose_energy_j": 0.5, "store_energy_j": 0.25}))

    assert main(["show", "--storage", storage_url]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    for name in (cpu, "gpu-random-s0"):
        compared = [line for line in studies_lines(storage_url, [name])
                    if line.startswith(name)][0]
        charged = compared.split()[4]
        assert rows[name].split()[6] == charged  # the figure compare prints
    trained_j = sum(t.user_attrs["energy_j"] for t in load(storage_url, cpu).trials)
    assert float(rows[cpu].split()[6].replace(",", "")) > trained_j  # not training alone
    assert rows["gpu-random-s0"].split()[6] != f"{20.0:,.1f}"
    assert rows[cpu].endswith("estimate-cpu-tdp-tree (ESTIMATE)")
    assert rows["gpu-random-s0"].endswith(f"{method} (partly ESTIMATE)")
    assert "charged J: the training + proposing + storage energy of every finished trial" in out
    assert "partly an ESTIMATE: cpu0 from estimate-cpu-tdp-tree (the rest measured by " \
           "nvml-counter)" in out
    # CO2 of the charged energy, as the study's summary gives it; unknown without an intensity
    summary = run_study(tiny_config, "random", 0, storage_url, progress=False)
    assert rows[cpu].split()[7] == f"{summary.co2_g:.3g}"
    assert rows["gpu-random-s0"].split()[7] == "-"  # it stored no carbon intensity
    assert "CO2 g: of the charged energy, at the study's carbon intensity: world average" in out

