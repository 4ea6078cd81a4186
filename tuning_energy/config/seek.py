"""`[strategy.seek]` and the target pruner's `[pruning]` keys (search/seek.py,
search/target_pruner.py).

    [strategy.seek]
    n_initial_points = 5   # random points before the model proposes (bayes has 5)
    n_points = 1000        # random candidates the index is evaluated at
    cost = "auto"          # the joules of a candidate: "flops" (the built-in CNN's FLOPs
                           # and the measured joules per FLOP), "measured" (a model of the
                           # measured joules over the search space), "none" (P alone);
                           # "auto": flops for the built-in objective, measured otherwise
    pessimism = 1.0        # P from the GP's mean taken this many of its own standard
                           # deviations worse (0: the plain predictive distribution)

The GP's own options (kernel refits, caps) are `[strategy.bayes]`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuning_energy.config.checks import NUM, dataclass_from, positive
from tuning_energy.errors import ConfigError

SEEK_COSTS = ("auto", "flops", "measured", "none")


@dataclass(frozen=True)
class SeekConfig:
    """The target-seeking strategy: P(reach the target | x) / predicted joules(x)."""

    n_initial_points: int = 5
    n_points: int = 1000
    cost: str = "auto"
    pessimism: float = 1.0


def parse_seek(table: dict[str, Any], path: str = "strategy.seek") -> SeekConfig:
    seek = dataclass_from(SeekConfig, table, path, {
        "n_initial_points": ((int,), None),
        "n_points": ((int,), None),
        "cost": ((str,), SEEK_COSTS),
        "pessimism": (NUM, None),
    })
    positive(f"{path}.n_initial_points", seek.n_initial_points, allow_zero=True)
    positive(f"{path}.n_points", seek.n_points)
    positive(f"{path}.pessimism", seek.pessimism, allow_zero=True)
    return seek


#: The target pruner's keys in `[pruning]` (the other pruners ignore them).
TARGET_PRUNING_KEYS = {"grace_epochs": ((int,), None), "threshold": (NUM, None)}


def check_target_pruning(grace_epochs: int, threshold: float, path: str = "pruning") -> None:
    positive(f"{path}.grace_epochs", grace_epochs)
    if not 0 <= threshold < 1:
        raise ConfigError(f"{path}.threshold = {threshold!r}: must be a probability in [0, 1) "
                          f"(prune when P(final value reaches the target) is below it)")
