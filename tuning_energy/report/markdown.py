"""Markdown for report.md and compare.md: tables of DataFrames and numbers as they are shown
(a lower bound gets "≥")."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "not reached" if v > 0 else "-inf"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


#: Summary columns that are lower bounds where the row's flag column is true (analysis:
#: strategy_summary), shown "≥ X".
LOWER_BOUNDS = {"median_energy_to_target_j": "lower_bound", "ci_low_j": "lower_bound",
                "ci_high_j": "lower_bound", "median_total_energy_j": "total_lower_bound",
                "total_energy_j": "total_lower_bound"}


def md_table(df: pd.DataFrame, columns: dict[str, str], digits: int = 3) -> str:
    """Markdown table of `columns` (name -> header) of df; a finite number in a column of
    LOWER_BOUNDS is shown "≥ X" where the row's flag column (when df has it) is true."""
    head = "| " + " | ".join(columns.values()) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, sep]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_cell(r, c, digits) for c in columns) + " |")
    return "\n".join(lines)


def _cell(row: pd.Series, column: str, digits: int) -> str:
    text = fmt(row[column], digits)
    flag = LOWER_BOUNDS.get(column)
    value = row[column]
    if flag is not None and flag in row.index and bool(row[flag]) and \
            isinstance(value, float) and math.isfinite(value):
        return f"≥ {text}"
    return text


def at_least(bound: bool) -> str:
    """'≥ ' before a lower bound, '' otherwise."""
    return "≥ " if bound else ""


def co2_number(g: float | None, bound: bool = False) -> str:
    """g CO2e as compare.md, report.md and the dashboard note show it (3 significant digits,
    as the run summary and `show`): '≥ ' before a lower bound, '-' when unknown."""
    if g is None or not math.isfinite(g):
        return "-"
    return f"{at_least(bound)}{g:.3g}"


def carbon_sources(sources) -> str:
    """Where the carbon intensity came from, said once: the distinct `carbon_source` study
    attrs (energy/carbon.py: the region's constant or the CSV), '; '-joined."""
    names = sorted({str(s) for s in sources if s is not None and not pd.isna(s) and str(s)})
    return "; ".join(names) or "not recorded on the studies"


def kj(j: float) -> str:
    if math.isinf(j):
        return "not reached"
    return f"{j / 1e3:.3g} kJ" if j >= 1000 else f"{j:.3g} J"
