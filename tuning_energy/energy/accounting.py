"""What a trial is charged: the one definition that budgets, energy to target and every
report use.

A trial is charged its training energy (`energy_j`, the objective's meter window), the
strategy's own computation that proposed it (`propose_energy_j`) and the storage round trips
around it (`store_energy_j`). Parts a trial does not carry (a store from an older version,
a table from elsewhere) count as absent, not as zero: `charged_parts` says which were there.

A trial whose training energy is unknown (a meter that could not measure it: `energy_j` is
None) has an unknown charge (`charged_energy_j` is None), but the parts that were measured
were spent all the same: `charged_known_j` is their sum, what every total, budget and
energy to target adds up. A sum that includes such a trial is a *lower bound* of what was
spent; the analysis counts those trials (`n_unmeasured`) and every report marks the figure
"≥". Never a silent 0: an unknown part is left out and counted, not taken as 0 J.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

#: The trial attrs (and trials-table columns) whose sum a trial is charged, in J.
TRAINING = "energy_j"
PROPOSING = "propose_energy_j"
STORING = "store_energy_j"
CHARGED_PARTS = (TRAINING, PROPOSING, STORING)


def _number(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def charged_energy_j(attrs: Mapping[str, Any]) -> float | None:
    """Training + proposing + storage energy of one trial, in J.

    None when its training energy was not measured (a meter that could not measure): an
    unknown is never a zero. Proposing and storage parts that are absent add nothing.
    """
    training = _number(attrs.get(TRAINING))
    if training is None:
        return None
    return training + sum(v for k in (PROPOSING, STORING)
                          if (v := _number(attrs.get(k))) is not None)


def training_measured(attrs: Mapping[str, Any]) -> bool:
    """True when the trial's training energy (`energy_j`) is known."""
    return _number(attrs.get(TRAINING)) is not None


def charged_known_j(attrs: Mapping[str, Any]) -> float | None:
    """The measured parts of one trial's charge, in J: `charged_energy_j` when its training
    energy is known; else its measured proposing + storage energy (a lower bound of its
    charge); None when no part was measured."""
    known = [v for k in CHARGED_PARTS if (v := _number(attrs.get(k))) is not None]
    return sum(known) if known else None


def charged_total_j(trials_attrs: Iterable[Mapping[str, Any]]) -> float:
    """Sum of `charged_known_j` over trials (J): a lower bound when some trial's training
    energy is unknown (`training_measured` is False for it)."""
    return sum(e for a in trials_attrs if (e := charged_known_j(a)) is not None)


def charged_co2_g(attrs: Mapping[str, Any], intensity_g_per_kwh: float,
                  pue: float = 1.0) -> float | None:
    """CO2 of one trial's charge (`charged_known_j`), in g CO2e: at the intensity of its own
    window when it has one (`co2_intensity_g_per_kwh`, from meter.carbon_intensity_csv),
    else at `intensity_g_per_kwh` (the study's). What max_co2_g and every CO2 total count."""
    e = charged_known_j(attrs)
    if e is None:
        return None
    own = _number(attrs.get("co2_intensity_g_per_kwh"))
    return e / 3.6e6 * (own if own is not None else intensity_g_per_kwh) * pue
