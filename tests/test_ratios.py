"""Energy-to-target ratios against the references (bayes, random, grid), the one-third goal's
verdict, and compare.json / compare.md showing the same numbers from a real store."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest

from tests.conftest import tiny_doc
from tuning_energy import analysis as an
from tuning_energy.analysis import ratio_ci
from tuning_energy.analysis import ratios as rt
from tuning_energy.analysis import verdict as vd
from tuning_energy.config import parse_config
from tuning_energy.report.compare_report import write_compare
from tuning_energy.run.compare import run_comparison

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

WHOLE_SEARCH_J = 500.0  # what a seed that never reaches the target costs


def _ett(**seeds: list[float]) -> pd.DataFrame:
    """analysis.energy_to_target's columns that the ratios read: per strategy, one energy to
    target per seed (inf: never reached; that seed's whole search cost WHOLE_SEARCH_J)."""
    rows = [{"strategy": s, "seed": i, "reached": math.isfinite(e),
             "energy_to_target_j": e if math.isfinite(e) else math.nan,
             "total_energy_j": WHOLE_SEARCH_J}
            for s, values in seeds.items() for i, e in enumerate(values)]
    return pd.DataFrame(rows)


def _verdict(ett: pd.DataFrame) -> dict:
    runs = ett.groupby("strategy").size().to_dict()
    return vd.goal_verdict(rt.ert_ratio_table(ett), runs)


BAYES = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0, 102.0]


@pytest.mark.parametrize("energies, word", [
    ([10.0, 12.0, 9.0, 11.0, 10.0, 13.0, 8.0], "established"),  # 1/10, tight
    ([10.0, 10.0, 11.0, 12.0, 15.0, 20.0, 140.0], "suggested"),  # 0.3, one seed at 1.4x
    ([10.0, 10.0, 11.0, 50.0, 50.0, 55.0, 60.0], "not met"),  # 0.35, resamples at 0.2
    ([80.0, 90.0, 85.0, 95.0, 100.0, 88.0, 92.0], "refuted"),  # 0.9, tight
    ([inf] * 7, "refuted"),  # never reaches the target: infinitely more
])
def test_the_goal_sentence_names_each_outcome(energies, word):
    v = _verdict(_ett(new=energies, bayes=BAYES))
    assert v["word"] == word and v["strategy"] == "new" and v["statistic"] == "ert"
    sentence = vd.goal_sentence(v)
    assert f"is **{word}**" in sentence and "**new**" in sentence
    assert "0 to" not in sentence  # an infinite low end is not shown as 0


def test_the_goal_is_decided_by_the_strongest_strategy():
    """A strategy whose family-wise CI establishes the goal decides it, even when another
    has a lower ERT ratio that only suggests it."""
    ett = _ett(steady=[20.0, 22.0, 21.0, 19.0, 20.0, 23.0, 18.0],  # 0.2, tight: established
               lucky=[5.0, 5.0, 6.0, 7.0, 5.0, 6.0, 100.0],  # 0.19, one seed far off
               bayes=BAYES)
    r = rt.ert_ratio_table(ett).set_index(["strategy", "reference"])
    assert r.loc[("lucky", "bayes"), "ratio"] < r.loc[("steady", "bayes"), "ratio"]
    v = _verdict(ett)
    assert (v["strategy"], v["word"], v["candidates"]) == ("steady", "established", 2)


def test_without_bayes_the_goal_cannot_be_judged():
    ett = _ett(a=[1.0, 2.0, 3.0], random=[3.0, 4.0, 5.0])
    assert list(rt.ert_ratio_table(ett)["reference"]) == ["random"]
    assert "cannot be judged" in vd.goal_sentence(_verdict(ett))


def test_fewer_than_five_seeds_never_decide():
    """Four seeds each, S a tenth of bayes and tight: the CI would say established."""
    v = _verdict(_ett(new=[10.0, 11.0, 9.0, 10.0], bayes=BAYES[:4]))
    assert v["word"] == "too few seeds" and v["seeds"] == 4
    assert "**too few seeds**" in vd.goal_sentence(v)


def test_the_familywise_interval_is_wider_with_more_candidates():
    one = rt.ert_ratio_table(_ett(new=BAYES[::-1], bayes=BAYES))
    many = rt.ert_ratio_table(_ett(new=BAYES[::-1], b=BAYES, c=BAYES, d=BAYES, bayes=BAYES))
    a = one[one["reference"] == "bayes"].iloc[0]
    b = many[(many["reference"] == "bayes") & (many["strategy"] == "new")].iloc[0]
    assert (a["ratio"], a["ci_low"], a["ci_high"]) == (b["ratio"], b["ci_low"], b["ci_high"])
    assert a["fw_level"] == 0.95 and b["fw_level"] == pytest.approx(1 - 0.05 / 4)
    assert b["fw_low"] <= a["fw_low"] and b["fw_high"] >= a["fw_high"]
    assert b["fw_high"] - b["fw_low"] > a["fw_high"] - a["fw_low"]


