"""The trials table as a file: `tuning-energy export --format csv|parquet`.

The table is `analysis.trials_table` (one row per finished trial: COMPLETE, PRUNED and
FAIL; its docstring lists the columns). A study of a user's metric (`[objective] metric`,
e.g. `val_loss`) also gets a column of that name holding its value (the table's `accuracy`
column is the first objective's value whatever its name; `metric` and `direction` say what
it is). In both formats a cell holding a dict, list or tuple
is written as JSON text (`json.loads` gives it back), so such a column reads back alike from
CSV and Parquet; every other column keeps its type in Parquet (pyarrow). Missing values are
empty cells in CSV and nulls in Parquet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tuning_energy.errors import TuningEnergyError
from tuning_energy.store.url import StoreURL

EXPORT_FORMATS = ("csv", "parquet")


def check_format(fmt: str | None, path: str | Path | None = None) -> str:
    """The format (None: from the file's suffix), or a TuningEnergyError naming the allowed
    ones."""
    if fmt is None and path is not None and Path(path).suffix[1:].lower() in EXPORT_FORMATS:
        return Path(path).suffix[1:].lower()
    if fmt not in EXPORT_FORMATS:
        what = f"--format = {fmt!r}" if fmt is not None else \
            f"--format not given and --out = {str(path)!r} does not end in one"
        raise TuningEnergyError(f"{what}: allowed values are {', '.join(EXPORT_FORMATS)}")
    return fmt


def _nested(v: Any) -> bool:
    return isinstance(v, dict | list | tuple)


def _json(v: Any) -> Any:
    return json.dumps(v, sort_keys=True, default=str) if _nested(v) else v


def flat_table(trials: pd.DataFrame) -> pd.DataFrame:
    """A copy of `trials` whose dict / list / tuple cells are JSON text."""
    df = trials.copy()
    for c in df.columns:
        if df[c].dtype == object and df[c].map(_nested).any():
            df[c] = df[c].map(_json)
    return df


def write_table(trials: pd.DataFrame, path: str | Path, fmt: str | None = None) -> Path:
    """Write the trials table to `path` (folders created) as CSV or Parquet (None: from
    the suffix)."""
    fmt = check_format(fmt, path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = flat_table(trials)
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, engine="pyarrow", index=False)
    return path


def export_trials(storage_url: StoreURL | str, path: str | Path, fmt: str | None = None,
                  studies: str | None = None) -> pd.DataFrame:
    """Write the store's trials table (studies whose name starts with `studies`) to `path`;
    the table written. A prefix no study has is an error naming the studies there are."""
    from tuning_energy.analysis.table import studies_info, trials_table

    fmt = check_format(fmt, path)
    trials = trials_table(storage_url, studies)
    if studies is not None and trials.empty and studies_info(storage_url, studies).empty:
        names = studies_info(storage_url).get("study", pd.Series(dtype=str)).tolist()
        raise TuningEnergyError(f"--studies = {studies!r}: no study name starts with it; the "
                                f"store has {', '.join(names) or 'no studies'}")
    trials = with_metric_columns(trials)
    write_table(trials, path, fmt)
    return trials


def with_metric_columns(trials: pd.DataFrame) -> pd.DataFrame:
    """The table with a column per metric other than accuracy, named after it."""
    if "metric" not in trials.columns:
        return trials
    extra = {str(m): trials["accuracy"].where(trials["metric"] == m)
             for m in trials["metric"].dropna().unique()
             if m != "accuracy" and m not in trials.columns}
    return trials.assign(**extra) if extra else trials
