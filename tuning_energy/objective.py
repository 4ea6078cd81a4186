"""The one energy-metered objective that every strategy calls.

It takes the trial's parameters, builds the model, opens the meter window around training
and evaluation (the work the trial is charged for), and stores on the trial:

value: validation accuracy in [0, 1] (metric name `accuracy`, direction maximize)
user attrs: energy_j, energy_method, energy_by_device_j, duration_s, avg_power_w,
            n_params, flops_per_sample, epochs_run, diverged, train_loss, propose_s

The attrs are written even when training raises, so a failed trial keeps the energy it
spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from .config import StudyConfig
from .data import Dataset
from .energy import Measurement, Meter
from .models import ModelSpec, build_model, count_params, flops_per_sample
from .storage import set_user_attrs
from .strategies import suggest_params
from .train import FitResult, Hyper, fit


def trial_seed(study_seed: int, trial_number: int) -> int:
    """Seed for one trial's weight init and shuffling: reproducible per (seed, trial)."""
    return (study_seed * 1_000_003 + trial_number) % 2**63


@dataclass
class TrialOutcome:
    accuracy: float
    fit: FitResult
    measurement: Measurement
    params: dict[str, Any]


def energy_attrs(m: Measurement) -> dict[str, Any]:
    """The trial attrs that describe a measurement (None stays None: never a made-up 0)."""
    return {
        "energy_j": m.energy_j,
        "energy_method": m.method,
        "energy_by_device_j": dict(m.by_device_j),
        "duration_s": m.duration_s,
        "avg_power_w": m.avg_power_w,
    }


class Objective:
    """Callable on an Optuna trial; the same for every strategy."""

    def __init__(self, config: StudyConfig, data: Dataset, meter: Meter, seed: int = 0,
                 device: torch.device | str = "cpu",
                 on_measurement: Callable[[optuna.Trial, Measurement], None] | None = None):
        self.config = config
        self.data = data
        self.meter = meter
        self.seed = seed
        self.device = torch.device(device)
        self.on_measurement = on_measurement

    def __call__(self, trial: optuna.Trial, ask_s: float = 0.0) -> float:
        t0 = time.perf_counter()
        sampled = suggest_params(trial, self.config.search_space)
        trial.set_user_attr("propose_s", ask_s + time.perf_counter() - t0)
        return self.run(trial, self.config.param_values(sampled)).accuracy

    def run(self, trial: optuna.Trial, params: dict[str, Any]) -> TrialOutcome:
        cfg = self.config
        spec = ModelSpec.from_params(params)
        hyper = Hyper(lr=float(params["lr"]), beta1=float(params["beta1"]),
                      beta2=float(params["beta2"]), eps=float(params["eps"]),
                      weight_decay=float(params["weight_decay"]), epochs=cfg.train.epochs,
                      batch_size=cfg.train.batch_size)
        seed = trial_seed(self.seed, trial.number)
        torch.manual_seed(seed)  # weight init
        model = build_model(spec, self.data.input_shape, self.data.n_classes)
        # Written together after the window, in one transaction (bench: storage_overhead).
        attrs: dict[str, Any] = {"n_params": count_params(model),
                                 "flops_per_sample": flops_per_sample(model, self.data.input_shape)}
        generator = torch.Generator().manual_seed(seed)  # shuffling

        d = self.data
        window = self.meter.begin()
        measurement: Measurement | None = None
        result: FitResult | None = None
        try:
            model = model.to(self.device)
            result = fit(model, d.x_train, d.y_train, d.x_val, d.y_val, hyper, generator,
                         on_epoch=self.epoch_callback(trial))
        finally:
            measurement = self.meter.end(window)
            attrs.update(energy_attrs(measurement))
            if result is not None:
                attrs.update(epochs_run=result.epochs_run, diverged=result.diverged,
                             train_loss=result.train_loss if math.isfinite(result.train_loss)
                             else None)
            set_user_attrs(trial, attrs)
            if self.on_measurement is not None:
                self.on_measurement(trial, measurement)
        return TrialOutcome(result.accuracy, result, measurement, params)

    def epoch_callback(self, trial: optuna.Trial):
        """Per-epoch hook for pruning; None means no per-epoch evaluation."""
        return None
