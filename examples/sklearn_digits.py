"""A scikit-learn model on bundled data (no download): an SVM on the 8x8 digits.

The whole contract: a function of the parameters and `ctx`, returning the metric.
"""

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

X, y = load_digits(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X / 16.0, y, test_size=0.25,
                                                  stratify=y, random_state=0)


def objective(params: dict, ctx) -> dict:
    model = SVC(C=params["C"], gamma=params["gamma"], kernel=params["kernel"],
                random_state=ctx.seed % 2**31)
    model.fit(X_train, y_train)
    return {"accuracy": model.score(X_val, y_val),  # the metric, by its name
            "n_support": int(model.n_support_.sum())}  # an extra, stored on the trial
