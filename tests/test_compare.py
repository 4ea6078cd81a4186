"""`tuning-energy compare` on stores that several processes share: each study ends with
exactly its budget, however many comparisons run it at once."""

from __future__ import annotations

import re
import subprocess
import sys

import optuna
from optuna.trial import TrialState

from tuning_energy.cli import main
from tuning_energy.run.workers import WORKER_ATTR
from tuning_energy.store.storage import open_storage

from .conftest import write_tiny


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, create=False))


def test_two_compares_on_one_journal_share_the_budget(tmp_path):
    config = tmp_path / "tiny.toml"
    # 30-epoch trials: both processes are still running when the other starts
    write_tiny(config, target_accuracy=None, train={"epochs": 30}, budget={"n_trials": 6})
    url = f"journal:///{tmp_path / 'store.log'}"
    cmd = [sys.executable, "-m", "tuning_energy.cli", "compare", "--config", str(config),
           "--seeds", "1", "--strategies", "random", "--storage", url, "--no-progress",
           "--out", str(tmp_path / "out")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)
    trials = _study(url, "tiny-random-s0").get_trials()
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 6
    assert len(trials) == 6, [t.state for t in trials]  # none run twice, none failed
    pids = {t.system_attrs[WORKER_ATTR]["pid"] for t in trials}
    assert pids == {p.pid for p in procs}  # both took part: they ran at the same time
    # one process per study keeps the config's torch threads, as on SQLite
    assert _study(url, "tiny-random-s0").user_attrs["torch_threads_per_worker"] == 1


def test_compare_workers_runs_each_study_with_n_workers(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    write_tiny(config, target_accuracy=None, train={"epochs": 30}, budget={"n_trials": 4})
    sqlite = f"sqlite:///{tmp_path / 's.db'}"
    base = ["compare", "--config", str(config), "--seeds", "1", "--strategies", "random",
            "--no-progress", "--out", str(tmp_path / "out")]
    assert main(base + ["--storage", sqlite, "--workers", "2"]) == 2
    assert "journal:///PATH" in capsys.readouterr().err
    url = f"journal:///{tmp_path / 'store.log'}"
    assert main(base + ["--storage", url, "--workers", "2"]) == 0
    study = _study(url, "tiny-random-s0")
    trials = study.get_trials()
    assert study.user_attrs["workers"] == 2
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    # Two worker processes ran the study (which of them took the 4 short trials is a race:
    # one may take all before the other has imported torch).
    started = re.search(r"2 workers on .* \(pids (\d+), (\d+);", capsys.readouterr().out)
    assert started, "no line naming the 2 worker processes"
    pids = {int(started.group(1)), int(started.group(2))}
    assert {t.system_attrs[WORKER_ATTR]["pid"] for t in trials} <= pids


def test_studies_with_a_failed_extra_trial_are_not_all_said_to_have_it():
    """A study resumed after a kill has its killed trial as FAIL beside its budget: the
    header says the range, not the largest count as every study's."""
    from tuning_energy.report.compare_md import trials_per_study

    assert trials_per_study({"trials_per_study": 30, "trials_per_study_min": 30}) == \
        "30 trials"
    assert trials_per_study({"trials_per_study": 31, "trials_per_study_min": 30}) == \
        "30 to 31 trials (failed ones included)"
