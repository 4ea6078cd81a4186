"""A minimised metric: the validation mean squared error of a ridge regression on the
bundled diabetes data (no download). `direction = "minimize"` in loss.toml: a trial
reaches the target when its loss is at or below it.
"""

from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

X, y = load_diabetes(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0)
scale = y_train.std()


def objective(params: dict, ctx) -> dict:
    features = PolynomialFeatures(degree=params["degree"], include_bias=False)
    scaler = StandardScaler()
    x_train = scaler.fit_transform(features.fit_transform(X_train))
    x_val = scaler.transform(features.transform(X_val))
    model = Ridge(alpha=params["alpha"]).fit(x_train, y_train)
    loss = mean_squared_error(y_val, model.predict(x_val)) / scale**2  # relative MSE
    return {"val_loss": loss, "n_features": int(x_train.shape[1])}
