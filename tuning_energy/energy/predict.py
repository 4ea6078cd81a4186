"""Energy prediction before a trial trains, from FLOPs and what the study measured so far.

The FLOPs model (del Rey et al.'s question: do FLOPs predict energy?):

    predicted_energy_j = (sum of measured energy_j / sum of flops_per_sample x epochs_run)
                         x flops_per_sample x epochs

over the study's finished trials (a ratio estimator: joules per forward FLOP per sample per
epoch; the training-set size is the same for every trial of a study). After the first
epoch the objective also stores `predicted_energy_epoch1_j` = first epoch's energy x
epochs. The analysis compares both with the measured energy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


class EnergyPredictor:
    def __init__(self) -> None:
        self.energy_j = 0.0
        self.work = 0.0  # sum of flops_per_sample x epochs_run
        self.n = 0

    def observe(self, flops_per_sample: float | None, epochs_run: int | None,
                energy_j: float | None) -> None:
        if not flops_per_sample or not epochs_run or energy_j is None or not math.isfinite(energy_j):
            return
        self.energy_j += energy_j
        self.work += float(flops_per_sample) * epochs_run
        self.n += 1

    def observe_attrs(self, attrs: dict[str, Any]) -> None:
        self.observe(attrs.get("flops_per_sample"), attrs.get("epochs_run"), attrs.get("energy_j"))

    def predict(self, flops_per_sample: float, epochs: int) -> float | None:
        """None until a trial has been measured: no made-up number."""
        if self.n == 0 or self.work <= 0:
            return None
        return self.energy_j / self.work * flops_per_sample * epochs

    @classmethod
    def from_attrs(cls, attrs: Iterable[dict[str, Any]]) -> EnergyPredictor:
        p = cls()
        for a in attrs:
            p.observe_attrs(a)
        return p
