"""`propose_scaling`: what the search itself costs as the study grows.

For each size n (16, 64, 128, 256 finished trials; QUICK: 16 and 256) a SQLite store (`open_storage`, as a
study opens it) holds n synthetic COMPLETE trials over the default search space:
`optuna.trial.create_trial` + `study.add_trials`, parameters from a seeded generator,
values from `bench.search.fake_accuracy` (a cheap deterministic function of the
parameters), an `energy_j` attr from `synthetic_energy_j` (bayes-eips needs it) and, in a
second study, the two values (accuracy, energy_j) that `mo` optimises. No training.

Each strategy's sampler (`tuning_energy.search.strategies.make_sampler`, the default config,
seed 0) then proposes one trial: `study.ask()` + the parameters, inside an `estimate`
meter window opened before `ask` and closed after the last parameter, as the runner
charges a proposal. The proposed trial is told FAIL, so the sampler never sees it and
every repeat proposes on the same n finished trials. `bayes` refits its GP kernel every
`gp_refit_every` trials: both kinds of proposal are timed and their average over one refit
cycle is its figure (as `propose_overhead_bayes_64`). The storage round trip is ask + the
parameters (random sampler) and the trial's user attrs in one commit + tell, on a study of
the same n trials. Every (size, strategy) side runs once per round, all interleaved.

Beside `bayes`, in the same interleaved run, `bayes` as it was before (bench.gp_before):
skopt's GP predictive variance (an einsum over candidates x n x n) and the kernel fitted
on every finished trial, against FastGP's triangular solve and the fit on at most the
latest `gp_fit_max_points` (64) trials. What that does to what `bayes` finds is measured
in bench.gp_quality (`gp_cap_quality`).

Rows: `propose_overhead_bayes_256` and `propose_overhead_tpe_256` (proposal / median
default trial, goal <= 0.05; rows are named after the largest size measured). The whole
table (wall time, estimated energy, CPU seconds per proposal) is in their detail, with
what a cap on the GP's kernel fit would cost where bayes misses;
`bench/propose-scaling.png` draws it.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from tuning_energy.energy import EstimateMeter
from tuning_energy.search.strategies import distributions, make_sampler, objectives, suggest_params
from tuning_energy.store.storage import open_storage
from tuning_energy.store.trial_writes import set_user_attrs, written_at_once

from .common import Context, interleave, row, say
from .gp_before import before_config, skopt_variance
from .search import ATTRS, GOAL_PROPOSE, cycle_average, fake_accuracy

SIZES = (16, 64, 128, 256)
QUICK_SIZES = (16, 256)  # make bench QUICK=1: the rows' size and one small one
STRATEGIES = ("bayes", "bayes-eips", "gp", "tpe", "mo", "random")
ROUND_TRIP = "storage round trip"
BAYES_REFIT = "bayes (refitting proposal)"
BEFORE = "bayes before: skopt's GP variance, kernel fit on every trial"
BEFORE_REFIT = "bayes before (refitting proposal)"
FIGURE = "propose-scaling.png"
COLORS = {"bayes": "C0", "bayes-eips": "C1", "gp": "C2", "tpe": "C3", "mo": "C4",
          "random": "C5", ROUND_TRIP: "0.35", BAYES_REFIT: "C0", BEFORE: "C9",
          BEFORE_REFIT: "C9"}


def synthetic_energy_j(p: dict[str, Any]) -> float:
    """A trial's energy as a cheap deterministic function of its parameters: deeper nets
    cost more, as in the default study (about 5-15 J on the estimate meter)."""
    return 4.0 * (1 + p["n_conv"]) * (1 + 0.2 * p["n_linear"]) * (1.1 if p["relu"] else 1.0)


def synthetic_params(space: dict[str, Any], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n points drawn uniformly (log-uniformly for log parameters) from the space."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        p: dict[str, Any] = {}
        for name, d in space.items():
            if isinstance(d, FloatDistribution):
                p[name] = float(math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
                                if d.log else rng.uniform(d.low, d.high))
            elif isinstance(d, IntDistribution):
                p[name] = int(rng.integers(d.low, d.high + 1))
            elif isinstance(d, CategoricalDistribution):
                p[name] = d.choices[int(rng.integers(len(d.choices)))]
            else:  # pragma: no cover - distributions() makes only these
                raise TypeError(f"{name}: unsupported distribution {d!r}")
        out.append(p)
    return out


def add_synthetic(storage, name: str, space: dict[str, Any], points: list[dict[str, Any]],
                  two_values: bool) -> None:
    """Add COMPLETE trials at `points` to study `name` (created if new), one `add_trials`."""
    directions = [d for _, d in objectives("mo")] if two_values else ["maximize"]
    study = optuna.create_study(storage=storage, study_name=name, directions=directions,
                                load_if_exists=True)
    trials = []
    for p in points:
        e = synthetic_energy_j(p)
        values = [fake_accuracy(p), e] if two_values else [fake_accuracy(p)]
        trials.append(optuna.trial.create_trial(
            params=p, distributions=space, values=values,
            user_attrs={"energy_j": e, "energy_method": "synthetic (bench, no training)"}))
    study.add_trials(trials)


def fill_stores(workdir: Path, space: dict[str, Any], sizes: tuple[int, ...],
                with_mo: bool) -> dict[int, dict[str, str]]:
    """Per size n, two SQLite files holding the first n synthetic points: one for the
    proposals (study `single`, and `mo` with two values), one for the storage round trip
    (which adds trials). One store is grown size by size and copied: adding a trial
    through Optuna costs ~20 ms here, so each point is added once."""
    points = synthetic_params(space, max(sizes))
    base = workdir / "scaling-base.db"
    urls: dict[int, dict[str, str]] = {}
    done = 0
    for n in sorted(sizes):
        storage = open_storage(f"sqlite:///{base}")
        add_synthetic(storage, "single", space, points[done:n], two_values=False)
        if with_mo:
            add_synthetic(storage, "mo", space, points[done:n], two_values=True)
        storage.engine.dispose()  # closes the connections: the WAL is checkpointed
        done = n
        urls[n] = {}
        for use in ("propose", "roundtrip"):
            path = workdir / f"scaling-{use}-{n}.db"
            shutil.copyfile(base, path)
            urls[n][use] = f"sqlite:///{path}"
    return urls


def _proposer(ctx: Context, storage, study_name: str, strategy: str,
              refit: bool = False, before: bool = False):
    """A side: propose one trial in a meter window; returns (wall s, estimated J, CPU s)."""
    sampler = make_sampler(strategy, before_config(ctx.config) if before else ctx.config, 0)
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    space = ctx.config.search_space
    meter = EstimateMeter()

    def run() -> tuple[float, float, float]:
        if refit:  # as at every gp_refit_every-th trial (a private field: bench only)
            sampler._kernel_cache = None
        with skopt_variance() if before else contextlib.nullcontext():
            window = meter.begin()
            trial = study.ask()
            suggest_params(trial, space)
            m = meter.end(window)
        study.tell(trial, state=TrialState.FAIL)  # the sampler never sees it
        return m.duration_s, m.energy_j, m.energy_j / meter.watts_per_core_w
    return run


def _round_trip(ctx: Context, storage, study_name: str):
    """A side: ask + parameters (random sampler) and user attrs (one commit, as the
    objective writes them) + tell."""
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=make_sampler("random", ctx.config, 0))
    space = ctx.config.search_space
    meter = EstimateMeter()

    def run() -> tuple[float, float, float]:
        window = meter.begin()
        trial = study.ask()
        with written_at_once(trial):
            suggest_params(trial, space)
            set_user_attrs(trial, ATTRS)
        study.tell(trial, 0.95)
        m = meter.end(window)
        return m.duration_s, m.energy_j, m.energy_j / meter.watts_per_core_w
    return run


def measure(ctx: Context, sizes: tuple[int, ...], strategies: tuple[str, ...],
            repeats: int, before: bool) -> dict[str, Any]:
    """{"raw": {(label, n): [(wall s, J, CPU s), ...]}, "fill_s": seconds to fill the stores}"""
    space = distributions(ctx.config.search_space)
    t = time.perf_counter()
    urls = fill_stores(ctx.workdir, space, sizes, with_mo="mo" in strategies)
    fill_s = round(time.perf_counter() - t, 2)
    sides = {}
    for n in sizes:
        storage = open_storage(urls[n]["propose"])
        for s in strategies:
            name = "mo" if s == "mo" else "single"
            sides[(s, n)] = _proposer(ctx, storage, name, s)
            if s == "bayes":
                sides[(BAYES_REFIT, n)] = _proposer(ctx, storage, name, s, refit=True)
                if before:
                    sides[(BEFORE, n)] = _proposer(ctx, storage, name, s, before=True)
                    sides[(BEFORE_REFIT, n)] = _proposer(ctx, storage, name, s, refit=True,
                                                         before=True)
        sides[(ROUND_TRIP, n)] = _round_trip(ctx, open_storage(urls[n]["roundtrip"]), "single")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # GPSampler: "already converged"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GPSampler / skopt experimental, refit warnings
            raw = interleave(sides, repeats, warmup=1)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {"raw": raw, "fill_s": fill_s}


def _medians(raw: dict) -> dict[tuple[str, int], dict[str, float]]:
    out = {}
    for key, vals in raw.items():
        wall, energy, cpu = zip(*vals, strict=True)
        out[key] = {"wall_s": statistics.median(wall), "energy_j": statistics.median(energy),
                    "cpu_s": statistics.median(cpu)}
    return out


def table(ctx: Context, med: dict, sizes, strategies) -> dict[str, dict[int, dict[str, float]]]:
    """Per line of the figure, per size: median wall s, estimated J and CPU s of one
    proposal (bayes: averaged over a refit cycle)."""
    k = ctx.config.strategy.bayes.gp_refit_every
    lines: dict[str, dict[int, dict[str, float]]] = {}
    refit_of = {"bayes": BAYES_REFIT, BEFORE: BEFORE_REFIT}
    for s in (*strategies, ROUND_TRIP, BEFORE):
        if (s, sizes[0]) not in med:
            continue
        lines[s] = {}
        for n in sizes:
            m = med[(s, n)]
            if s in refit_of:
                r = med[(refit_of[s], n)]
                m = {q: cycle_average(r[q], m[q], k) for q in m}
            lines[s][n] = m
    for s in (BAYES_REFIT, BEFORE_REFIT):
        if (s, sizes[0]) in med:
            lines[s] = {n: med[(s, n)] for n in sizes}
    return lines


LABELS = {"bayes": "bayes now (average over a refit cycle)",
          BEFORE: "bayes before: skopt's GP variance, kernel fit on every trial (average)"}


def _tick(v: float, _pos: int) -> str:
    """Plain numbers on a log axis, only at 1, 2 and 5 x a power of ten."""
    if v <= 0:
        return ""
    lead = round(v / 10 ** math.floor(math.log10(v) + 1e-9), 6)
    return f"{v:g}" if lead in (1, 2, 5) else ""


def plot(lines: dict, trial_s: float, path: Path, note: str) -> None:
    """Log-log: time (left) and estimated energy (right) of one proposal per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(11, 5.4))
    for label, per in lines.items():
        ns = sorted(per)
        style: dict[str, Any] = dict(color=COLORS.get(label), marker="o", lw=1.6)
        if label == ROUND_TRIP:
            style.update(ls="--", marker="s")
        elif label in (BAYES_REFIT, BEFORE_REFIT):
            style.update(ls=":", marker="^", lw=1.2)
        elif label == BEFORE:
            style.update(ls="-.", marker="D", lw=1.2)
        for ax, q, scale in ((ax_t, "wall_s", 1000), (ax_e, "energy_j", 1)):
            ax.plot(ns, [per[n][q] * scale for n in ns], label=LABELS.get(label, label),
                    **style)
    ax_t.axhline(GOAL_PROPOSE * trial_s * 1000, color="red", lw=1, ls="-.",
                 label=f"goal: {GOAL_PROPOSE:g} x median default trial ({trial_s:.2f} s)")
    ns = sorted(next(iter(lines.values())))
    for ax in (ax_t, ax_e):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.yaxis.set_major_formatter(FuncFormatter(_tick))
        ax.yaxis.set_minor_formatter(FuncFormatter(_tick))
        ax.set_xlabel("finished trials in the SQLite store")
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_ylabel("wall time of one proposal (ms)")
    ax_e.set_ylabel("energy of one proposal (J, ESTIMATED)")
    ax_t.set_title("time: study.ask() + the parameters", fontsize=10)
    ax_e.set_title(f"energy: meter 'estimate' (method {EstimateMeter.method}),\n"
                   "CPU s of this process tree x W per core: an estimate", fontsize=10)
    handles, labels = ax_t.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"Cost of one proposal as the study grows (medians of {note})", fontsize=10)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bench_scaling(ctx: Context) -> list[dict]:
    trial_s = ctx.reference_trial_s()
    sizes = tuple(sorted(ctx.extra.get("sizes") or (QUICK_SIZES if ctx.quick else SIZES)))
    strategies = tuple(ctx.extra.get("strategies") or STRATEGIES)
    repeats = ctx.n(full=3, quick=1)
    before = "bayes" in strategies
    say(f"propose_scaling: one proposal of {', '.join(strategies)}"
        f"{' (and bayes before FastGP and the cap)' if before else ''} and the storage round trip "
        f"at {', '.join(map(str, sizes))} finished trials (synthetic, SQLite), all "
        f"interleaved, 1 warm-up + {repeats} repeats, vs median trial {trial_s:.3f} s")
    got = measure(ctx, sizes, strategies, repeats, before)
    lines = table(ctx, _medians(got["raw"]), sizes, strategies)
    say(f"  {'':56s}" + "".join(f"{n:>9d}" for n in sizes) + "  (ms per proposal)")
    for label, per in lines.items():
        say(f"  {label:56s}" + "".join(f"{per[n]['wall_s'] * 1000:9.1f}" for n in sizes))
    load = ctx.extra.get("load_avg_1_5_15")
    note = f"1 warm-up + {repeats} interleaved repeats" + (f"; load average {load[0]:.1f} at the start"
                                               if load else "")
    path = Path(ctx.extra.get("out_dir") or ctx.workdir) / FIGURE
    plot(lines, trial_s, path, note)
    say(f"  wrote {path}")

    detail_table = {label: {str(n): {"wall_ms": round(v["wall_s"] * 1000, 2),
                                     "energy_j": round(v["energy_j"], 5),
                                     "cpu_ms": round(v["cpu_s"] * 1000, 2),
                                     "ratio_to_trial": round(v["wall_s"] / trial_s, 5)}
                            for n, v in per.items()}
                    for label, per in lines.items()}
    n_max = max(sizes)
    common = {
        "repeats": repeats, "warmup": 1, "sizes": list(sizes),
        "median_trial_s": round(trial_s, 4), "trial_s_from": ctx.trial_s_note,
        "energy_method": f"{EstimateMeter.method} (ESTIMATE: CPU seconds of this process tree x "
                         f"{EstimateMeter().watts_per_core_w:g} W per core)",
        "figure": FIGURE, "fill_s": got["fill_s"],
    }
    out = []
    if "bayes" in strategies:
        k = ctx.config.strategy.bayes.gp_refit_every
        out.append(row(f"propose_overhead_bayes_{n_max}",
                       lines["bayes"][n_max]["wall_s"] / trial_s, "ratio to trial time",
                       GOAL_PROPOSE, "lower", {
            "compares": f"bayes proposing trial {n_max + 1} (study.ask + parameters, SQLite, "
                        f"{n_max} synthetic COMPLETE trials) / median default trial",
            "value": f"average over a refit cycle: (one refitting proposal + {k - 1} between "
                     f"refits) / {k}, as propose_overhead_bayes_64",
            **common, "table": detail_table,
            "before": _before_after(lines, trial_s, n_max),
        }))
        out[-1]["detail"]["why_missed"] = _why_missed(lines, trial_s, n_max)
    if "tpe" in strategies:
        out.append(row(f"propose_overhead_tpe_{n_max}", lines["tpe"][n_max]["wall_s"] / trial_s,
                       "ratio to trial time", GOAL_PROPOSE, "lower", {
            "compares": f"tpe (multivariate, constant liar) proposing trial {n_max + 1} on "
                        f"{n_max} synthetic COMPLETE trials in SQLite / median default trial",
            "ratio_by_cpu_time": round(lines["tpe"][n_max]["cpu_s"] / trial_s, 4),
            **common,
            "table": f"in propose_overhead_bayes_{n_max}" if "bayes" in strategies
                     else detail_table,
        }))
        if "random" in strategies:
            out[-1]["detail"]["why_missed"] = (
                f"met from trials of {lines['tpe'][n_max]['wall_s'] / GOAL_PROPOSE:.1f} s on "
                f"(this trial: {trial_s:.2f} s); "
                f"tpe takes {lines['tpe'][n_max]['wall_s'] * 1000:.0f} ms (by CPU time: ratio "
                f"{lines['tpe'][n_max]['cpu_s'] / trial_s:.3g}), of which "
                f"{lines['random'][n_max]['wall_s'] * 1000:.0f} ms are what random pays too "
                "(study.ask and a commit per parameter)")
    out += _versus_rows(lines, n_max, common)
    return out


