"""The runtime ECDF (COCO's data profile): its targets and what each curve counts, on a small
trials table worked out by hand."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from tuning_energy.report.ecdf_figure import ecdf_targets, fig_runtime_ecdf


def _trials() -> pd.DataFrame:
    """Strategy a: s0 (0.5 @ 10 J, 0.95 @ 10 J), s1 (0.7 @ 5 J, 0.8 @ 5 J);
    strategy b: s0 (0.6 @ 20 J)."""
    rows = [("a", 0, 0.5, 10.0), ("a", 0, 0.95, 10.0), ("a", 1, 0.7, 5.0), ("a", 1, 0.8, 5.0),
            ("b", 0, 0.6, 20.0)]
    out, count = [], {}
    for strategy, seed, acc, e in rows:
        key = (strategy, seed)
        out.append({"study": f"{strategy}-s{seed}", "strategy": strategy, "seed": seed,
                    "trial": count.get(key, 0), "state": "COMPLETE", "accuracy": acc,
                    "energy_j": e})
        count[key] = count.get(key, 0) + 1
    return pd.DataFrame(out)


def test_targets_run_from_the_median_first_result_to_the_target():
    # first results 0.5, 0.7, 0.6: the easy target is their median, 0.6
    assert ecdf_targets(_trials(), 0.9, 3) == pytest.approx([0.6, 0.75, 0.9])
    assert ecdf_targets(_trials(), 0.55, 5) == [0.55]  # already reached at once: one target
    with pytest.raises(ValueError, match="ECDF targets = 0"):
        ecdf_targets(_trials(), 0.9, 0)


def test_each_curve_ends_at_the_share_of_pairs_reached():
    """Targets 0.6, 0.75, 0.9. a: s0 reaches all three at 20 J, s1 reaches 0.6 (5 J) and 0.75
    (10 J): 5 of 6 pairs. b: s0 reaches 0.6 at 20 J: 1 of 3."""
    fig = fig_runtime_ecdf(_trials(), 0.9, 3)
    lines = {ln.get_label().split(":")[0]: ln for ln in fig.axes[0].get_lines()
             if not ln.get_label().startswith("_")}
    a, b = lines["a"], lines["b"]
    assert a.get_ydata()[-1] == pytest.approx(5 / 6) and b.get_ydata()[-1] == pytest.approx(1 / 3)
    assert "83% of 6 pairs (2 seeds)" in a.get_label()
    # a's steps: 5 J (1 pair), 10 J (2), 20 J (5)
    assert list(a.get_xdata()[1:-1]) == [5, 10, 20, 20, 20]
    assert list(a.get_ydata()[1:-1]) == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
    assert fig.axes[0].get_xscale() == "log"
    plt.close(fig)
