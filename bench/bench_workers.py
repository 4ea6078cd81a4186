"""Benchmark: trials per hour and energy per trial with 1 and 2 workers, journal and
PostgreSQL, and the sampler + storage overhead per trial as a share of the trial.

    python bench/bench_workers.py [--trials 6] [--epochs 3] [--strategy random]
                                  [--postgres URL]   # default: scripts/postgres.sh start

Not a test. Each configuration runs a fresh study on the tiny digits CNN with the meter in
the config (here the `estimate` meter: CPU seconds x watts per core, labelled as such).

- trials_per_h: finished trials / (last trial's end - first trial's start), i.e. steady
  state without process start-up; `wall_s` includes start-up (spawn, imports, data).
- energy_per_trial_j: mean energy_j of the finished trials (the meter's method printed).
- overhead_ratio: per trial, (trial wall time in the store - metered training time) /
  trial wall time: what proposing parameters and talking to the store cost, as a share.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from optuna.trial import TrialState  # noqa: E402

from tuning_energy.config import parse_config  # noqa: E402
from tuning_energy.run.pool import WorkerPool, run_workers  # noqa: E402
from tuning_energy.run.workers import WorkerOptions  # noqa: E402
from tuning_energy.store.url import redact  # noqa: E402


def config(name: str, trials: int, epochs: int):
    return parse_config({
        "name": name,
        "data": {"dataset": "digits"},
        "train": {"epochs": epochs, "batch_size": 64, "torch_threads": 1, "device": "cpu"},
        "budget": {"n_trials": trials},
        "meter": {"kind": "estimate", "idle_s": 0},
        "strategy": {"bayes": {"n_initial_points": 2, "n_points": 200}},
        "fixed": {"n_conv": 1},
        "search_space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
                         "beta1": {"type": "float", "low": 0.5, "high": 0.95}},
    })


def run(url: str, workers: int, trials: int, epochs: int, strategy: str) -> dict:
    cfg = config(f"bench{uuid.uuid4().hex[:6]}", trials, epochs)
    options = WorkerOptions(n_workers=workers, heartbeat_interval_s=5, grace_period_s=15)
    t0 = time.perf_counter()
    if workers == 1:
        run_workers(cfg, strategy, 0, url, options, progress=False, out=open("/dev/null", "w"))
        import optuna

        from tuning_energy.store.storage import open_storage

        study = optuna.load_study(study_name=f"{cfg.name}-{strategy}-s0", storage=open_storage(url))
    else:
        pool = WorkerPool(cfg, strategy, 0, url, options, out=open("/dev/null", "w"))
        pool.start()
        pool.wait()
        study = pool.study
    wall_s = time.perf_counter() - t0
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    span_s = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done))
    span_s = span_s.total_seconds()
    trial_s = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    overhead = [(w - t.user_attrs["duration_s"]) / w for w, t in zip(trial_s, done, strict=True)]
    return {
        "storage": url.split(":", 1)[0], "workers": workers, "trials": len(done),
        "wall_s": wall_s, "trials_per_h": len(done) / span_s * 3600,
        "energy_per_trial_j": statistics.mean(t.user_attrs["energy_j"] for t in done),
        "method": done[0].user_attrs["energy_method"],
        "overhead_ratio": statistics.median(overhead),
        "propose_s": statistics.median(t.user_attrs["propose_s"] for t in done),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--strategy", default="random")
    ap.add_argument("--postgres", default=None)
    args = ap.parse_args()
    pg = args.postgres or subprocess.run(
        ["bash", str(REPO / "scripts/postgres.sh"), "start"], check=True, capture_output=True,
        text=True).stdout.strip().splitlines()[-1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    run(f"journal:///{tmp / 'warm.log'}", 1, 1, args.epochs, args.strategy)  # imports, data
    rows = []
    for url in (f"journal:///{tmp / 'bench.log'}", pg):
        for workers in (1, 2):
            rows.append(run(url, workers, args.trials, args.epochs, args.strategy))
            print(f"done: {redact(url)} x{workers}", file=sys.stderr)
    print(f"{args.trials} trials, {args.epochs} epochs, strategy {args.strategy}; "
          f"energy method {rows[0]['method']}")
    print(f"{'storage':10} {'workers':>7} {'trials/h':>9} {'x vs 1':>7} {'J/trial':>8} "
          f"{'overhead':>9} {'propose s':>9} {'wall s':>7}")
    base = {}
    for r in rows:
        base.setdefault(r["storage"], r["trials_per_h"])
        print(f"{r['storage']:10} {r['workers']:>7} {r['trials_per_h']:>9.0f} "
              f"{r['trials_per_h'] / base[r['storage']]:>7.2f} {r['energy_per_trial_j']:>8.2f} "
              f"{r['overhead_ratio']:>9.1%} {r['propose_s']:>9.3f} {r['wall_s']:>7.1f}")


if __name__ == "__main__":
    main()