#: bayes against another strategy at the largest size, same interleaved run: (row suffix,
#: strategy, goal on bayes / it by wall time).
VERSUS = (("gpsampler", "gp", 0.5), ("tpe", "tpe", 1.0))


def _versus_rows(lines: dict, n: int, common: dict[str, Any]) -> list[dict]:
    """`propose_bayes_{n}_vs_gpsampler`, `propose_bayes_{n}_vs_tpe`: a bayes proposal (over
    a refit cycle) / one of Optuna's GPSampler / TPE at n finished trials, timed
    interleaved in this run: what the user pays as the study grows, whatever a trial
    costs."""
    out = []
    for suffix, other, goal in VERSUS:
        if "bayes" not in lines or other not in lines:
            continue
        b, o = lines["bayes"][n], lines[other][n]
        detail = {"compares": f"bayes / {other} proposing trial {n + 1} on {n} synthetic "
                              f"COMPLETE trials in SQLite (study.ask + parameters), medians "
                              f"of the same interleaved run; bayes averaged over a refit cycle",
                  "bayes_wall_ms": round(b["wall_s"] * 1000, 3),
                  f"{other}_wall_ms": round(o["wall_s"] * 1000, 3),
                  "ratio_by_cpu_time": round(b["cpu_s"] / o["cpu_s"], 4),
                  **{k: v for k, v in common.items() if k != "median_trial_s"}}
        ratio = b["wall_s"] / o["wall_s"]
        if ratio > goal:
            detail["why_missed"] = (f"bayes {b['wall_s'] * 1000:.0f} ms vs {other} "
                                    f"{o['wall_s'] * 1000:.0f} ms per proposal at {n} trials")
        out.append(row(f"propose_bayes_{n}_vs_{suffix}", ratio, f"ratio to {other}'s time",
                       goal, "lower", detail))
    return out


