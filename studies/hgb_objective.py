"""The suite's non-neural problem: scikit-learn's HistGradientBoostingClassifier on the
bundled 8x8 digits (1,797 images, 10 classes; no download), through the own-objective route
(`[objective] function = "hgb_objective:objective"` in studies/hgb.toml, found in this
file's folder).

The split matches the default problem's: a stratified 20% held out as the test set (fixed
seed 0), then a stratified 25% of the rest as the validation set that the strategies select
on (split seed 0). The model uses no early stopping, so a trial's cost depends on its
parameters only (and the pruner's decisions); `ctx.seed` seeds the model's feature
subsampling.
"""

from __future__ import annotations

from sklearn.datasets import load_digits
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

X, y = load_digits(return_X_y=True)
X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=0.2, stratify=y,
                                                  random_state=0)
X_train, X_val, y_train, y_val = train_test_split(X_rest, y_rest, test_size=0.25,
                                                  stratify=y_rest, random_state=0)


STEP = 10  # boosting iterations between two ctx.report calls (objective.steps = 6 in hgb.toml)


def objective(params: dict, ctx) -> dict:
    """Boost in steps of STEP iterations (warm start), reporting the validation accuracy
    after each step when a pruner is on (NaN otherwise: no evaluation is paid for), so that
    `tpe+median` can stop a trial early as it does the CNN's epochs."""
    n_iter = int(params["max_iter"])
    model = HistGradientBoostingClassifier(
        learning_rate=params["learning_rate"], max_iter=min(STEP, n_iter),
        max_leaf_nodes=int(params["max_leaf_nodes"]),
        min_samples_leaf=int(params["min_samples_leaf"]),
        l2_regularization=params["l2_regularization"], max_features=params["max_features"],
        early_stopping=False, warm_start=True, random_state=ctx.seed % 2**31)
    for step, iters in enumerate(range(STEP, n_iter + STEP, STEP)):
        model.set_params(max_iter=min(iters, n_iter))
        model.fit(X_train, y_train)
        value = model.score(X_val, y_val) if ctx.pruning else float("nan")
        if ctx.report(step, value):
            break
    return {"accuracy": model.score(X_val, y_val),
            "test_accuracy": model.score(X_test, y_test),
            "n_trees": int(model.n_iter_ * model.n_trees_per_iteration_)}
