"""The one-third goal's verdict, on ERT, with a family-wise interval.

The goal (issue 16): some strategy S reaches the target with at most one third of the
expected energy of `bayes`: ERT(S) / ERT(bayes) <= 1/3 (ratios.py). S is picked as the best
of the k candidate strategies compared with bayes, so the interval that decides is the
family-wise one (Bonferroni over the k: the 1 - 0.05/k percentile interval). Were it the
plain 95% CI, k strategies no better than bayes would give one that looks better by luck far
more often than 2.5% of the time (8% for six, simulated).

VERDICTS names the outcomes once; `verdict` applies them; `goal_verdict` picks the strategy
that decides the goal and says which; with fewer than MIN_SEEDS seeds of bayes or of any
candidate the word is "too few seeds", never a decision (with 1 to 3 seeds a bootstrap
interval shrinks towards a point and means nothing).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tuning_energy.analysis.ratios import ci_text, fmt_ratio, json_number

GOAL_REFERENCE = "bayes"
GOAL_RATIO = 1 / 3
GOAL_LABEL = "1/3"
MIN_SEEDS = 5
TOO_FEW = "too few seeds"
NO_REFERENCE = "cannot be judged"
# The outcomes for a ratio S/R against a threshold t (the goal's 1/3, or 1), strongest first,
# on the family-wise interval.
VERDICTS = {
    "established": "family-wise CI high end at or below {t}",
    "suggested": "ERT ratio at or below {t}, family-wise CI high end above it",
    "not met": "ERT ratio above {t} or undefined, family-wise CI low end at or below {t}",
    "refuted": "family-wise CI low end above {t}",
}


def verdict(ratio: float, ci_low: float, ci_high: float, threshold: float = GOAL_RATIO) -> str:
    """Which of VERDICTS a ratio with its interval is against `threshold` (nan: undefined,
    never satisfies a condition)."""
    if ci_high <= threshold:
        return "established"
    if ci_low > threshold:
        return "refuted"
    if ratio <= threshold:
        return "suggested"
    return "not met"


def goal_candidate(table: pd.DataFrame, reference: str = GOAL_REFERENCE,
                   threshold: float = GOAL_RATIO) -> pd.Series | None:
    """The row S/`reference` of ratios.ert_ratio_table that decides the goal: the strongest
    verdict on its family-wise CI (if any strategy establishes the goal, it is established;
    it is refuted only when every strategy refutes it), then the lowest ratio, then the
    lowest family-wise high end. None when no strategy is compared with `reference`."""
    rows = table[table["reference"] == reference]
    if rows.empty:
        return None
    strength = {word: i for i, word in enumerate(VERDICTS)}
    rank = rows.apply(lambda r: strength[verdict(r.ratio, r.fw_low, r.fw_high, threshold)],
                      axis=1)
    ordered = rows.assign(_rank=rank, _ratio=rows["ratio"].fillna(math.inf)) \
        .sort_values(["_rank", "_ratio", "fw_high"], kind="stable")
    return ordered.iloc[0].drop(["_rank", "_ratio"])


def goal_verdict(table: pd.DataFrame, runs: dict[str, int],
                 reference: str = GOAL_REFERENCE, threshold: float = GOAL_RATIO
                 ) -> dict[str, Any]:
    """compare.json's `"verdict"`: goal, statistic ("ert"), reference, strategy (the one that
    decides, ratios.ert_ratio_table's row picked by goal_candidate), word (a VERDICTS key,
    TOO_FEW when bayes or a candidate has fewer than MIN_SEEDS seeds, NO_REFERENCE without
    bayes or another strategy), ratio, ci_familywise [lo, hi] (null: unbounded or
    undefined), level (the family-wise level), candidates (k), min_seeds, seeds (the fewest
    seeds of bayes and the candidates). `runs`: seeds per strategy."""
    out: dict[str, Any] = {"goal": round(threshold, 4), "statistic": "ert",
                           "reference": reference, "strategy": None, "word": NO_REFERENCE,
                           "ratio": None, "ci_familywise": [None, None], "level": None,
                           "candidates": 0, "min_seeds": MIN_SEEDS, "seeds": None}
    best = goal_candidate(table, reference, threshold)
    if best is None:
        return out
    rows = table[table["reference"] == reference]
    seeds = min(runs.get(s, 0) for s in [reference, *rows["strategy"]])
    word = verdict(best["ratio"], best["fw_low"], best["fw_high"], threshold)
    out.update(strategy=best["strategy"], word=TOO_FEW if seeds < MIN_SEEDS else word,
               ratio=json_number(best["ratio"]),
               ci_familywise=[json_number(best["fw_low"]), json_number(best["fw_high"])],
               level=float(best["fw_level"]), candidates=int(best["candidates"]),
               seeds=int(seeds))
    return out


def _bound(v: float | None) -> float:
    """A CI end from compare.json: null is infinite (a low end is 0, never null, where a
    resample's ratio is undefined)."""
    return math.inf if v is None else v


def goal_sentence(v: dict[str, Any], label: str = GOAL_LABEL) -> str:
    """The verdict (goal_verdict's dict) in sentences a reader follows without the issue."""
    ref = v["reference"]
    if v["word"] == NO_REFERENCE:
        return (f"The one-third goal cannot be judged: no strategy was compared with "
                f"`{ref}`.")
    ratio = math.nan if v["ratio"] is None else v["ratio"]
    lo, hi = (_bound(b) for b in v["ci_familywise"])
    if v["ratio"] is None:
        needs = (f"has no finite ERT ratio to {ref} (it never reached the target, or neither "
                 f"did)")
    elif ratio == 0:
        needs = f"reached the target where {ref} never did (ratio 0)"
    else:
        needs = f"needs {fmt_ratio(ratio)}x the expected energy to target of {ref}"
    pick = (f"Of the {v['candidates']} strategies compared with {ref}, "
            f"**{v['strategy']}** decides it (the strongest of their verdicts, then the "
            f"lowest ratio): it {needs} (family-wise {v['level']:.2%} CI "
            f"{ci_text(lo, hi)}).")
    if v["word"] == TOO_FEW:
        return (f"The one-third goal (some strategy's ERT at most {label} of {ref}'s) is "
                f"**{TOO_FEW}** to decide: the fewest seeds of a strategy here is "
                f"{v['seeds']}, and a verdict needs at least {v['min_seeds']} per strategy. "
                + pick)
    why = VERDICTS[v["word"]].format(t=label)
    if v["word"] == "refuted":  # the strongest word was refuted: so was every strategy
        why = f"for each of the {v['candidates']} strategies, its {why}"
    return (f"The one-third goal (some strategy's ERT at most {label} of {ref}'s) is "
            f"**{v['word']}** ({why}). " + pick)
