"""`default_study_wall`: the default bayes study, end to end, as a user runs it.

The study runs in a subprocess through the CLI (`tuning-energy study --strategy bayes`,
what `make study STRATEGY=bayes` runs), so the wall time includes Python start-up,
imports, data loading and every proposal. Its trials' `duration_s` give the median trial
time that the other benchmarks divide by.
"""

from __future__ import annotations

import statistics
import subprocess
import time

import optuna
from optuna.trial import TrialState

from tuning_energy.run.runner import study_name
from tuning_energy.store.storage import open_storage

from .common import DEFAULT_CONFIG, ROOT, Context, python, row, say

GOAL_WALL_S = 180.0


def run_cli_study(ctx: Context, n_trials: int | None, tag: str) -> tuple[float, list]:
    """Run the default bayes study in a fresh store; (wall seconds, its finished trials)."""
    url = f"sqlite:///{ctx.workdir / f'study-{tag}.db'}"
    cmd = [python(), "-m", "tuning_energy.cli", "study", "--config", str(DEFAULT_CONFIG),
           "--strategy", "bayes", "--seed", "0", "--storage", url, "--no-progress"]
    if n_trials is not None:
        cmd += ["--trials", str(n_trials)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall_s = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    for line in proc.stdout.strip().splitlines():
        say(f"    | {line}")
    study = optuna.load_study(study_name=study_name(ctx.config, "bayes", 0),
                              storage=open_storage(url, create=False))
    return wall_s, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _record(ctx: Context, trials: list, note: str) -> None:
    ctx.trial_durations_s = [t.user_attrs["duration_s"] for t in trials]
    ctx.trial_s = statistics.median(ctx.trial_durations_s)
    ctx.trial_s_note = note
    ctx.extra["study_propose_s"] = [t.user_attrs.get("propose_s") or 0.0 for t in trials]


def measure_trials(ctx: Context, n_trials: int) -> float:
    """Run `n_trials` of the default study; set ctx.trial_s; return the wall time."""
    say(f"  reference trial time: running {n_trials} trials of the default bayes study")
    wall_s, trials = run_cli_study(ctx, n_trials, f"ref{n_trials}")
    _record(ctx, trials, f"median duration_s of {len(trials)} trials of the default study "
                         f"(the first {min(n_trials, ctx.config.strategy.bayes.n_initial_points)}"
                         f" are random points)")
    ctx.extra["ref_wall_s"] = wall_s
    ctx.extra["ref_n_trials"] = n_trials
    say(f"  median trial {ctx.trial_s:.3f} s over {len(trials)} trials")
    return wall_s


def bench_default_study_wall(ctx: Context) -> list[dict]:
    n_budget = ctx.config.budget.n_trials
    if not ctx.quick:
        say(f"default_study_wall: the whole default bayes study ({n_budget} trials) via the "
            f"CLI, once, vs {GOAL_WALL_S:.0f} s")
        wall_s, trials = run_cli_study(ctx, None, "full")
        _record(ctx, trials, f"median duration_s of the {len(trials)} trials of the full "
                             "default study run by default_study_wall")
        detail = {"wall_s": round(wall_s, 2), "n_trials": len(trials),
                  "median_trial_s": round(ctx.trial_s, 4),
                  "sum_trial_s": round(sum(ctx.trial_durations_s), 2),
                  "sum_propose_s": round(sum(ctx.extra["study_propose_s"]), 3),
                  "how": "measured: one full run of `tuning-energy study --strategy bayes` "
                         "(what `make study STRATEGY=bayes` runs) in a fresh SQLite store"}
        say(f"  wall {wall_s:.1f} s for {len(trials)} trials")
        return [row("default_study_wall", wall_s / GOAL_WALL_S, "ratio to 180 s", 1.0, "lower",
                    detail)]
    # QUICK: a few trials, then extrapolate.
    n = 3
    say(f"default_study_wall (QUICK): {n} trials via the CLI, extrapolated to {n_budget}")
    if ctx.extra.get("ref_n_trials") == n:  # the reference-trial run already did this
        wall_s = ctx.extra["ref_wall_s"]
    else:
        wall_s = measure_trials(ctx, n)
    durations = ctx.trial_durations_s
    mean_trial = statistics.fmean(durations)
    propose_64 = ctx.extra.get("propose_s_ours")
    n_gp = max(0, n_budget - ctx.config.strategy.bayes.n_initial_points)
    estimate = wall_s + (n_budget - n) * mean_trial + n_gp * (propose_64 or 0.0)
    detail = {"estimated": True,
              "how": f"ESTIMATE (QUICK): wall of a {n}-trial CLI run ({wall_s:.1f} s, start-up "
                     f"included) + {n_budget - n} x mean trial time ({mean_trial:.3f} s) + "
                     f"{n_gp} GP proposals x "
                     + (f"{propose_64:.3f} s (propose_overhead_bayes_64, ours)" if propose_64
                        else "0 s (propose benchmark not run: proposals not counted)"),
              "wall_s_measured": round(wall_s, 2), "n_trials_measured": n}
    say(f"  estimated wall {estimate:.1f} s")
    return [row("default_study_wall", estimate / GOAL_WALL_S, "ratio to 180 s", 1.0, "lower",
                detail)]
