"""`meter_window_overhead`: one begin+end pair of every meter that builds here.

Each meter kind is built through `tuning_energy.energy.build_meter`, as a study does; a
kind that cannot be built here is listed with its reason.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

from tuning_energy.config import MeterConfig
from tuning_energy.energy import METER_KINDS, build_meter

from .common import Context, interleave, row, say

GOAL_RATIO = 0.001
GOAL_MS = 1.0


def _pairs_s(meter, n: int) -> float:
    """Mean seconds of one begin+end pair over n pairs."""
    t = time.perf_counter()
    for _ in range(n):
        meter.end(meter.begin())
    return (time.perf_counter() - t) / n


def bench_meters(ctx: Context) -> list[dict]:
    trial_s = ctx.reference_trial_s()
    base = dataclasses.replace(ctx.config.meter, idle_s=0.0)
    meters, unavailable = {}, {}
    for kind in METER_KINDS:
        if kind == "auto":
            continue
        try:
            choice = build_meter(dataclasses.replace(base, kind=kind))
            meters[f"{kind} ({choice.meter.method})"] = choice.meter
        except Exception as exc:  # MeterUnavailable, or a device error: say why
            unavailable[kind] = f"{type(exc).__name__}: {exc}"
    if not meters:
        meters["estimate"] = build_meter(MeterConfig(kind="estimate", idle_s=0.0)).meter
    pairs = ctx.n(full=500, quick=50)
    repeats = ctx.n(full=7, quick=3)
    say(f"meter_window_overhead: begin+end pair of {', '.join(meters)}, mean of {pairs} pairs, "
        f"{repeats} interleaved repeats, vs median trial {trial_s:.3f} s; not built here: "
        f"{', '.join(unavailable) or 'none'}")
    try:
        times = interleave({k: (lambda m=m: _pairs_s(m, pairs)) for k, m in meters.items()},
                           repeats)
    finally:
        for m in meters.values():
            m.close()
    per = {}
    for k, ts in times.items():
        s = statistics.median(ts)
        per[k] = {"pair_ms": round(s * 1000, 5), "ratio_to_trial": s / trial_s}
        say(f"  {k:40s} {s * 1e6:9.1f} us per pair  ratio {s / trial_s:.2e}")
    worst = max(per, key=lambda k: per[k]["pair_ms"])
    detail = {"compares": "one meter.begin() + meter.end() pair / median default trial",
              "pairs_per_repeat": pairs, "repeats": repeats, "per_meter": per,
              "worst": worst, "not_built_here": unavailable,
              "median_trial_s": round(trial_s, 4), "trial_s_from": ctx.trial_s_note}
    return [
        row("meter_window_overhead", per[worst]["ratio_to_trial"], "ratio to trial time",
            GOAL_RATIO, "lower", detail),
        row("meter_window_ms", per[worst]["pair_ms"], "ms per begin+end pair", GOAL_MS, "lower",
            {"compares": "slowest available meter's begin+end pair", "meter": worst,
             "per_meter_ms": {k: v["pair_ms"] for k, v in per.items()}}),
    ]
