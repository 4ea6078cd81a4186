"""The one-third goal's verdict on ERT: a decision needs enough seeds, and a family-wise
interval for the best of k strategies."""

from __future__ import annotations

import pandas as pd

from tuning_energy.report.compare_report import compare_summary, render_compare_md


def _table(**seeds: list[tuple[float, float]]) -> pd.DataFrame:
    """A trials table with one trial per seed: strategy=[(accuracy, energy J), ...]."""
    rows = [{"comparison": "c", "study": f"c-{s}-s{i}", "strategy": s, "seed": i, "trial": 0,
             "state": "COMPLETE", "accuracy": acc, "energy_j": e, "energy_method": "rapl"}
            for s, values in seeds.items() for i, (acc, e) in enumerate(values)]
    return pd.DataFrame(rows)


def test_one_seed_each_is_too_few_to_establish_anything():
    """1 seed each, S = 1 J and bayes = 10 J: every bootstrap resample is the same seed, the
    CI shrinks to the point 0.1, and the verdict said "established"."""
    result, c = compare_summary(_table(new=[(0.95, 1.0)], bayes=[(0.95, 10.0)]), "c",
                                target=0.9)
    md = render_compare_md(result, c)
    assert "**established**" not in md
    assert "too few seeds" in md
