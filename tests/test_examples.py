"""Each example in examples/ end to end, as its README runs it, on a real SQLite file: the
trials carry the energy attrs, and the analysis reads energy to target in the metric's
direction."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuning_energy import analysis as an
from tuning_energy.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
ENERGY_ATTRS = {"energy_j", "energy_method", "energy_by_device_j", "energy_error",
                "duration_s", "avg_power_w", "idle_power_w", "energy_net_j", "co2_g",
                "propose_s", "propose_energy_j", "run_id", "hardware_id"}


def _study(toml: str, strategy: str, url: str, trials: int, *extra: str) -> None:
    argv = ["study", "--config", str(EXAMPLES / toml), "--strategy", strategy, "--trials",
            str(trials), "--no-progress", "--storage", url, *extra]
    assert main(argv) == 0


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).trials


def _check_energy(trials) -> None:
    for t in trials:
        assert ENERGY_ATTRS <= set(t.user_attrs), ENERGY_ATTRS - set(t.user_attrs)
        assert t.user_attrs["energy_j"] > 0


def test_sklearn_example(storage_url):
    _study("sklearn.toml", "bayes", storage_url, 4)
    trials = _trials(storage_url, "sklearn-svm-bayes-s0")
    _check_energy(trials)
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["n_support"] > 0
               for t in trials)
    assert {t.params["kernel"] for t in trials} <= {"rbf", "poly", "sigmoid"}


def test_torch_example_prunes_through_ctx_report(storage_url):
    _study("torch.toml", "tpe", storage_url, 6)
    trials = _trials(storage_url, "torch-mlp-tpe-median-s0")
    _check_energy(trials)
    assert all(len(t.intermediate_values) >= 1 for t in trials)
    for t in trials:
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["pruned_reason"] == "pruner median"


def test_loss_example_minimises_and_reaches_its_target_at_or_below(storage_url, tmp_path,
                                                                   capsys):
    _study("loss.toml", "tpe", storage_url, 5)
    study = optuna.load_study(study_name="ridge-loss-tpe-s0", storage=storage_url)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.metric_names == ["val_loss"]
    _check_energy(study.trials)

    table = an.trials_table(storage_url)
    assert set(table["metric"]) == {"val_loss"} and set(table["direction"]) == {"minimize"}
    assert (table["target_accuracy"] == 0.55).all()  # [objective] target, in val_loss units
    # By hand: the first trial (finishing order) whose loss is at or below the target, and
    # the charged energy of every trial up to it.
    values = table["accuracy"].tolist()
    target = sorted(values)[len(values) // 2]  # a target some trials reach and some do not
    first = next(i for i, v in enumerate(values) if v <= target)
    ett = an.energy_to_target(table, target).iloc[0]
    assert ett["reached"] and ett["trials_to_target"] == first + 1
    assert ett["energy_to_target_j"] == pytest.approx(table["charged_known_j"][:first + 1].sum())
    assert ett["best_accuracy"] == min(values)
    never = an.energy_to_target(table, min(values) - 1.0).iloc[0]  # below every loss
    assert not never["reached"]

    out = tmp_path / "figures"
    assert main(["figures", "--storage", storage_url, "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "target val_loss 0.5500 (at or below) from the config's objective.target" in \
        report.replace("Target", "target")
    assert "RQ2" not in report and "test set" not in report
    assert (out / "ridge-loss-energy-to-target.png").exists() or \
        any(p.name.endswith("energy-to-target.png") for p in out.iterdir())

    from tuning_energy.report.dashboard import study_note
    note = study_note(study)
    assert "best val_loss" in note and "val_loss (minimized)" in note


def test_plain_optuna_example_is_metered(tmp_path):
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(EXAMPLES / "plain_optuna.py"), url], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "best accuracy 0.9" in out.stdout
    trials = _trials(url, "plain-tpe-s0")
    assert len(trials) == 10
    _check_energy(trials)
    table = an.trials_table(url)
    assert len(table) == 10 and (table["strategy"] == "tpe").all()
    assert (table["target_accuracy"] == 0.95).all()  # metered(target=0.95)
    # the store works with figures and the dashboard's note like one the runner wrote
    out = tmp_path / "figures"
    assert main(["figures", "--storage", url, "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "Target accuracy 0.9500 from the config's target_accuracy" in report
    assert "objective `an Optuna objective (metered)`" in report
    from tuning_energy.report.dashboard import study_note
    note = study_note(optuna.load_study(study_name="plain-tpe-s0", storage=url))
    assert "| best accuracy |" in note and "energy to target 0.9500" in note


@pytest.mark.parametrize("name", ["sklearn.toml", "torch.toml", "loss.toml"])
def test_every_example_config_loads(name):
    from tuning_energy.config import load_config

    config = load_config(EXAMPLES / name)
    assert config.objective.folder == str(EXAMPLES)


def test_the_readme_shows_the_sklearn_example_as_it_is():
    """The README's "Bring your own objective" code is examples/sklearn_digits.py's."""
    import re

    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Bring your own objective\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    assert code.strip() in (EXAMPLES / "sklearn_digits.py").read_text()
    toml = re.findall(r"```toml\n(.*?)```", section, flags=re.S)[0]
    assert 'function = "sklearn_digits:objective"' in toml
