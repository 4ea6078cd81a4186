"""Each strategy against the references (bayes, random, grid): ERT ratios (the headline) and
median ratios (secondary).

ERT ratio S/R = ERT(S) / ERT(R) (ert.py), with a percentile-bootstrap 95% CI and a
family-wise CI (the seeds of S and of R resampled independently, ert.ert_ratio_ci). The
family-wise CI is the Bonferroni interval for the k strategies compared with R: the
1 - 0.05/k percentile interval, so that the k intervals hold together with 95% confidence
and a claim about the best of the k is not the luck of the pick. compare.json's
`"ert_ratios"`, compare.md's tables, the verdict (verdict.py) and the power analysis
(seeds_needed.py) all read them from here.

The median ratio (median energy to target of S over R's, never-reached seeds infinite;
stats.ratio_ci) is kept as a secondary table: it is undefined whenever half of R's seeds or
more never reach the target.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tuning_energy.analysis.ert import LEVEL, N_BOOT, ert_ratio_ci, seed_costs
from tuning_energy.analysis.stats import ratio_ci
from tuning_energy.analysis.to_target import censored_energy

REFERENCES = ("bayes", "random", "grid")
RATIO_COLUMNS = ["strategy", "reference", "ratio", "ci_low", "ci_high", "fw_low", "fw_high",
                 "candidates", "fw_level"]
MEDIAN_COLUMNS = ["strategy", "reference", "ratio", "ci_low", "ci_high"]


def familywise_level(k: int, level: float = LEVEL) -> float:
    """Bonferroni: the confidence level of each of k intervals that hold together at
    `level` (1 - 0.05/k for 95%)."""
    return 1 - (1 - level) / max(k, 1)


def ert_ratio_table(ett: pd.DataFrame, n_boot: int = N_BOOT) -> pd.DataFrame:
    """ERT(S) / ERT(R) for every strategy S and every reference R of REFERENCES in `ett`
    (`energy_to_target`'s table), S != R: ratio (inf: S never reached the target, 0: R
    never did, nan: neither), its 95% CI (ci_low, ci_high) and its family-wise CI
    (fw_low, fw_high, at fw_level for the `candidates` = k strategies compared with R);
    a bound is inf where unbounded. `n_boot`: bootstrap resamples per ratio."""
    costs = seed_costs(ett)
    present = sorted(set(costs["strategy"]))
    rows = []
    for ref in REFERENCES:
        if ref not in present:
            continue
        k = len(present) - 1
        fw = familywise_level(k)
        for strategy in present:
            if strategy == ref:
                continue
            point, ((lo, hi), (fw_lo, fw_hi)) = ert_ratio_ci(
                costs[costs["strategy"] == strategy], costs[costs["strategy"] == ref],
                (LEVEL, fw), n_boot)
            rows.append({"strategy": strategy, "reference": ref, "ratio": point,
                         "ci_low": lo, "ci_high": hi, "fw_low": fw_lo, "fw_high": fw_hi,
                         "candidates": k, "fw_level": fw})
    return pd.DataFrame(rows, columns=RATIO_COLUMNS)


def json_number(v: float | None) -> float | None:
    """A number for compare.json: null where it is not finite (compare.json's `"nulls"`
    says what null means where)."""
    return float(v) if v is not None and math.isfinite(v) else None


def ert_ratios_json(table: pd.DataFrame) -> dict[str, Any]:
    """compare.json's `"ert_ratios"`: `"S/R": {"ratio", "ci95": [lo, hi], "ci_familywise":
    [lo, hi], "candidates"}`; null where not a finite number (ratio: S never reached the
    target, or neither did, as `"ert"` shows; a high end: unbounded)."""
    return {f"{r.strategy}/{r.reference}": {
        "ratio": json_number(r.ratio),
        "ci95": [json_number(r.ci_low), json_number(r.ci_high)],
        "ci_familywise": [json_number(r.fw_low), json_number(r.fw_high)],
        "candidates": int(r.candidates)}
        for r in table.itertuples()}


def median_ratio_table(ett: pd.DataFrame) -> pd.DataFrame:
    """The secondary table: median(S) / median(R) of the energy to target over seeds (inf:
    S's median seed never reached the target, 0: R's did not, nan: neither), with its 95% CI
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
    return pd.DataFrame(rows, columns=MEDIAN_COLUMNS)


def median_ratios_json(table: pd.DataFrame) -> dict[str, Any]:
    """compare.json's `"median_ratios"`: `"S/R": {"median": float|null, "ci95": [lo, hi]}`;
    null where not a finite number (median: S's median seed never reached the target, or
    neither's did; hi: unbounded)."""
    return {f"{r.strategy}/{r.reference}": {
        "median": json_number(r.ratio),
        "ci95": [json_number(r.ci_low), json_number(r.ci_high)]}
        for r in table.itertuples()}


def fmt_ratio(v: float) -> str:
    """A ratio or a CI bound as compare.md shows it: 3 significant digits, 'unbounded'
    (inf), '-' (undefined)."""
    if math.isnan(v):
        return "-"
    return "unbounded" if math.isinf(v) else f"{v:.3g}"


def ratio_text(ratio: float, reference: str, what: str = "ERT") -> str:
    """A ratio in words where it is not a plain number."""
    if math.isnan(ratio):
        return "undefined (neither reached)"
    if math.isinf(ratio):
        return "not reached"
    if ratio == 0:
        return f"0 ({reference} not reached)" if what == "ERT" else \
            f"0 ({reference} median not reached)"
    return fmt_ratio(ratio)


def ci_text(ci_low: float, ci_high: float) -> str:
    return f"{fmt_ratio(ci_low)} to {fmt_ratio(ci_high)}"


def ratio_lines(table: pd.DataFrame, columns: dict[str, tuple[str, str]],
                what: str = "ERT") -> list[str]:
    """A markdown table: one row per strategy, per reference the ratio and each interval of
    `columns` (header -> (low column, high column)), ordered by the ratio to the first
    reference present."""
    refs = [r for r in REFERENCES if r in set(table["reference"])]
    if not refs:
        return []
    cells_per_ref = 1 + len(columns)
    head = "| strategy | " + " | ".join(
        h for r in refs for h in [f"S/{r}", *(f"S/{r} {c}" for c in columns)]) + " |"
    lines = [head, "|" + "---|" * (1 + cells_per_ref * len(refs))]
    key = table[table["reference"] == refs[0]].set_index("strategy")["ratio"]
    strategies = sorted(set(table["strategy"]),
                        key=lambda s: (math.inf if pd.isna(key.get(s, math.nan))
                                       else key[s], s))
    by = {(r.strategy, r.reference): r for r in table.itertuples()}
    for s in strategies:
        cells = []
        for ref in refs:
            r = by.get((s, ref))
            cells += ["(reference)", *[""] * len(columns)] if r is None else \
                [ratio_text(r.ratio, ref, what),
                 *(ci_text(getattr(r, lo), getattr(r, hi)) for lo, hi in columns.values())]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines
