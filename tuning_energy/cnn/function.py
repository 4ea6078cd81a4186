"""The built-in objective: the paper's CNN family, trained with Adam on the config's dataset.

A function under the same contract as a user's (`function(params, ctx)`, objective/context.py),
in two steps so that building the model stays outside the trial's meter window:
`prepare(params, ctx)` builds the model from the parameters (models.py) and stores
`n_params`, `flops_per_sample` and `predicted_energy_j` on `ctx.user_attrs`; the callable it
returns trains and evaluates (train.py), reporting each epoch's validation accuracy to
`ctx.report` (evaluated every epoch only when a pruner is on; otherwise NaN, which still
lets the per-trial energy cap stop the trial), and returns the validation `accuracy` with
`epochs_run`, `diverged`, `train_loss` and `test_accuracy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from tuning_energy.cnn.data import Dataset
from tuning_energy.cnn.models import ModelSpec, build_model, count_params, flops_per_sample
from tuning_energy.cnn.train import Hyper, fit, warm_up
from tuning_energy.config import StudyConfig
from tuning_energy.energy.predict import EnergyPredictor
from tuning_energy.objective.context import TrialContext


class CnnObjective:
    """The built-in objective function (metric `accuracy`, maximised)."""

    metric = "accuracy"

    def __init__(self, config: StudyConfig, data: Dataset,
                 predictor: EnergyPredictor | None = None):
        self.config = config
        self.data = data
        self.predictor = predictor if predictor is not None else EnergyPredictor()

    def __call__(self, params: dict[str, Any], ctx: TrialContext) -> dict[str, Any]:
        return self.prepare(params, ctx)()

    def prepare(self, params: dict[str, Any], ctx: TrialContext) -> Callable[[], dict[str, Any]]:
        cfg = self.config
        spec = ModelSpec.from_params(params)
        epochs = cfg.train.epochs
        hyper = Hyper(lr=float(params["lr"]), beta1=float(params["beta1"]),
                      beta2=float(params["beta2"]), eps=float(params["eps"]),
                      weight_decay=float(params["weight_decay"]), epochs=epochs,
                      batch_size=cfg.train.batch_size)
        torch.manual_seed(ctx.seed)  # weight init
        d = self.data
        model = build_model(spec, d.input_shape, d.n_classes)
        flops = flops_per_sample(model, d.input_shape)
        # Written in one transaction after the window (bench: storage_overhead).
        ctx.user_attrs.update(n_params=count_params(model), flops_per_sample=flops,
                              predicted_energy_j=self.predictor.predict(flops, epochs))
        generator = torch.Generator().manual_seed(ctx.seed)  # shuffling
        device = torch.device(ctx.device)

        def train() -> dict[str, Any]:
            result = fit(model.to(device), d.x_train, d.y_train, d.x_val, d.y_val, hyper,
                         generator, on_epoch=ctx.report, evaluate_each_epoch=ctx.pruning,
                         test=(d.x_test, d.y_test))
            return {"accuracy": result.accuracy, "epochs_run": result.epochs_run,
                    "diverged": result.diverged,
                    "train_loss": result.train_loss if math.isfinite(result.train_loss)
                    else None,
                    "test_accuracy": result.test_accuracy}

        return train

    def observe(self, attrs: dict[str, Any]) -> None:
        """After each trial: the energy predictor learns from what it cost."""
        self.predictor.observe_attrs(attrs)

    def warm_up(self) -> None:
        """One tiny step of the family's models, outside any window: the first trial of a
        process would otherwise be charged the one-off warm-up (~2 s of CPU here, 10x a
        trial)."""
        warm_up(self.data, self.data.x_train.device, self.config.train.batch_size)
