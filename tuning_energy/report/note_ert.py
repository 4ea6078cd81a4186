"""The dashboard study note's ERT row: the expected energy to target of the study's strategy
over every seed of it in the store (`{config}-{strategy}-s{seed}`), computed as compare.md
computes it (analysis.expected_energy_to_target on energy_to_target's table)."""

from __future__ import annotations

import optuna
import pandas as pd

from tuning_energy.analysis.ert import expected_energy_to_target
from tuning_energy.analysis.table import study_table
from tuning_energy.analysis.to_target import energy_to_target
from tuning_energy.report.ert_text import ert_ci, joules


def sibling_table(study: optuna.Study) -> pd.DataFrame:
    """The trials table of every study of the same config and strategy (its seeds)."""
    base = study.study_name.rsplit("-s", 1)[0]
    storage = study._storage
    tables = []
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if s.study_name.rsplit("-s", 1)[0] != base:
            continue
        other = study if s.study_name == study.study_name else \
            optuna.load_study(study_name=s.study_name, storage=storage)
        tables.append(study_table(other, other.get_trials(deepcopy=False)))
    tables = [t for t in tables if not t.empty]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def ert_row(study: optuna.Study, target: float) -> str | None:
    """'| ERT over N seeds of S | ... |', or None when no seed has a finished trial."""
    table = sibling_table(study)
    if table.empty:
        return None
    r = expected_energy_to_target(energy_to_target(table, target)).iloc[0]
    b = bool(r["lower_bound"])
    value = "infinite: no seed reached it" if r["ert_j"] == float("inf") else \
        f"**{joules(r['ert_j'], b)} J** (95% CI {ert_ci(r['ert_ci_low_j'], r['ert_ci_high_j'], b)} J)"
    return (f"| expected energy to target (ERT) over {r['runs']} seed(s) of "
            f"{r['strategy']} | {value}: the energy to target of the {r['successes']} "
            f"seed(s) that reached it plus the whole search of those that did not, per seed "
            f"that reached it (as compare.md) |")
