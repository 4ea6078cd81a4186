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
    """Run the default bayes study in a fresh store; (wall seconds, its finished trials).
    Every finished trial (complete, pruned, failed) is kept in ctx.extra["study_trials"]
    for `search_share_default_bayes`."""
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
    ctx.extra["study_trials"] = (n_trials, study.get_trials(deepcopy=False, states=(
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))
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


# ---------------------------------------------------------------- what the search costs

GOAL_SEARCH_SHARE = 0.02
QUICK_SHARE_TRIALS = 10  # QUICK: enough for 5 GP proposals after the 5 random points


def search_share(trials: list) -> dict[str, float]:
    """Joules of the trials' accounts (accounting.py): proposing, storage, training, and
    what they were charged in all; share = (proposing + storage) / charged."""
    from tuning_energy.energy.accounting import charged_total_j

    attrs = [t.user_attrs for t in trials]
    propose = sum(a.get("propose_energy_j") or 0.0 for a in attrs)
    store = sum(a.get("store_energy_j") or 0.0 for a in attrs)
    train = sum(a.get("energy_j") or 0.0 for a in attrs)
    charged = charged_total_j(attrs)
    return {"proposing_j": propose, "storage_j": store, "training_j": train,
            "charged_j": charged, "share": (propose + store) / charged,
            "propose_s": sum(a.get("propose_s") or 0.0 for a in attrs),
            "store_s": sum(a.get("store_s") or 0.0 for a in attrs)}


def bench_search_share(ctx: Context) -> list[dict]:
    """`search_share_default_bayes`: what the user pays for the search itself on the
    default study: (proposing + storage) / the charged energy of its trials, as its summary
    and every report count them. From default_study_wall's run when it ran (the whole
    study); else a run of its own (QUICK: the first QUICK_SHARE_TRIALS trials)."""
    n_budget = ctx.config.budget.n_trials
    n = QUICK_SHARE_TRIALS if ctx.quick else None  # None: the whole budget
    if (ctx.extra.get("study_trials") or (0,))[0] != n:
        say(f"search_share_default_bayes: the default bayes study via the CLI "
            f"({n or n_budget} trials)")
        run_cli_study(ctx, n, f"share{n or n_budget}")
    ran, trials = ctx.extra["study_trials"]
    got = search_share(trials)
    say(f"  proposing {got['proposing_j']:.3f} J + storage {got['storage_j']:.3f} J of "
        f"{got['charged_j']:.2f} J charged = {got['share']:.4f} ({len(trials)} trials)")
    methods = sorted({str(t.user_attrs.get("energy_method")) for t in trials})
    detail = {
        "compares": "(proposing + storage) / charged energy (training + proposing + storage) "
                    "of every finished trial of the default bayes study, as its summary counts; "
                    "proposing includes building the sampler (its libraries' imports, its "
                    "model template: the run's first trial's setup_energy_j)",
        "setup_j": round(sum(t.user_attrs.get("setup_energy_j") or 0.0 for t in trials), 4),
        # of proposing, the objective's preparation (the CNN's model build: every strategy's)
        "prepare_j": round(sum(t.user_attrs.get("prepare_energy_j") or 0.0 for t in trials), 4),
        "n_trials": len(trials), "quick": ctx.quick,
        **{k: round(v, 4) for k, v in got.items()},
        "energy_method": ", ".join(methods),
        "how": f"one run of `tuning-energy study --strategy bayes` ({ran or n_budget} trials) "
               f"in a fresh SQLite store",
    }
    if got["share"] > GOAL_SEARCH_SHARE:
        detail["why_missed"] = (
            f"proposing {got['proposing_j']:.2f} J ({got['propose_s']:.2f} s; of which the "
            f"sampler's set-up {detail['setup_j']:.2f} J and the model builds "
            f"{detail['prepare_j']:.2f} J) + storage "
            f"{got['storage_j']:.2f} J ({got['store_s']:.2f} s) of {got['charged_j']:.1f} J: "
            f"met when the search's own cost is within {GOAL_SEARCH_SHARE:.0%} of the trials'")
    return [row("search_share_default_bayes", got["share"], "share of charged energy",
                GOAL_SEARCH_SHARE, "lower", detail)]
