"""The committed results can be recomputed from the committed trials: each comparison's
compare.json under figures/ is what `compare_summary` gives on its trial-level Parquet file
(`tuning-energy export`), number for number, with no store and no rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tuning_energy.report.compare_report import compare_summary

FIGURES = Path(__file__).resolve().parents[1] / "figures"

#: (trials, the compare.json made from them, the comparison's config name)
COMMITTED = [
    ("compare-trials.parquet", "compare.json", "default"),
    ("suite/hgb-trials.parquet", "suite/compare-hgb.json", "hgb"),
    ("suite/mnist1d-trials.parquet", "suite/compare-mnist1d.json", "mnist1d"),
]


@pytest.mark.parametrize("trials,result,name", COMMITTED)
def test_a_committed_comparison_is_recomputed_from_its_committed_trials(trials, result, name):
    committed = json.loads((FIGURES / result).read_text())
    got, _ = compare_summary(pd.read_parquet(FIGURES / trials), name)
    got = json.loads(json.dumps(got))  # as compare writes it: inf and NaN as null
    for key in ("seeds", "target", "ert", "ert_ratios", "verdict", "strategies",
                "median_ratios", "power", "energy_method"):
        assert got[key] == committed[key], key
    assert got["co2_g_total"] == pytest.approx(committed["co2_g_total"], rel=1e-9)


def test_the_suite_table_holds_each_problems_committed_comparison():
    suite = json.loads((FIGURES / "suite.json").read_text())["problems"]
    for _, result, name in COMMITTED:
        committed = json.loads((FIGURES / result).read_text())
        assert suite[name]["ert_ratios"] == committed["ert_ratios"], name
        assert suite[name]["verdict"] == committed["verdict"], name


def test_the_readme_states_each_problems_verdict_as_the_suite_gives_it():
    """README's sentence on the one-third goal and its per-problem lines (the strategy that
    decides the verdict, its ratio and family-wise CI as the reports write them) are
    suite.json's."""
    import re

    from tuning_energy.analysis.ratios import ci_text, fmt_ratio

    readme = (FIGURES.parent / "README.md").read_text()
    suite = json.loads((FIGURES / "suite.json").read_text())["problems"]
    words = {p["verdict"]["word"] for p in suite.values()}
    said = re.search(r"is \*\*(.+?)\*\* on any problem", readme)
    assert said and {said.group(1)} == words, (words, said and said.group(1))
    lines = dict(re.findall(r"^- (\w+): (`.+?` at .+ to .+)$", readme, re.M))
    assert set(lines) == set(suite)
    inf = float("inf")
    for name, p in suite.items():
        v = p["verdict"]
        lo, hi = (inf if x is None else x for x in v["ci_familywise"])
        assert lines[name] == (f"`{v['strategy']}` at {fmt_ratio(v['ratio'])} of `bayes`'s "
                               f"ERT, family-wise CI {ci_text(lo, hi)}"), name
