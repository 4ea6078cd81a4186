"""What every benchmark shares: interleaved timing, result rows, the machine, the context.

Absolute times are not comparable from run to run on a shared, noisy machine, so every
figure is a ratio whose two sides are timed in the same run, interleaved A B A B ...
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuning_energy.config import StudyConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "studies" / "default.toml"


def say(msg: str) -> None:
    print(msg, flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def interleave(sides: dict[str, Callable[[], float]], repeats: int,
               warmup: int = 1) -> dict[str, list[float]]:
    """Run each side `repeats` times, interleaved (A B A B ...); each call returns a number.

    `warmup` rounds run first and are dropped (first-call allocations, caches).
    """
    out: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(warmup + repeats):
        for k, fn in sides.items():
            v = fn()
            if r >= warmup:
                out[k].append(v)
    return out


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
    """A side for `interleave` that returns the seconds `fn` took."""
    def run() -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    return run


def row(name: str, value: float | None, unit: str, goal: float | None, better: str,
        detail: dict[str, Any]) -> dict[str, Any]:
    """One results.json entry."""
    assert better in ("higher", "lower")
    return {"name": name, "value": value, "unit": unit, "goal": goal, "better": better,
            "detail": detail}


def meets(r: dict[str, Any]) -> bool | None:
    if r["value"] is None or r["goal"] is None:
        return None
    return r["value"] >= r["goal"] if r["better"] == "higher" else r["value"] <= r["goal"]


def machine() -> dict[str, Any]:
    """The study's own hardware record, plus what a benchmark reader needs (load, threads)."""
    from tuning_energy.store.runs import hardware_info

    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    return {**hardware_info(),
            "load_avg_1_5_15": [round(x, 2) for x in load] if load else None,
            "torch": torch.__version__, "torch_threads_default": torch.get_num_threads()}


@dataclass
class Context:
    """Settings and measurements shared by the benchmarks of one run."""

    quick: bool
    config: StudyConfig
    workdir: Path
    repeats: int | None = None  # overrides each benchmark's repeat count (smoke tests)
    #: median duration_s of the default study's trials (the trial time ratios divide by)
    trial_s: float | None = None
    trial_s_note: str = ""
    trial_durations_s: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def threads(self) -> int:
        return self.config.train.torch_threads

    def n(self, full: int, quick: int) -> int:
        """Repeat count: full or quick, unless --repeats overrides it."""
        if self.repeats is not None:
            return self.repeats
        return quick if self.quick else full

    def reference_trial_s(self) -> float:
        """Median trial time of the default study (runs a few trials if not known yet)."""
        if self.trial_s is None:
            from .study import measure_trials

            measure_trials(self, n_trials=3 if self.quick else 8)
        assert self.trial_s is not None
        return self.trial_s


def make_context(quick: bool, workdir: Path | None = None, repeats: int | None = None,
                 trial_s: float | None = None) -> Context:
    cfg = load_config(DEFAULT_CONFIG)
    wd = workdir or Path(tempfile.mkdtemp(prefix="tuning-energy-bench-"))
    ctx = Context(quick=quick, config=cfg, workdir=wd, repeats=repeats)
    if trial_s is not None:
        ctx.trial_s = trial_s
        ctx.trial_s_note = f"given on the command line (--trial-s {trial_s:g}), not measured"
    return ctx


def python() -> str:
    return sys.executable
