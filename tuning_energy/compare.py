"""A comparison: every strategy for every seed of one config, into one store.

Studies run in one process, seeds outer and strategies inner, so that no strategy always
runs first or last on a machine that warms up or heats up. Each study starts with an
unmetered warm-up step (`train.warm_up`, in the runner): the first training in a process
pays one-off costs that would otherwise be charged to whichever trial happens to be first.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .config import StudyConfig
from .errors import ConfigError
from .runner import StudySummary, run_study
from .strategies import STRATEGIES, check_strategy


def run_comparison(config: StudyConfig, seeds: int, strategies: Sequence[str] | None = None,
                   storage_url: str = "sqlite:///studies/energy.db", progress: bool = True,
                   out=None) -> list[StudySummary]:
    """Run (or resume) `{config.name}-{strategy}-s{seed}` for seeds 0..seeds-1."""
    out = out or sys.stdout
    names = list(strategies) if strategies else list(STRATEGIES)
    for s in names:
        check_strategy(s)
    if seeds <= 0:
        raise ConfigError(f"--seeds = {seeds}: must be > 0")
    summaries = []
    for seed in range(seeds):
        for strategy in names:
            summary = run_study(config, strategy, seed, storage_url, progress=progress, out=out)
            summaries.append(summary)
            if summary.interrupted:
                return summaries
    return summaries
