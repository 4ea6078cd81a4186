"""How many seeds the goal's ERT-ratio interval needs to decide a question, by simulation.

From the observed seeds of a strategy S and a reference R (each seed's cost and success,
ert.seed_costs), simulate studies of n seeds per strategy (n of N_GRID), each seed drawn with
replacement from that strategy's observed seeds, and compute each simulated study's ERT ratio
interval with `ert.ert_ratio_intervals` (as compare.md's) at the level the verdict uses (the family-wise level for the
k candidates, ratios.familywise_level). A question "S/R against t" aims at the decision the
observed ERT ratio points to (verdict.VERDICTS): "established" (high end at or below t) when
the observed ratio is at or below t, else "refuted" (low end above t). The seeds needed: the
smallest n at which at least SHARE of the simulated studies reach that decision, or None
(more than the grid's largest n).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tuning_energy.analysis.ert import ERT_SEED, ert, ert_ratio_intervals, ratio_of
from tuning_energy.analysis.ratios import fmt_ratio
from tuning_energy.analysis.verdict import verdict

N_GRID = (5, 10, 20, 40, 80, 160)
SHARE = 0.8  # a decision counts as reachable at n when this share of simulated studies reach it
N_SIM = 200  # simulated studies per n
N_BOOT = 1000  # bootstrap resamples per simulated study's CI
POWER_SEED = 20_240_416  # fixed: the same store gives the same answer
QUESTIONS = ((1 / 3, "1/3"), (1.0, "1"))


@dataclasses.dataclass(frozen=True)
class Question:
    """One threshold's answer: the decision aimed at, the share of simulated studies reaching
    it at each n of n_grid, and the smallest n where that share is >= `share` (None: more
    than n_grid[-1]; also None with decision None, when the observed ratio is undefined)."""

    label: str
    threshold: float
    observed_ratio: float
    decision: str | None  # "established" or "refuted" (verdict.VERDICTS)
    shares: tuple[float, ...]
    seeds_needed: int | None

    def aim(self) -> str:
        return {"established": f"high end at or below {self.label}",
                "refuted": f"low end above {self.label}"}.get(self.decision or "", "undefined")


@dataclasses.dataclass(frozen=True)
class Power:
    strategy: str
    reference: str
    n_observed: tuple[int, int]  # seeds observed of strategy, reference
    n_grid: tuple[int, ...]
    n_sim: int
    n_boot: int
    share: float
    questions: tuple[Question, ...]
    level: float = 0.95

    def to_json(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "strategy": self.strategy, "reference": self.reference,
            "observed_seeds": {self.strategy: self.n_observed[0],
                               self.reference: self.n_observed[1]},
            "n_grid": list(self.n_grid), "simulations": self.n_sim,
            "bootstrap": self.n_boot, "share_needed": self.share, "level": self.level,
            "statistic": "ert",
            "questions": {q.label: {
                "threshold": q.threshold, "observed_ratio": num(q.observed_ratio),
                "decision": q.decision, "aim": q.aim(), "share": list(q.shares),
                "seeds_needed": q.seeds_needed} for q in self.questions}}


def seeds_needed(a: pd.DataFrame, b: pd.DataFrame, strategy: str = "S",
                 reference: str = "R", questions: Sequence[tuple[float, str]] = QUESTIONS,
                 n_grid: Sequence[int] = N_GRID, n_sim: int = N_SIM, n_boot: int = N_BOOT,
                 share: float = SHARE, seed: int = POWER_SEED, level: float = 0.95) -> Power:
    """The power analysis of the ratio ERT(a) / ERT(b) (module docstring): `a`, `b` the
    observed seeds of `strategy` and `reference` (ert.seed_costs: `cost_j`, `success`);
    `level`: the interval's confidence level."""
    if a.empty or b.empty:
        raise ValueError(f"power: no observed seeds ({strategy}: {len(a)}, "
                         f"{reference}: {len(b)}); both need at least one")
    ca, sa = a["cost_j"].to_numpy(float), a["success"].to_numpy(bool)
    cb, sb = b["cost_j"].to_numpy(float), b["success"].to_numpy(bool)
    observed = float(ratio_of(ert(ca, sa), ert(cb, sb)))
    aims = [None if math.isnan(observed) else
            "established" if observed <= t else "refuted" for t, _ in questions]
    rng = np.random.default_rng(seed)
    boot = np.random.default_rng(ERT_SEED)
    hits = np.zeros((len(questions), len(n_grid)))
    for j, n in enumerate(n_grid):
        ia, ib = rng.integers(0, len(ca), (n_sim, n)), rng.integers(0, len(cb), (n_sim, n))
        for i in range(n_sim):
            x, y = (ca[ia[i]], sa[ia[i]]), (cb[ib[i]], sb[ib[i]])
            point, ((lo, hi),) = ert_ratio_intervals(x, y, (level,), n_boot, boot)
            for k, (t, _) in enumerate(questions):
                hits[k, j] += aims[k] is not None and verdict(point, lo, hi, t) == aims[k]
    shares = hits / n_sim
    out = []
    for k, (t, label) in enumerate(questions):
        enough = [n for n, s in zip(n_grid, shares[k], strict=True) if s >= share]
        out.append(Question(label, t, observed, aims[k], tuple(float(s) for s in shares[k]),
                            enough[0] if enough and aims[k] is not None else None))
    return Power(strategy, reference, (len(ca), len(cb)), tuple(n_grid), n_sim, n_boot, share,
                 tuple(out), level)


def power_lines(p: dict[str, Any]) -> list[str]:
    """compare.md's power section (without its heading), from compare.json's `"power"`
    (Power.to_json), so that both show the same numbers."""
    s, r, obs = p["strategy"], p["reference"], p["observed_seeds"]
    lines = [
        f"Each of {p['simulations']} simulated studies per seed count n draws n seeds per "
        f"strategy, with replacement, from the observed seeds ({obs[s]} seeds of {s}, "
        f"{obs[r]} of {r}: each seed's energy to target, or its whole search's energy where "
        f"it never reached the target) and computes the {s}/{r} ERT ratio's "
        f"{p.get('level', 0.95):.2%} CI, the interval the verdict uses ({p['bootstrap']} "
        f"resamples); the seeds needed are the smallest n "
        f"at which at least {p['share_needed']:.0%} of the simulated studies reach the "
        f"decision the observed ERT ratio points to (the share per n below). This assumes "
        f"that "
        f"more seeds spread as the observed ones did, so with few observed seeds it is a "
        f"rough guide.",
        "",
        "| seeds per strategy | " + " | ".join(str(n) for n in p["n_grid"]) + " |",
        "|" + "---|" * (1 + len(p["n_grid"])),
    ]
    questions = p["questions"]
    for q in questions.values():
        if q["decision"] is not None:
            lines.append(f"| CI {q['aim']} | " + " | ".join(f"{v:.0%}" for v in q["share"])
                         + " |")
    lines.append("")
    for label, q in questions.items():
        if q["decision"] is None:
            lines.append(f"- Against {label}: the observed ERT ratio is undefined (neither "
                         f"strategy reached the target): nothing to decide.")
            continue
        need = q["seeds_needed"] if q["seeds_needed"] is not None else f"> {p['n_grid'][-1]}"
        observed = q["observed_ratio"]
        lines.append(f"- Against {label} (observed ERT ratio "
                     f"{'infinite' if observed is None else fmt_ratio(observed)}): the CI's "
                     f"{q['aim']} needs **{need}** seeds per strategy.")
    lines.append("")
    return lines
