"""Energy-to-target ratios against the references (bayes, random, grid), the one-third goal's
verdict, and compare.json / compare.md showing the same numbers from a real store."""

from __future__ import annotations

import io
import json
import math
import re

import pandas as pd
import pytest

from tests.conftest import tiny_doc
from tuning_energy import analysis as an
from tuning_energy.analysis import ratio_ci
from tuning_energy.analysis import ratios as rt
from tuning_energy.config import parse_config
from tuning_energy.run.compare import run_comparison, write_compare

inf = math.inf


def test_ratio_ci_has_no_upper_bound_when_some_resamples_reach_the_target_with_neither():
    """14 of 20 seeds of `a` reached the target, 10 of 20 of `b`. In about 5% of the
    resamples `a`'s median seed never reaches it; in most of those `b`'s does not either, and
    their ratio (inf / inf) is unknown: it may be anything, so the 97.5th percentile is
    unbounded. Dropping those resamples claimed a high end of 1/3 (the goal met)."""
    a = [1.0] * 14 + [inf] * 6
    b = [3.0] * 10 + [inf] * 10
    point, lo, hi = ratio_ci(a, b)
    assert point == 0.0  # b's median seed never reached the target
    assert lo == 0.0 and hi == inf


@pytest.mark.parametrize("a, b, expected", [
    ([inf] * 5, [1.0, 2.0, 3.0, 4.0, 5.0], (inf, inf, inf)),  # a never reaches: inf for sure
    ([1.0, 2.0, 3.0, 4.0, 5.0], [inf] * 5, (0.0, 0.0, 0.0)),  # b never reaches: 0 for sure
    ([inf] * 5, [inf] * 5, (math.nan, 0.0, inf)),  # neither: undefined, any ratio possible
    ([inf] * 5, [inf] * 4 + [1.0], (math.nan, 0.0, inf)),  # b's median reaches it rarely
    ([2.0] * 5, [0.0] * 5, (inf, inf, inf)),  # b reaches it for 0 J
    ([0.0] * 5, [0.0] * 5, (math.nan, 0.0, inf)),  # 0 / 0: undefined
])
def test_ratio_ci_edge_cases(a, b, expected):
    got = ratio_ci(a, b, n_boot=2000)
    assert got == pytest.approx(expected, nan_ok=True)


def test_ratio_ci_of_an_empty_group_is_undefined():
    assert all(math.isnan(v) for v in ratio_ci([], [1.0, 2.0]))


# ---------------------------------------------------------------- the one-third goal

def _ett(**seeds: list[float]) -> pd.DataFrame:
    """analysis.energy_to_target's columns that the ratios read: per strategy, one energy to
    target per seed (inf: never reached)."""
    rows = [{"strategy": s, "seed": i, "reached": math.isfinite(e),
             "energy_to_target_j": e if math.isfinite(e) else math.nan}
            for s, values in seeds.items() for i, e in enumerate(values)]
    return pd.DataFrame(rows)


BAYES = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0, 102.0]


@pytest.mark.parametrize("energies, word", [
    ([10.0, 12.0, 9.0, 11.0, 10.0, 13.0, 8.0], "established"),  # 1/10, tight
    ([10.0, 10.0, 11.0, 12.0, 200.0, 300.0, inf], "suggested"),  # 0.12 but seeds at 2x-inf
    ([10.0, 10.0, 11.0, 50.0, 50.0, 55.0, 60.0], "not met"),  # 0.5, some resamples at 0.1
    ([80.0, 90.0, 85.0, 95.0, 100.0, 88.0, 92.0], "refuted"),  # 0.9, tight
    ([inf] * 7, "refuted"),  # never reaches the target: infinitely more
])
def test_the_goal_sentence_names_each_outcome(energies, word):
    table = rt.ratio_table(_ett(new=energies, bayes=BAYES))
    sentence = rt.goal_sentence(table)
    assert f"is **{word}**" in sentence and "**new**" in sentence
    assert sentence.count(". ") == 0 and sentence.endswith(".")  # one sentence


def test_the_goal_is_decided_by_the_strongest_strategy():
    """A strategy whose CI establishes the goal decides it, even when another has a lower
    median ratio that only suggests it."""
    table = rt.ratio_table(_ett(
        steady=[20.0, 22.0, 21.0, 19.0, 20.0, 23.0, 18.0],  # 0.2, tight: established
        lucky=[5.0, 5.0, 6.0, 7.0, 300.0, inf, inf],  # 0.07, but 3 of 7 seeds far off
        bayes=BAYES))
    r = table.set_index(["strategy", "reference"])
    assert r.loc[("lucky", "bayes"), "ratio"] < r.loc[("steady", "bayes"), "ratio"]
    assert "**steady**" in rt.goal_sentence(table) and "**established**" in \
        rt.goal_sentence(table)