def _before_after(lines: dict, trial_s: float, n: int) -> dict[str, Any]:
    """bayes now and before (skopt's GP variance, kernel fit on every trial) at n trials,
    measured side by side: ratios to the median trial by wall and by CPU time."""
    if BEFORE not in lines:
        return {}
    now, old = lines["bayes"][n], lines[BEFORE][n]
    return {"what": "skopt's GaussianProcessRegressor.predict (einsum variance) and "
                    "gp_fit_max_points = 0, in the same interleaved run",
            "ratio_before_by_wall_time": round(old["wall_s"] / trial_s, 4),
            "ratio_now_by_wall_time": round(now["wall_s"] / trial_s, 4),
            "ratio_before_by_cpu_time": round(old["cpu_s"] / trial_s, 4),
            "ratio_now_by_cpu_time": round(now["cpu_s"] / trial_s, 4),
            "speedup_wall": round(old["wall_s"] / now["wall_s"], 2)}


def _why_missed(lines: dict, trial_s: float, n: int) -> str:
    """'-' when bayes meets the goal at n trials, else the trial length from which it is met,
    the floor every strategy pays (random: Optuna's ask and a commit per parameter) and
    bayes before FastGP and the cap, all from this run."""
    now_s = lines["bayes"][n]["wall_s"]
    if now_s <= GOAL_PROPOSE * trial_s:
        return "-"
    text = (f"met from trials of {now_s / GOAL_PROPOSE:.1f} s on (this trial: {trial_s:.2f} s); "
            f"bayes takes {now_s * 1000:.0f} ms at {n} trials (by CPU time: ratio "
            f"{lines['bayes'][n]['cpu_s'] / trial_s:.3g})")
    if "random" in lines:
        floor = lines["random"][n]["wall_s"]
        text += (f", of which {floor * 1000:.0f} ms (ratio {floor / trial_s:.3g}) are what "
                 "random pays too (study.ask and a commit per parameter)")
    if BEFORE in lines:
        text += (f"; before FastGP and the cap it took {lines[BEFORE][n]['wall_s'] * 1000:.0f} "
                 f"ms (ratio {lines[BEFORE][n]['wall_s'] / trial_s:.3g})")
    return text + (". The rest: the GP conditioned on every trial and the acquisition over "
                   "n_points candidates (O(n_points x n^2)), and the kernel fit on at most "
                   "gp_fit_max_points trials every gp_refit_every proposals")
