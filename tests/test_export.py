"""`tuning-energy export`: the trials table as CSV and Parquet, from a real SQLite store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from tuning_energy.analysis import studies_info, trials_table
from tuning_energy.cli import main
from tuning_energy.config import parse_config
from tuning_energy.report.export import write_table
from tuning_energy.run.runner import run_study

from .conftest import TINY

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A tuning-energy study (3 trials) and a plain Optuna study: 2 COMPLETE, 1 FAIL and one
    trial still RUNNING (asked, never told), which is not a finished trial."""
    url = f"sqlite:///{tmp_path_factory.mktemp('export') / 'energy.db'}"
    run_study(parse_config(TINY), "random", 0, url, progress=False, out=io.StringIO())
    other = optuna.create_study(study_name="plain", storage=url, direction="maximize")
    for x in (0.2, 0.7):
        other.enqueue_trial({"x": x})
    other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    failed = other.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    other.tell(failed, state=TrialState.FAIL)
    other.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # left RUNNING
    return url


def _finished(url: str) -> dict[str, int]:
    """Finished trials per study, counted with plain Optuna."""
    return {s.study_name: len(optuna.load_study(study_name=s.study_name, storage=url)
                              .get_trials(deepcopy=False, states=COUNTED))
            for s in optuna.get_all_study_summaries(url, include_best_trial=False)}


def _missing_as_none(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(object).where(df.notna(), None)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trips_one_row_per_finished_trial(store, tmp_path, capsys, fmt):
    out = tmp_path / "sub" / f"trials.{fmt}"
    assert main(["export", "--storage", store, "--format", fmt, "--out", str(out)]) == 0
    assert f"wrote 6 trials of 2 studies to {out}" in capsys.readouterr().out
    back = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)

    assert back.groupby("study").size().to_dict() == _finished(store) == \
        {"tiny-random-s0": 3, "plain": 3}
    expected = trials_table(store)
    assert list(back.columns) == list(expected.columns)
    for column in ("study", "strategy", "seed", "number", "state", "energy_method",
                   "accuracy", "energy_j", "duration_s", "param_lr", "avg_power_w"):
        assert column in back.columns
    # The same values, a missing one missing (None or NaN); Parquet keeps the number types
    # too, where CSV's readers guess them.
    pd.testing.assert_frame_equal(_missing_as_none(back), _missing_as_none(expected),
                                  check_dtype=False)
    if fmt == "parquet":
        numeric = [c for c in expected.columns if expected[c].dtype.kind in "iuf"]
        assert numeric and (back[numeric].dtypes == expected[numeric].dtypes).all()
    mine = back[back["study"] == "tiny-random-s0"]
    assert (mine["energy_j"] > 0).all() and (mine["energy_method"] == "estimate-cpu-tdp-tree").all()


def test_studies_prefix_selects_and_a_prefix_no_study_has_names_the_studies(store, tmp_path,
                                                                            capsys):
    out = tmp_path / "tiny.csv"  # the format from the suffix
    assert main(["export", "--storage", store, "--studies", "tiny-", "--out", str(out)]) == 0
    assert set(pd.read_csv(out)["study"]) == {"tiny-random-s0"}
    assert main(["export", "--storage", store, "--studies", "tinny", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--studies = 'tinny'" in err and "plain, tiny-random-s0" in err


def test_a_bad_format_is_refused_naming_the_allowed_values(store, tmp_path, capsys):
    out = tmp_path / "trials.xlsx"
    assert main(["export", "--storage", store, "--format", "xlsx", "--out", str(out)]) == 2
    assert "--format = 'xlsx': allowed values are csv, parquet" in capsys.readouterr().err
    assert main(["export", "--storage", store, "--out", str(out)]) == 2  # nor from the suffix
    assert "allowed values are csv, parquet" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_dict_and_list_cells_survive_as_json(store, tmp_path, fmt):
    """A table joined with the studies' setup (`meter` and `hardware` are dicts), as a user
    would before sharing it: the nested cells read back as the same values."""
    info = studies_info(store)[["study", "meter", "hardware"]]
    table = trials_table(store).merge(info, on="study")
    table["tags"] = [["a", 1]] * len(table)
    path = write_table(table, tmp_path / f"t.{fmt}")
    back = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    mine = table["study"] == "tiny-random-s0"
    for column in ("meter", "hardware"):
        decoded = back.loc[mine, column].map(json.loads)
        assert decoded.tolist() == table.loc[mine, column].tolist()
        assert decoded.iloc[0]  # a real, non-empty dict
    assert back["tags"].map(json.loads).tolist() == [["a", 1]] * len(table)
    assert back.loc[~mine, "meter"].isna().all()  # the plain study has none: missing, not "{}"


def test_export_of_a_missing_store_is_a_clear_error(tmp_path: Path, capsys):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["export", "--storage", url, "--out", str(tmp_path / "t.csv")]) == 2
    assert "no store there yet" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
