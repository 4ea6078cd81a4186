"""Run a suite: every problem x strategy x seed of `studies/suite.toml` into one store.

The order is seed, then problem, then strategy: a suite stopped part way (Ctrl-C, a
deadline) holds the same seeds of every problem, and no problem or strategy always runs
first on a machine that warms up. Every study is `{problem}-{strategy}-s{seed}`, as
`tuning-energy compare` names it, so that a suite resumes where it stopped (finished studies
are skipped in a moment) and `compare` and `figures` read the same studies.

The default store is a journal in the per-user data folder
($XDG_DATA_HOME/tuning-energy/suite.log, else ~/.local/share/tuning-energy/suite.log):
outside the work tree, kept across runs, several processes may write it at once.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from tuning_energy.config.suite import Problem, Suite
from tuning_energy.run.compare import run_variant, variant_config
from tuning_energy.run.runner import study_name
from tuning_energy.run.summary import StudySummary
from tuning_energy.run.workers import check_workers
from tuning_energy.search.strategies import parse_variant


def default_suite_storage(environ: Mapping[str, str]) -> str:
    """journal:/// URL of the per-user suite store (module doc); the CLI calls it (the edge)."""
    base = environ.get("XDG_DATA_HOME") or ""
    data = Path(base) if base and Path(base).is_absolute() else \
        Path.home() / ".local" / "share"
    return f"journal:///{data / 'tuning-energy' / 'suite.log'}"


def suite_studies(suite: Suite) -> list[tuple[str, str, int]]:
    """(problem, strategy, seed) of every study the suite runs, in running order."""
    most = max(p.seeds for p in suite.problems)
    return [(p.name, s, seed) for seed in range(most) for p in suite.problems
            if seed < p.seeds for s in p.strategies]


def problem_studies(problem: Problem) -> list[str]:
    """The names of the studies the suite runs for `problem` (strategies x seeds)."""
    return [study_name(variant_config(problem.config, v), v[0], seed)
            for seed in range(problem.seeds)
            for v in map(parse_variant, problem.strategies)]


def run_suite(suite: Suite, storage_url: str, progress: bool = True, out=None,
              workers: int = 1) -> list[StudySummary]:
    """Run (or resume) every study of `suite` (suite_studies' order); stop at an interrupt,
    the interrupted study last in the list."""
    out = out or sys.stdout
    check_workers(storage_url, workers)
    problems = {p.name: p for p in suite.problems}
    summaries = []
    plan = suite_studies(suite)
    for i, (name, strategy, seed) in enumerate(plan, 1):
        print(f"[suite {i}/{len(plan)}] {name} {strategy} seed {seed}", file=out, flush=True)
        summary = run_variant(problems[name].config, parse_variant(strategy), seed,
                              storage_url, progress=progress, out=out, workers=workers)
        summaries.append(summary)
        print(f"  {summary.study_name}: {summary.lines()[1].removeprefix('trials').strip()}",
              file=out, flush=True)
        if summary.interrupted:
            break
    return summaries