def test_without_bayes_the_goal_cannot_be_judged():
    table = rt.ratio_table(_ett(a=[1.0, 2.0, 3.0], random=[3.0, 4.0, 5.0]))
    assert list(table["reference"]) == ["random"]
    assert "cannot be judged" in rt.goal_sentence(table)


def test_ratios_json_has_every_strategy_against_every_present_reference():
    ett = _ett(tpe=[1.0, 2.0, 3.0], bayes=[2.0, 4.0, 6.0], random=[inf] * 3, never=[inf] * 3)
    data = rt.ratios_json(rt.ratio_table(ett))
    assert set(data) == {"tpe/bayes", "tpe/random", "bayes/random", "random/bayes",
                         "never/bayes", "never/random"}
    assert data["tpe/bayes"]["median"] == pytest.approx(0.5)
    assert data["tpe/random"] == {"median": 0.0, "ci95": [0.0, 0.0]}  # random never reached
    assert data["never/bayes"]["median"] is None  # infinitely more: no JSON number
    assert data["never/random"] == {"median": None, "ci95": [0.0, None]}  # undefined


# ---------------------------------------------------------------- compare.json = compare.md

def _md_number(cell: str) -> float | None:
    """A median or bound as compare.md's ratio table shows it (None: no number)."""
    if cell in ("unbounded", "-", "not reached") or cell.startswith("undefined"):
        return None
    return float(cell.split(" (")[0])


def test_compare_json_ratios_are_the_numbers_in_compare_md(tmp_path):
    """A real comparison (three strategies x three seeds, SQLite): every S/R of
    compare.json's `ratios` is in compare.md's table with the same median and CI, and the
    power section names the strategy the goal sentence names."""
    config = parse_config(tiny_doc(budget={"n_trials": 4}))
    url = f"sqlite:///{tmp_path / 'energy.db'}"
    run_comparison(config, 3, ["random", "bayes", "tpe"], url, progress=False,
                   out=io.StringIO())
    trials = an.trials_table(url)
    target = float(trials["accuracy"].quantile(0.7))  # some seeds miss it
    write_compare(url, config, tmp_path / "out", target=target)
    data = json.loads((tmp_path / "out" / "compare-tiny.json").read_text())
    md = (tmp_path / "out" / "compare-tiny.md").read_text()
    assert set(data["ratios"]) == {"random/bayes", "tpe/bayes", "tpe/random", "bayes/random"}
    head = next(ln for ln in md.splitlines() if ln.startswith("| strategy | S/bayes median"))
    columns = [c.strip() for c in head.strip("|").split("|")]
    for key, value in data["ratios"].items():
        strategy, ref = key.split("/")
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {strategy} | ")
                    and ln.count("|") == head.count("|"))
        cells = dict(zip(columns, (c.strip() for c in line.strip("|").split("|")),
                         strict=True))
        lo, hi = cells[f"S/{ref} 95% CI"].split(" to ")
        shown = [_md_number(cells[f"S/{ref} median"]), _md_number(lo), _md_number(hi)]
        stored = [value["median"], *value["ci95"]]
        for s, j in zip(shown, stored, strict=True):
            if j is None:
                assert s is None, (key, shown, stored)
            else:
                assert s == pytest.approx(j, rel=5e-3, abs=5e-4), (key, shown, stored)
    named = re.search(r"is \*\*([a-z ]+)\*\* .*?\*\*([\w+-]+)\*\*, ", md)
    assert named, md
    assert named.group(1) in rt.VERDICTS
    assert data["power"]["strategy"] == named.group(2) and data["power"]["reference"] == "bayes"
    assert "## Seeds needed to decide (power)" in md


def test_the_goal_sentence_says_why_a_ratio_is_0_instead_of_0x():
    """A reference whose median seed never reached the target gives S/R = 0: the sentence
    must say so, not that S 'needs 0x the energy'."""
    table = pd.DataFrame([{"strategy": "tpe", "reference": "bayes", "ratio": 0.0,
                           "ci_low": 0.0, "ci_high": 0.9}], columns=rt.RATIO_COLUMNS)
    sentence = rt.goal_sentence(table)
    assert "0x" not in sentence
    assert "bayes's median is not reached" in sentence and "**suggested**" in sentence
