"""`tuning-energy delete`: the way out of a study whose config changed before any trial
finished, on a real SQLite store and through the real command line (issue 23: 9)."""

from __future__ import annotations

import io
import subprocess
import sys

import optuna
import pytest

from tuning_energy.cli import main
from tuning_energy.config import parse_config
from tuning_energy.energy import build_meter
from tuning_energy.errors import StorageError
from tuning_energy.run.runner import open_study, run_study

from .conftest import REPO, tiny_doc

NAME = "tiny-random-s0"


def _names(url: str) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(url, False)]


def _created_without_trials(url: str) -> None:
    """A study the runner created (config stored) whose first trial never finished."""
    config = parse_config(tiny_doc())
    open_study(config, "random", 0, url, build_meter(config.meter))


def _changed():
    return parse_config(tiny_doc(train={"epochs": 2}, budget={"n_trials": 1}))


def test_the_refusal_of_a_study_without_finished_trials_names_delete(storage_url):
    _created_without_trials(storage_url)
    with pytest.raises(StorageError) as exc:
        run_study(_changed(), "random", 0, storage_url, progress=False, out=io.StringIO())
    assert f"tuning-energy delete --study {NAME} --storage {storage_url}" in str(exc.value)


def test_a_study_with_finished_trials_is_not_offered_for_deletion(storage_url):
    run_study(parse_config(tiny_doc(budget={"n_trials": 1})), "random", 0, storage_url,
              progress=False, out=io.StringIO())
    with pytest.raises(StorageError) as exc:
        run_study(_changed(), "random", 0, storage_url, progress=False, out=io.StringIO())
    assert "delete" not in str(exc.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuning_energy.cli", "delete", *args],
                          cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)


def test_without_a_terminal_it_deletes_only_with_yes(storage_url):
    _created_without_trials(storage_url)
    refused = _cli("--study", NAME, "--storage", storage_url)
    assert refused.returncode == 2 and "add --yes" in refused.stderr
    assert _names(storage_url) == [NAME]
    done = _cli("--study", NAME, "--storage", storage_url, "--yes")
    assert done.returncode == 0, done.stderr
    assert f"deleted study {NAME!r}" in done.stdout and _names(storage_url) == []
    # the way out worked: the changed config now runs as a new study
    assert run_study(_changed(), "random", 0, storage_url, progress=False,
                     out=io.StringIO()).ran_now == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer, deleted", [("n\n", False), ("\n", False), ("y\n", True)])
def test_on_a_terminal_it_asks(storage_url, monkeypatch, capsys, answer, deleted):
    _created_without_trials(storage_url)
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))
    rc = main(["delete", "--study", NAME, "--storage", storage_url])
    assert "[y/N]" in capsys.readouterr().out
    assert (rc, _names(storage_url)) == ((0, []) if deleted else (1, [NAME]))


def test_an_unknown_study_is_named_with_those_that_exist(storage_url, capsys):
    _created_without_trials(storage_url)
    assert main(["delete", "--study", "nope", "--storage", storage_url, "--yes"]) == 2
    assert "--study = 'nope': no such study" in capsys.readouterr().err
    assert _names(storage_url) == [NAME]
