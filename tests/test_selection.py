"""Every trial's `test_accuracy` (the held-out test set, once, inside the trial's energy
window) and the report's test accuracy of each strategy's selected configuration."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tuning_energy.cli import main
from tuning_energy.cnn import train as train_mod
from tuning_energy.cnn.data import load_dataset
from tuning_energy.cnn.function import CnnObjective
from tuning_energy.config import parse_config
from tuning_energy.energy import EstimateMeter
from tuning_energy.objective.objective import Objective
from tuning_energy.run.runner import run_study

from .conftest import tiny_doc, write_tiny


class RecordingMeter(EstimateMeter):
    """The estimate meter, logging when each window begins and ends."""

    def __init__(self, log: list):
        super().__init__(cpu_tdp_w=10.0, cpu_cores=1)
        self.log = log

    def begin(self):
        w = super().begin()
        self.log.append(("begin", w.id))
        return w

    def end(self, window):
        self.log.append(("end", window.id))
        return super().end(window)


def test_the_test_set_is_evaluated_once_inside_the_trials_energy_window(monkeypatch, tmp_path):
    config = parse_config(tiny_doc())
    data = load_dataset(config.data)
    log: list = []
    real = train_mod.evaluate

    def spy(model, x, y, *a, **k):
        log.append(("test" if x is data.x_test else "validation", None))
        return real(model, x, y, *a, **k)

    monkeypatch.setattr(train_mod, "evaluate", spy)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")
    study.optimize(Objective(config, CnnObjective(config, data), RecordingMeter(log)),
                   n_trials=1)
    trial = study.trials[0]
    assert [e for e, _ in log].count("test") == 1
    training = log[-1][1]  # the trial's window is the last to end
    assert log[-1] == ("end", training)
    assert log.index(("begin", training)) < log.index(("test", None)) < len(log) - 1
    assert 0 <= trial.user_attrs["test_accuracy"] <= 1


def test_every_trial_stores_test_accuracy_and_a_pruned_one_none(storage_url):
    run_study(parse_config(tiny_doc()), "random", 0, storage_url, progress=False)
    capped = parse_config(tiny_doc(name="capped", train={"epochs": 3},
                                   budget={"max_trial_energy_j": 1e-12}))
    run_study(capped, "random", 0, storage_url, progress=False)
    for t in optuna.load_study(study_name="tiny-random-s0", storage=storage_url).trials:
        assert t.state == TrialState.COMPLETE and 0 <= t.user_attrs["test_accuracy"] <= 1
    pruned = optuna.load_study(study_name="capped-random-s0", storage=storage_url).trials
    assert {t.state for t in pruned} == {TrialState.PRUNED}
    assert all(t.user_attrs["test_accuracy"] is None for t in pruned)


def test_selecting_on_the_test_set_says_so_and_test_accuracy_is_the_value(storage_url, capsys):
    import io

    out = io.StringIO()
    config = parse_config(tiny_doc(data={"validation": "test"}))
    run_study(config, "random", 0, storage_url, progress=False, out=out)
    assert "validation = the TEST set" in out.getvalue()
    for t in optuna.load_study(study_name="tiny-random-s0", storage=storage_url).trials:
        assert t.user_attrs["test_accuracy"] == t.value




@pytest.mark.parametrize("validation", ["split", "test"])
def test_the_report_gives_the_test_accuracy_of_each_strategys_pick(tmp_path, validation):
    config = tmp_path / "tiny.toml"
    write_tiny(config, target_accuracy=None, data={"validation": validation})
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    assert main(["compare", "--config", str(config), "--seeds", "1", "--strategies",
                 "random,grid", "--storage", url, "--no-progress",
                 "--out", str(tmp_path / "cmp")]) == 0
    assert main(["figures", "--storage", url, "--out", str(tmp_path / "fig")]) == 0
    report = (tmp_path / "fig" / "report.md").read_text()
    section = report.split("### The selected configurations on the test set")[1]
    table = [line for line in section.splitlines() if line.startswith("| ")][1:3]
    for strategy, line in zip(["grid", "random"], table, strict=True):
        trials = optuna.load_study(study_name=f"tiny-{strategy}-s0", storage=url).trials
        pick = max(trials, key=lambda t: t.value)  # the first of equals: max keeps the first
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == strategy
        assert float(cells[3]) == pytest.approx(pick.user_attrs["test_accuracy"], abs=1e-3)
    assert ("Selected on the test set" in section) == (validation == "test")
