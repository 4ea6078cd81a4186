"""A plain Optuna study, energy-metered with `tuning_energy.metered`.

    python examples/plain_optuna.py [STORAGE_URL]

Then `tuning-energy show --storage STORAGE_URL` (or figures, export, the dashboard) reads it
like a store the runner wrote.
"""

import sys

import optuna
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import tuning_energy

X, y = load_breast_cancer(return_X_y=True)


def objective(trial: optuna.Trial) -> float:
    C = trial.suggest_float("C", 1e-3, 1e2, log=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
    return cross_val_score(model, X, y, cv=3).mean()


if __name__ == "__main__":
    storage = sys.argv[1] if len(sys.argv) > 1 else "sqlite:///studies/plain.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name="plain-tpe-s0",
                                direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
                                load_if_exists=True)
    study.set_metric_names(["accuracy"])
    study.optimize(tuning_energy.metered(objective, target=0.95), n_trials=10)
    best = study.best_trial
    print(f"best accuracy {best.value:.4f} (trial {best.number}, "
          f"{best.user_attrs['energy_j']:.2f} J, {best.user_attrs['energy_method']})")
