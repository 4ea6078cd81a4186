"""Per-trial seeds from a study seed, in one place: the same (seed, trial) gives the same
value in any process, so a resumed or distributed study reproduces its trials.

Two streams, kept apart so that a trial's training and its proposal do not share one:
`trial_seed` (the objective function's weight init and shuffling, `ctx.seed`) and
`sampler_seed` (what the strategies reseed their random state with, samplers.py).
"""

from __future__ import annotations

_PRIME = 1_000_003


def _mix(seed: int, trial_number: int, stride: int, offset: int, modulus: int) -> int:
    return (seed * _PRIME + trial_number * stride + offset) % modulus


def trial_seed(study_seed: int, trial_number: int) -> int:
    """Seed for one trial's work (weight init, shuffling)."""
    return _mix(study_seed, trial_number, 1, 0, 2**63)


def sampler_seed(seed: int, trial_number: int) -> int:
    """Seed a strategy's random state is reset to before proposing trial `trial_number`."""
    return _mix(seed, trial_number, 7_919, 1, 2**32)
