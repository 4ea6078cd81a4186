"""train.deterministic, and resuming studies stored before the new config keys existed."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch

from tuning_energy.cnn.train import set_deterministic
from tuning_energy.config import parse_config
from tuning_energy.errors import ConfigError, StorageError
from tuning_energy.run.runner import run_study

from .conftest import tiny_doc


@pytest.fixture(autouse=True)
def _restore():
    yield
    set_deterministic(False)


def test_deterministic_sets_torch_and_cudnn_and_off_restores_the_defaults():
    set_deterministic(True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


def test_a_study_with_deterministic_true_runs_with_it_and_repeats_itself(tmp_path):
    config = parse_config(tiny_doc(train={"deterministic": True}))
    values = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        run_study(config, "random", 0, url, progress=False)
        assert torch.are_deterministic_algorithms_enabled()
        study = optuna.load_study(study_name="tiny-random-s0", storage=url)
        values.append([t.value for t in study.trials])
    assert values[0] == values[1]
    run_study(parse_config(tiny_doc()), "random", 0, f"sqlite:///{tmp_path}/c.db",
              progress=False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_deterministic_must_be_a_boolean():
    with pytest.raises(ConfigError, match="train.deterministic"):
        parse_config(tiny_doc(train={"deterministic": "yes"}))
    with pytest.raises(ConfigError, match="data.validation.*'split', 'test'"):
        parse_config(tiny_doc(data={"validation": "val"}))
    with pytest.raises(ConfigError, match="data.mirror"):
        parse_config(tiny_doc(data={"mirror": "ftp://example.org/"}))


def _store_as_before(url: str, drop: list[tuple[str, ...]]) -> None:
    """Rewrite the stored config as an older version wrote it: without these keys."""
    study = optuna.load_study(study_name="tiny-random-s0", storage=url)
    config = study.user_attrs["config"]
    for path in drop:
        d = config
        for key in path[:-1]:
            d = d[key]
        d.pop(path[-1])
    study.set_user_attr("config", config)


def test_a_study_stored_before_deterministic_and_environment_resumes(storage_url):
    config = parse_config(tiny_doc())
    run_study(config, "random", 0, storage_url, progress=False)
    _store_as_before(storage_url, [("train", "deterministic"), ("environment",)])
    more = config.with_overrides(budget=dataclasses.replace(config.budget, n_trials=4))
    assert run_study(more, "random", 0, storage_url, progress=False).ran_now == 1


def test_a_study_stored_before_the_validation_split_is_not_resumed(storage_url):
    # Its digits split had no test set: resuming would mix two splits in one study.
    config = parse_config(tiny_doc())
    run_study(config, "random", 0, storage_url, progress=False)
    _store_as_before(storage_url, [("data", "validation")])
    more = config.with_overrides(budget=dataclasses.replace(config.budget, n_trials=4))
    with pytest.raises(StorageError, match="data.validation: stored '\\(absent\\)'"):
        run_study(more, "random", 0, storage_url, progress=False)


def test_where_the_files_are_does_not_stop_a_resume(storage_url, tmp_path):
    config = parse_config(tiny_doc(data={"root": str(tmp_path / "a")}))
    run_study(config, "random", 0, storage_url, progress=False)
    moved = parse_config(tiny_doc(data={"root": str(tmp_path / "b")}, budget={"n_trials": 4}))
    assert run_study(moved, "random", 0, storage_url, progress=False).ran_now == 1
