"""`gp_cap_quality`: does fitting the GP kernel on at most 64 trials change what bayes finds?

10 seeds of `bayes` on a noisy stand-in for the default objective (bench.search's
fake_accuracy + a seeded normal error, spread 0.01; no training), each run twice: as
shipped (FastGP, kernel fit on at most `gp_fit_max_points` = 64 trials) and as before
(skopt's GP, kernel fit on every finished trial; bench.gp_before). Reported: how many
proposals are the same (the first 64 must all be: below the cap nothing changes), the
median best (noise-free) value after 64 and after N trials, and the seconds each run
took. Row value: median best after N now / before (goal >= 0.99: no worse than the noise
of the fit). QUICK: 3 seeds x 70 trials; full: 10 seeds x 100.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings

import numpy as np
import optuna

from tuning_energy.search.strategies import make_sampler, suggest_params

from .common import Context, row, say
from .gp_before import before_config, skopt_variance
from .search import fake_accuracy

NOISE = 0.01


def _run(ctx: Context, seed: int, n: int, before: bool) -> tuple[list[dict], list[float], float]:
    """(proposed params, noise-free values, seconds) of one bayes run of n trials."""
    config = before_config(ctx.config) if before else ctx.config
    study = optuna.create_study(direction="maximize",
                                sampler=make_sampler("bayes", config, seed))
    rng = np.random.default_rng(seed)
    params, clean = [], []
    t = time.perf_counter()
    with skopt_variance() if before else contextlib.nullcontext():
        for _ in range(n):
            trial = study.ask()
            p = suggest_params(trial, config.search_space)
            value = fake_accuracy(p)
            study.tell(trial, value + NOISE * float(rng.normal()))
            params.append(p)
            clean.append(value)
    return params, clean, time.perf_counter() - t


def bench_gp_quality(ctx: Context) -> list[dict]:
    seeds, n = (3, 70) if ctx.quick else (10, 100)
    cap = ctx.config.strategy.bayes.gp_fit_max_points
    say(f"gp_cap_quality: bayes now (kernel fit on <= {cap} trials, FastGP) vs before, "
        f"{seeds} seeds x {n} trials of a noisy synthetic objective")
    same_until, best = [], {"now": {cap: [], n: []}, "before": {cap: [], n: []}}
    secs = {"now": 0.0, "before": 0.0}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for seed in range(seeds):
                runs = {}
                for tag in ("now", "before"):  # interleaved per seed
                    runs[tag] = _run(ctx, seed, n, before=(tag == "before"))
                    secs[tag] += runs[tag][2]
                    for k in (cap, n):
                        best[tag][k].append(max(runs[tag][1][:k]))
                a, b = runs["now"][0], runs["before"][0]
                same_until.append(next((i for i, (x, y) in enumerate(zip(a, b, strict=True))
                                        if x != y), n))
    finally:
        optuna.logging.set_verbosity(verbosity)
    med = {tag: {k: statistics.median(v) for k, v in per.items()} for tag, per in best.items()}
    value = med["now"][n] / med["before"][n]
    say(f"  proposals identical up to trial {min(same_until)} (min over seeds); median best "
        f"after {cap}: {med['now'][cap]:.4f} now / {med['before'][cap]:.4f} before, after {n}: "
        f"{med['now'][n]:.4f} / {med['before'][n]:.4f}; {secs['now']:.0f} s / "
        f"{secs['before']:.0f} s")
    return [row("gp_cap_quality", value, "median best now / before", 0.99, "higher", {
        "compares": f"bayes as shipped (FastGP, gp_fit_max_points = {cap}) / bayes before "
                    f"(skopt's GP, kernel fit on every trial): median over {seeds} seeds of "
                    f"the best noise-free value after {n} trials of bench.search.fake_accuracy "
                    f"+ N(0, {NOISE})",
        "seeds": seeds, "trials": n,
        "identical_proposals_until_trial": same_until,
        "median_best": {tag: {str(k): round(v, 5) for k, v in per.items()}
                        for tag, per in med.items()},
        "seconds": {tag: round(v, 1) for tag, v in secs.items()},
    })]