def test_ratios_json_has_every_strategy_against_every_present_reference():
    ett = _ett(tpe=[1.0, 2.0, 3.0], bayes=[2.0, 4.0, 6.0], random=[inf] * 3, never=[inf] * 3)
    data = rt.ert_ratios_json(rt.ert_ratio_table(ett))
    assert set(data) == {"tpe/bayes", "tpe/random", "bayes/random", "random/bayes",
                         "never/bayes", "never/random"}
    assert data["tpe/bayes"]["ratio"] == pytest.approx(0.5)
    assert data["tpe/random"]["ratio"] == 0.0  # random never reached
    assert data["tpe/random"]["ci95"] == [0.0, 0.0]
    assert data["never/bayes"]["ratio"] is None  # infinitely more: no JSON number
    assert data["never/random"]["ratio"] is None  # undefined
    assert data["never/random"]["ci95"] == [0.0, None]
    medians = rt.median_ratios_json(rt.median_ratio_table(ett))
    assert medians["tpe/bayes"]["median"] == pytest.approx(0.5)


# ---------------------------------------------------------------- compare.json = compare.md

def _md_number(cell: str) -> float | None:
    """A ratio or bound as compare.md's ratio table shows it (None: no number)."""
    if cell in ("unbounded", "-", "not reached") or cell.startswith("undefined"):
        return None
    return float(cell.split(" (")[0])


def test_compare_json_ratios_are_the_numbers_in_compare_md(tmp_path):
    """A real comparison (three strategies x three seeds, SQLite): every S/R of
    compare.json's `ert_ratios` is in compare.md's table with the same ratio and CIs, the
    verdict is compare.json's, and the power section names the strategy the verdict names."""
    config = parse_config(tiny_doc(budget={"n_trials": 4}))
    url = f"sqlite:///{tmp_path / 'energy.db'}"
    run_comparison(config, 3, ["random", "bayes", "tpe"], url, progress=False,
                   out=io.StringIO())
    trials = an.trials_table(url)
    target = float(trials["accuracy"].quantile(0.7))  # some seeds miss it
    write_compare(url, config, tmp_path / "out", target=target)
    raw = (tmp_path / "out" / "compare-tiny.json").read_text()
    assert "Infinity" not in raw and "NaN" not in raw
    data = json.loads(raw)
    md = (tmp_path / "out" / "compare-tiny.md").read_text()
    assert set(data["ert_ratios"]) == {"random/bayes", "tpe/bayes", "tpe/random",
                                       "bayes/random"}
    head = next(ln for ln in md.splitlines() if ln.startswith("| strategy | S/bayes |")
                and "family-wise" in ln)
    columns = [c.strip() for c in head.strip("|").split("|")]
    for key, value in data["ert_ratios"].items():
        strategy, ref = key.split("/")
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {strategy} | ")
                    and ln.count("|") == head.count("|"))
        cells = dict(zip(columns, (c.strip() for c in line.strip("|").split("|")),
                         strict=True))
        shown, stored = [_md_number(cells[f"S/{ref}"])], [value["ratio"]]
        for name, col in (("ci95", "95% CI"), ("ci_familywise", "family-wise CI")):
            lo, hi = cells[f"S/{ref} {col}"].split(" to ")
            shown += [_md_number(lo), _md_number(hi)]
            stored += value[name]
        for s, j in zip(shown, stored, strict=True):
            if j is None:
                assert s is None, (key, shown, stored)
            else:
                assert s == pytest.approx(j, rel=5e-3, abs=5e-4), (key, shown, stored)
    v = data["verdict"]
    assert (v["goal"], v["statistic"], v["reference"], v["candidates"]) == \
        (0.3333, "ert", "bayes", 2)
    assert v["word"] == "too few seeds"  # 3 seeds each
    assert f"is **{v['word']}**" in md and f"**{v['strategy']}**" in md
    assert data["power"]["strategy"] == v["strategy"] and data["power"]["reference"] == "bayes"
    assert "## Seeds needed to decide (power)" in md
    for name, e in data["ert"].items():  # the per-strategy table shows compare.json's ERT
        cell = _row_cells(md, name)[1]
        assert (cell == "not reached") if e["ert_j"] is None else \
            float(cell.lstrip("≥ ").replace(",", "")) == pytest.approx(e["ert_j"], rel=5e-3)
    assert (tmp_path / "out" / "compare-tiny-ecdf.png").stat().st_size > 0
    assert "(compare-tiny-ecdf.png)" in md


def _row_cells(md: str, first: str) -> list[str]:
    """The cells of the first table row of compare.md that starts with `| first |`."""
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]
