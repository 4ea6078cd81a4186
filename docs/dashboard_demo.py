"""Build the small store behind the screenshots in docs/dashboard.md.

    PYTHONPATH=. python docs/dashboard_demo.py sqlite:////tmp/demo/energy.db

1. `demo-random-s0`: a real tuning-energy study (run_study, 8 trials, 2 epochs, digits,
   estimate meter), so its note and trial attrs are exactly what `make study` writes.
2. `demo-pareto-tpe-s0`: a multi-objective study made with Optuna directly (maximize
   accuracy, minimize energy_j; metric names set) whose trials run our Objective, so
   they carry the same energy attrs; then the same note is written.
Also attaches a small matplotlib figure to the first study (studies' figures come from
the figures module; this one is only a stand-in).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402

from tuning_energy.config import parse_config  # noqa: E402
from tuning_energy.report.dashboard import attach_figures, default_artifact_dir, write_study_note  # noqa: E402
from tuning_energy.cnn.data import load_dataset  # noqa: E402
from tuning_energy.energy import build_meter  # noqa: E402
from tuning_energy.objective.objective import Objective  # noqa: E402
from tuning_energy.run.runner import run_study, set_threads  # noqa: E402
from tuning_energy.store.storage import open_storage  # noqa: E402

DOC = {
    "name": "demo", "target_accuracy": 0.9,
    "train": {"epochs": 2, "batch_size": 64, "torch_threads": 1, "device": "cpu"},
    "budget": {"n_trials": 8}, "meter": {"kind": "estimate", "idle_s": 0},
    "search_space": {"n_conv": {"type": "int", "low": 0, "high": 2},
                     "n_linear": {"type": "int", "low": 1, "high": 2},
                     "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
}


def main(url: str) -> None:
    config = parse_config(DOC)
    summary = run_study(config, "random", 0, url, progress=False)
    print("\n".join(summary.lines()))

    # The multi-objective study: same objective, two values.
    set_threads(1)
    meter = build_meter(config.meter).meter
    objective = Objective(config, load_dataset(config.data), meter, seed=0)

    def two_values(trial: optuna.Trial) -> tuple[float, float]:
        acc = objective(trial)
        return acc, trial.user_attrs["energy_j"]

    mo_config = config.with_overrides(name="demo-pareto")
    study = optuna.create_study(storage=open_storage(url), study_name="demo-pareto-tpe-s0",
                                directions=["maximize", "minimize"],
                                sampler=optuna.samplers.TPESampler(seed=0), load_if_exists=True)
    study.set_metric_names(["accuracy", "energy_j"])
    study.set_user_attr("strategy", "tpe")
    study.set_user_attr("seed", 0)
    study.set_user_attr("energy_method", meter.method)
    study.set_user_attr("config", mo_config.to_dict())
    study.optimize(two_values, n_trials=14)
    meter.close()
    write_study_note(study)

    # A stand-in figure, attached to the single-objective study.
    single = optuna.load_study(study_name=summary.study_name, storage=open_storage(url))
    trials = [t for t in single.trials if t.value is not None]
    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.scatter([t.user_attrs["energy_j"] for t in trials], [t.value for t in trials])
    ax.set_xlabel("energy_j (estimate-cpu-tdp)")
    ax.set_ylabel("accuracy")
    fig.tight_layout()
    png = Path(default_artifact_dir(url)).parent / "accuracy_vs_energy.png"
    fig.savefig(png)
    attach_figures(single, [png], default_artifact_dir(url))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///studies/demo.db")
