"""A comparison: every strategy for every seed of one config, into one store (its
compare.md / compare.json / figures: report/compare_report.py).

Studies run in one process, seeds outer and strategies inner, so that no strategy always
runs first or last on a machine that warms up or heats up. Each study starts with an
unmetered warm-up step (`train.warm_up`, in the runner): the first training in a process
pays one-off costs that would otherwise be charged to whichever trial happens to be first.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

import pandas as pd

from tuning_energy.analysis.metric import best_of, direction_of
from tuning_energy.analysis.table import method_label, trials_table
from tuning_energy.analysis.to_target import (
    charged_what,
    unmeasured_text,
)
from tuning_energy.config import StudyConfig
from tuning_energy.energy.accounting import CHARGED_PARTS, charged_total_j
from tuning_energy.errors import ConfigError
from tuning_energy.run.pool import run_workers
from tuning_energy.run.runner import run_study
from tuning_energy.run.summary import StudySummary
from tuning_energy.run.workers import WorkerOptions, check_workers
from tuning_energy.search.strategies import STRATEGIES, parse_variant


def run_comparison(config: StudyConfig, seeds: int, strategies: Sequence[str] | None = None,
                   storage_url: str = "sqlite:///studies/energy.db", progress: bool = True,
                   out=None, workers: int = 1) -> list[StudySummary]:
    """Run (or resume) `{config.name}-{strategy}-s{seed}` for seeds 0..seeds-1.

    A strategy may carry a pruner, `tpe+asha`: that study runs with `[pruning] pruner =
    "asha"` (named `{config.name}-tpe-asha-s{seed}`), beside the unpruned one.

    Each study runs as `tuning-energy study` runs it: one process (runner.run_study: on
    SQLite under the study's run lock, on journal / PostgreSQL as one worker that claims
    trials under the workers' lock, so that two comparisons running at once on one store
    share each study's budget), or `workers` worker processes (workers.run_workers).
    """
    out = out or sys.stdout
    names = list(strategies) if strategies else list(STRATEGIES)
    variants = [parse_variant(s) for s in names]
    if seeds <= 0:
        raise ConfigError(f"--seeds = {seeds}: must be > 0")
    check_workers(storage_url, workers)
    summaries = []
    for seed in range(seeds):
        for variant in variants:
            summary = run_variant(config, variant, seed, storage_url, progress, out, workers)
            summaries.append(summary)
            if summary.interrupted:
                return summaries
    return summaries


def variant_config(config: StudyConfig, variant: tuple[str, str | None]) -> StudyConfig:
    """The config a variant's study runs: with `[pruning] pruner` set when it has one."""
    pruner = variant[1]
    return config if pruner is None else config.with_overrides(
        pruning=dataclasses.replace(config.pruning, pruner=pruner))


def run_variant(config: StudyConfig, variant: tuple[str, str | None], seed: int,
                storage_url: str, progress: bool = True, out=None,
                workers: int = 1) -> StudySummary:
    """Run (or resume) one study of a comparison: `variant` = (strategy, pruner or None), as
    search.strategies.parse_variant returns it."""
    strategy, _ = variant
    cfg = variant_config(config, variant)
    # one process: SQLite under the run lock, journal / PostgreSQL as one claiming
    # worker (run_study); more: a pool of workers (as `study --workers N`)
    return run_study(cfg, strategy, seed, storage_url, progress=progress,
                     out=out) if workers == 1 else \
        run_workers(cfg, strategy, seed, storage_url, WorkerOptions(n_workers=workers),
                    out=out, progress=progress)


def studies_lines(storage_url: str, names: Sequence[str]) -> list[str]:
    """The table `tuning-energy compare` prints after running `names`, read from the store
    (see study_lines)."""
    return study_lines(trials_table(storage_url, list(names)), names)


def study_lines(trials: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """One line per study: finished (complete + pruned) and failed trials, the best metric
    (accuracy, or a user's, in its direction),
    the search's charged energy (accounting.charged_total_j, as every output counts it) and
    its method, marked when any part is an estimate; then what the energy counts and the
    methods' label (energy.methods)."""
    parts = [c for c in CHARGED_PARTS if c in trials.columns]
    lines = [f"{'study':36} {'trials':>7} {'failed':>6} {'best':>9} {'charged J':>11}  "
             f"method"]
    for name in names:
        t = trials[trials["study"] == name]
        finished = int(t["state"].isin(["COMPLETE", "PRUNED"]).sum())
        failed = int((t["state"] == "FAIL").sum())
        best = "-" if t["accuracy"].isna().all() else \
            f"{best_of(t['accuracy'], direction_of(t)):.4f}"
        low = "≥ " if t["energy_j"].isna().any() else ""  # a trial without training energy
        energy = "-" if t["energy_j"].isna().all() else \
            f"{low}{charged_total_j(t[parts].to_dict('records')):,.1f}"
        lab = method_label(t)
        method = ", ".join(lab.methods) or "-"
        if lab.any_estimate:
            method += " (ESTIMATE)" if lab.fully_estimated else " (partly ESTIMATE)"
        lines.append(f"{name:36} {finished:>7} {failed:>6} {best:>9} {energy:>11}  {method}")
    lines.append(f"charged J: the {charged_what(trials)} energy of every finished trial "
                 f"(complete, pruned and failed)")
    if text := unmeasured_text(trials[trials["study"].isin(list(names))]):
        lines.append(text)
    lab = method_label(trials)
    if lab.any_estimate:
        lines.append(f"energy method {', '.join(lab.methods)}: {lab.text()}")
    return lines
