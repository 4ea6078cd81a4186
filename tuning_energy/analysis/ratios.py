"""Each strategy's energy to target relative to the references, and the one-third goal.

One ratio for every output: `analysis.ratio_ci` (median energy to target of S over the
reference's, over seeds; never-reached seeds infinite; percentile bootstrap resampling seeds
within each strategy). compare.json's `"ratios"`, compare.md's tables and its verdict
sentence, and seeds_needed.py's simulated studies all read it from here.

The goal (issue 16): an energy-aware strategy reaches the target with at most one third of
the energy of `bayes`, and the 95% CI of that ratio says so. VERDICTS names the four outcomes
once; `verdict` applies them.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tuning_energy.analysis.stats import ratio_ci
from tuning_energy.analysis.to_target import censored_energy

REFERENCES = ("bayes", "random", "grid")
GOAL_REFERENCE = "bayes"
GOAL_RATIO = 1 / 3
# The outcomes for a ratio S/R against a threshold t (the goal's 1/3, or 1), strongest first.
VERDICTS = {
    "established": "95% CI high end at or below {t}",
    "suggested": "median at or below {t}, CI high end above it",
    "not met": "median above {t} or undefined, CI low end at or below {t}",
    "refuted": "95% CI low end above {t}",
}
RATIO_COLUMNS = ["strategy", "reference", "ratio", "ci_low", "ci_high"]


def verdict(ratio: float, ci_low: float, ci_high: float, threshold: float = GOAL_RATIO) -> str:
    """Which of VERDICTS a ratio S/R with its 95% CI is against `threshold` (nan: undefined,
    a median or bound that does not exist, never satisfies a condition)."""
    if ci_high <= threshold:
        return "established"
    if ci_low > threshold:
        return "refuted"
    if ratio <= threshold:
        return "suggested"
    return "not met"


def ratio_table(ett: pd.DataFrame) -> pd.DataFrame:
    """S/R for every strategy S and every reference R of REFERENCES in `ett` (S != R), from
    `analysis.energy_to_target`'s table: ratio = median(S) / median(R) over seeds (inf: S's
    median seed never reached the target, 0: R's did not, nan: neither), with its 95% CI
    (analysis.ratio_ci; a bound is inf where unbounded)."""
    energy = censored_energy(ett)
    present = set(ett["strategy"])
    rows = []
    for strategy in sorted(present):
        for ref in REFERENCES:
            if ref == strategy or ref not in present:
                continue
            point, lo, hi = ratio_ci(energy[ett["strategy"] == strategy],
                                        energy[ett["strategy"] == ref])
            rows.append({"strategy": strategy, "reference": ref, "ratio": point,
                         "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=RATIO_COLUMNS)


def _json_number(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def ratios_json(table: pd.DataFrame) -> dict[str, Any]:
    """compare.json's `"ratios"`: `"S/R": {"median": float|null, "ci95": [lo, hi]}`; null
    where the value is not a finite number (median: S's median seed never reached the target,
    or neither's did; hi: unbounded)."""
    return {f"{r.strategy}/{r.reference}": {
        "median": _json_number(r.ratio),
        "ci95": [_json_number(r.ci_low), _json_number(r.ci_high)]}
        for r in table.itertuples()}


def goal_candidate(table: pd.DataFrame, reference: str = GOAL_REFERENCE,
                   threshold: float = GOAL_RATIO) -> pd.Series | None:
    """The row S/`reference` that decides the goal: the strongest verdict (a strategy that
    establishes it establishes the goal), then the lowest median ratio, then the lowest CI
    high end. None when no strategy is compared with `reference`."""
    rows = table[table["reference"] == reference]
    if rows.empty:
        return None
    strength = {word: i for i, word in enumerate(VERDICTS)}
    rank = rows.apply(lambda r: strength[verdict(r.ratio, r.ci_low, r.ci_high, threshold)],
                      axis=1)
    ordered = rows.assign(_rank=rank, _ratio=rows["ratio"].fillna(math.inf)) \
        .sort_values(["_rank", "_ratio", "ci_high"], kind="stable")
    return ordered.iloc[0].drop(["_rank", "_ratio"])


def fmt_ratio(v: float) -> str:
    """A ratio or a CI bound as compare.md shows it: 3 significant digits, 'unbounded'
    (inf), '-' (undefined)."""
    if math.isnan(v):
        return "-"
    return "unbounded" if math.isinf(v) else f"{v:.3g}"


def median_text(r: Any) -> str:
    if math.isnan(r.ratio):
        return "undefined (neither reached)"
    if math.isinf(r.ratio):
        return "not reached"
    if r.ratio == 0:
        return f"0 ({r.reference} not reached)"
    return fmt_ratio(r.ratio)


def ci_text(ci_low: float, ci_high: float) -> str:
    return f"{fmt_ratio(ci_low)} to {fmt_ratio(ci_high)}"


def goal_sentence(table: pd.DataFrame, reference: str = GOAL_REFERENCE,
                  threshold: float = GOAL_RATIO, label: str = "1/3") -> str:
    """One sentence: the goal's verdict (VERDICTS) and the strategy that decides it."""
    best = goal_candidate(table, reference, threshold)
    if best is None:
        return (f"The one-third goal cannot be judged: no strategy was compared with "
                f"`{reference}`.")
    word = verdict(best["ratio"], best["ci_low"], best["ci_high"], threshold)
    ratio = best["ratio"]
    if math.isnan(ratio):
        needs = f"has no defined ratio to {reference} (neither median seed reached the target)"
    elif ratio == 0:
        needs = (f"reached the target in its median seed where {reference} did not (ratio 0: "
                 f"{reference}'s median is not reached)")
    elif math.isinf(ratio):
        needs = "did not reach the target in its median seed"
    else:
        needs = f"needs {fmt_ratio(ratio)}x the energy to target of {reference}"
    return (f"The one-third goal (some strategy's {reference} ratio with a 95% CI high end "
            f"at or below {label}) is **{word}** ({VERDICTS[word].format(t=label)}): the best "
            f"of {len(table[table['reference'] == reference])} strategies, "
            f"**{best['strategy']}**, {needs} "
            f"(95% CI {ci_text(best['ci_low'], best['ci_high'])}).")


def ratio_lines(table: pd.DataFrame) -> list[str]:
    """compare.md's table: one row per strategy, S/R median and 95% CI per reference,
    ordered by the goal's ratio (S/bayes)."""
    refs = [r for r in REFERENCES if r in set(table["reference"])]
    if not refs:
        return []
    head = "| strategy | " + " | ".join(f"S/{r} median | S/{r} 95% CI" for r in refs) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(refs))]
    first = refs[0]
    key = table[table["reference"] == first].set_index("strategy")["ratio"]
    strategies = sorted(set(table["strategy"]),
                        key=lambda s: (math.inf if pd.isna(key.get(s, math.nan))
                                       else key[s], s))
    by = {(r.strategy, r.reference): r for r in table.itertuples()}
    for s in strategies:
        cells = []
        for ref in refs:
            r = by.get((s, ref))
            cells += ["(reference)", ""] if r is None else \
                [median_text(r), ci_text(r.ci_low, r.ci_high)]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines
