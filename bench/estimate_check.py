"""Does a study land inside its pre-flight estimate? `python -m bench.estimate_check`.

For each problem: one `estimate` (its calibration run now, on this machine), then every
study of that problem already in a comparison store: its real charged energy against the
estimate's 80% interval. Writes bench/estimate-check.json (one row per problem x strategy:
studies, inside, below, above, the real median and the interval) and
bench/estimate-check.png, misses included. Pruned strategies (`+median`, ...) are shown but
their bill is expected below the interval: the estimate counts every trial in full.

    python -m bench.estimate_check --problem studies/default.toml=journal:////path/default.journal

STORE may also be a trials table that `tuning-energy export` wrote (a .parquet or .csv file):
the committed comparisons keep their trials that way (figures/compare-trials.parquet,
figures/suite/*-trials.parquet), so the check can be rerun without their stores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna
import pandas as pd

from tuning_energy.analysis.projection import project
from tuning_energy.analysis.table import trials_table
from tuning_energy.analysis.to_target import with_charged_energy
from tuning_energy.config import load_config
from tuning_energy.run.estimate import calibrate, steps_per_trial

HERE = Path(__file__).resolve().parent


def _trials(source: str) -> pd.DataFrame:
    """The trials table of a store URL, or of a file `tuning-energy export` wrote."""
    if source.endswith(".parquet"):
        return pd.read_parquet(source)
    if source.endswith(".csv"):
        return pd.read_csv(source)
    return trials_table(source)


def check(config_path: str, storage_url: str) -> list[dict]:
    config = load_config(config_path)
    trials = with_charged_energy(_trials(storage_url))
    trials = trials[trials["study"].str.startswith(f"{config.name}-")]
    points, flops, calibration_j, _, method = calibrate(config)  # once per problem
    rows = []
    for strategy, g in trials.groupby("strategy"):
        totals = g.groupby("study")["charged_known_j"].sum()
        n_trials = int(g.groupby("study").size().median())
        proj = project(points, n_trials=n_trials, steps=steps_per_trial(config),
                       pool_flops=flops)
        e = proj.energy_j
        rows.append({
            "problem": config.name, "config_file": config_path, "strategy": strategy,
            "studies": int(totals.size), "inside": int(((totals >= e.p10) & (totals <= e.p90)).sum()),
            "below": int((totals < e.p10).sum()), "above": int((totals > e.p90).sum()),
            "real_median_j": float(totals.median()), "estimate_j": e.as_dict(),
            "real_j": sorted(float(v) for v in totals),
            "calibration_energy_j": calibration_j, "meter": method,
            "pruned": "+" in str(strategy), "model": proj.model,
        })
    return rows


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    for i, r in enumerate(rows):
        e = r["estimate_j"]
        ax.plot([e["p10"], e["p90"]], [i, i], lw=8, color="#9ecae1", solid_capstyle="butt",
                label="estimate, 80% interval" if i == 0 else None)
        ax.plot(e["median"], i, "|", ms=14, color="#08519c")
        ax.plot(r["real_j"], [i] * len(r["real_j"]), "o", ms=4, alpha=0.6, color="#d94801",
                label="real studies (one dot each)" if i == 0 else None)
        ax.annotate(f"{r['inside']}/{r['studies']} inside", (1.0, i), xytext=(6, -4),
                    xycoords=("axes fraction", "data"), textcoords="offset points", fontsize=8)
    ax.set_yticks(range(len(rows)),
                  [f"{r['problem']}: {r['strategy']}{' (pruned)' if r['pruned'] else ''}"
                   for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("charged energy per study (J, estimate-cpu-tdp: an ESTIMATE)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8,
              frameon=False)
    ax.set_title("Pre-flight estimate vs the studies it predicted")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", action="append", required=True,
                    help="CONFIG=STORAGE_URL or CONFIG=TRIALS.parquet|csv (repeatable)")
    ap.add_argument("--out", default=str(HERE / "estimate-check"))
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for p in args.problem:
        config, url = p.split("=", 1)
        rows += check(config, url)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    figure(rows, out.with_suffix(".png"))
    for r in rows:
        e = r["estimate_j"]
        print(f"{r['problem']:>10} {r['strategy']:>18}: {r['inside']:>2}/{r['studies']} inside "
              f"[{e['p10']:.0f}, {e['p90']:.0f}] J, real median {r['real_median_j']:.0f} J")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
