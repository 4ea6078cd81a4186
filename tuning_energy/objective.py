"""The one energy-metered objective that every strategy calls.

It takes the trial's parameters, builds the model, opens the meter window around training
and evaluation (the work the trial is charged for), and stores on the trial:

value: validation accuracy in [0, 1] (metric `accuracy`, maximised); for multi-objective
       studies (accuracy, energy_j)
user attrs, every one a trial can get:
  the measurement (energy_attrs): energy_j (None when not measured, never 0),
      energy_method, energy_by_device_j, energy_error (which device's energy is unknown
      and why), duration_s, avg_power_w, and what the meter adds (Measurement.extra):
      energy_partial (a worker's trial: true while energy_j is the energy so far written
      by the heartbeat, false once the final figures replace it; worker_energy.py),
      crosscheck_energy_j, crosscheck_method, crosscheck_by_device_j (`--cross-check
      codecarbon`: CodeCarbon's figure for the same window)
  the runner's on_measurement hook (energy/baseline.py): idle_power_w (the idle baseline in
      force), energy_net_j (energy_j - idle power x duration; None when idle is unknown),
      co2_g (gross energy x carbon intensity x PUE)
  the model and training: n_params, flops_per_sample, epochs_run, diverged, train_loss,
      test_accuracy (the held-out test set, evaluated once when training ends, inside the
      energy window; None for a pruned trial), predicted_energy_j,
      predicted_energy_epoch1_j
  the proposal: propose_s, propose_energy_j, store_s, store_energy_j, and the run attrs
      the runner passes (run_id, hardware_id)
  a pruned trial: pruned_reason, energy_saved_j, accuracy_at_stop (its accuracy when it
      stopped)
  a failed trial (written by the runner or a worker): error (the exception of a trial that
      raised), fail_reason (Ctrl-C, a run killed while the trial was RUNNING, a worker
      that died)

Three energies per trial, each from its own meter window, and together what the trial is
charged (accounting.py):
    energy_j          training and evaluation (the trial's own window)
    propose_energy_j  the strategy's own computation that proposed its parameters (the
                      sampler's calls, metered by MeteredSampler); propose_s its seconds
    store_energy_j    the storage round trips of proposing: Optuna's ask (creating the
                      trial), one commit per suggested parameter, a worker's claim attrs;
                      store_s its seconds. The commits that record these figures (the
                      propose/store attrs, the training attrs, Optuna's tell: one each) come
                      after their own windows and are not counted.
With a sampler that is not a MeteredSampler (a plain `study.optimize(objective)`), the
whole proposal window is propose_* and there is no store_*.

The energy attrs are written even when training raises or is pruned: a failed or pruned
trial keeps the energy it spent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from .config import StudyConfig
from .data import Dataset
from .energy import Measurement, Meter, Window
from .metered_sampler import MeteredSampler
from .models import ModelSpec, build_model, count_params, flops_per_sample
from .predict import EnergyPredictor
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
    """The trial attrs that describe a measurement (None stays None: never a made-up 0),
    with what the meter added to it (`Measurement.extra`: `energy_partial`, the
    `crosscheck_*` figures)."""
    return {
        "energy_j": m.energy_j,
        "energy_method": m.method,
        "energy_by_device_j": dict(m.by_device_j),
        "energy_error": m.energy_error,  # which device's energy is unknown and why (else None)
        "duration_s": m.duration_s,
        "avg_power_w": m.avg_power_w,
        **m.extra,
    }


class Objective:
    """Callable on an Optuna trial; the same for every strategy."""

    def __init__(self, config: StudyConfig, data: Dataset, meter: Meter, seed: int = 0,
                 device: torch.device | str = "cpu",
                 on_measurement: Callable[[Measurement], dict[str, Any]] | None = None,
                 multi_objective: bool = False, predictor: EnergyPredictor | None = None,
                 run_attrs: dict[str, Any] | None = None):
        self.config = config
        self.data = data
        self.meter = meter
        self.seed = seed
        self.device = torch.device(device)
        self.on_measurement = on_measurement
        self.multi_objective = multi_objective
        self.pruning = config.pruning.pruner != "none"
        self.predictor = predictor if predictor is not None else EnergyPredictor()
        self.run_attrs = dict(run_attrs or {})  # written on every trial (which run made it)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        """For `study.optimize`: propose, train, return the value(s)."""
        params = self.propose(trial, self.meter.begin())
        return self.values(self.run(trial, params))

    def propose(self, trial: optuna.Trial, window: Window) -> dict[str, Any]:
        """Ask the strategy for the parameters; `window` was opened before `study.ask()`.

        The strategy's own cost (GP fits, acquisition optimisation) is stored as
        `propose_s` / `propose_energy_j`: the search's energy, which Yarally et al. never
        counted, separate from the trial's training energy. The rest of the window (the
        storage round trips) is stored as `store_s` / `store_energy_j`. Both are written
        as soon as the window ends, so that a trial killed in training keeps them.
        """
        sampled = suggest_params(trial, self.config.search_space)
        sampler = trial.study.sampler
        if not isinstance(sampler, MeteredSampler):
            m = window.meter.end(window)
            set_user_attrs(trial, {"propose_s": m.duration_s, "propose_energy_j": m.energy_j,
                                   **self.run_attrs})
            return self.config.param_values(sampled)
        own = sampler.take_cost(trial._trial_id)
        m = window.meter.end(window)  # ask + suggest: the sampler's calls and the store's
        set_user_attrs(trial, {
            "propose_s": own.duration_s, "propose_energy_j": own.energy_j,
            "store_s": m.duration_s - own.duration_s,
            "store_energy_j": None if m.energy_j is None or own.energy_j is None
            else m.energy_j - own.energy_j,
            **self.run_attrs})
        return self.config.param_values(sampled)

    def values(self, outcome: TrialOutcome) -> float | tuple[float, float]:
        if self.multi_objective:
            return outcome.accuracy, outcome.measurement.energy_j
        return outcome.accuracy

    def run(self, trial: optuna.Trial, params: dict[str, Any]) -> TrialOutcome:
        """Train and evaluate inside the meter window. Raises optuna.TrialPruned when pruned."""
        cfg = self.config
        spec = ModelSpec.from_params(params)
        epochs = cfg.train.epochs
        hyper = Hyper(lr=float(params["lr"]), beta1=float(params["beta1"]),
                      beta2=float(params["beta2"]), eps=float(params["eps"]),
                      weight_decay=float(params["weight_decay"]), epochs=epochs,
                      batch_size=cfg.train.batch_size)
        seed = trial_seed(self.seed, trial.number)
        torch.manual_seed(seed)  # weight init
        model = build_model(spec, self.data.input_shape, self.data.n_classes)
        flops = flops_per_sample(model, self.data.input_shape)
        # Collected here and written in one transaction after the window (bench:
        # storage_overhead); DB writes are not the trial's energy.
        attrs: dict[str, Any] = {
            "n_params": count_params(model), "flops_per_sample": flops,
            "predicted_energy_j": self.predictor.predict(flops, epochs),
        }
        generator = torch.Generator().manual_seed(seed)  # shuffling

        d = self.data
        window = self.meter.begin()
        result: FitResult | None = None
        try:
            model = model.to(self.device)
            result = fit(model, d.x_train, d.y_train, d.x_val, d.y_val, hyper, generator,
                         on_epoch=self._epoch_callback(trial, window, attrs),
                         evaluate_each_epoch=self.pruning, test=(d.x_test, d.y_test))
        finally:
            # Also when training raised: a failed trial keeps the energy it spent.
            measurement = self.meter.end(window)
            attrs.update(energy_attrs(measurement))
            if self.on_measurement is not None:
                attrs.update(self.on_measurement(measurement))
            if result is not None:
                attrs.update(epochs_run=result.epochs_run, diverged=result.diverged,
                             train_loss=result.train_loss if math.isfinite(result.train_loss)
                             else None, test_accuracy=result.test_accuracy)
                if result.stopped_early:
                    e = measurement.energy_j
                    attrs["energy_saved_j"] = None if e is None else \
                        e / result.epochs_run * (epochs - result.epochs_run)
                    attrs["accuracy_at_stop"] = result.accuracy
            set_user_attrs(trial, attrs)
        self.predictor.observe(flops, result.epochs_run, measurement.energy_j)
        if result.stopped_early:
            raise optuna.TrialPruned(f"{attrs.get('pruned_reason')} after epoch "
                                     f"{result.epochs_run}/{epochs}")
        return TrialOutcome(result.accuracy, result, measurement, params)

    def _epoch_callback(self, trial: optuna.Trial, window: Window, notes: dict[str, Any]):
        """Per-epoch: energy after epoch 1, the per-trial energy cap, and the pruner."""
        epochs = self.config.train.epochs
        cap_j = self.config.budget.max_trial_energy_j

        def on_epoch(epoch: int, accuracy: float) -> bool:
            if epoch == 0 or cap_j is not None:
                so_far = self.meter.peek(window).energy_j
                if so_far is not None:
                    projected = so_far / (epoch + 1) * epochs
                    if epoch == 0:
                        notes["predicted_energy_epoch1_j"] = projected
                    if cap_j is not None and projected > cap_j and epoch + 1 < epochs:
                        notes["pruned_reason"] = (f"energy cap: projected {projected:.3g} J > "
                                                  f"max_trial_energy_j {cap_j:g} J")
                        return True
            if self.pruning:
                trial.report(accuracy, epoch)
                if trial.should_prune():
                    notes["pruned_reason"] = f"pruner {self.config.pruning.pruner}"
                    return True
            return False

        return on_epoch
