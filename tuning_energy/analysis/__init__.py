"""The tidy trials table and the analyses on it, under one name (`from tuning_energy import
analysis as an`; `an.trials_table(...)`).

Each part lives in the module named after its concern; this module re-exports them:

- table.py: the trials table from an Optuna store (`trials_table`, `study_table`,
  `studies_info`, `tidy`), its columns, and `require` (a missing column names itself);
- to_target.py: energy to target, the one definition every output uses, and the charged
  energy it adds up (`energy_to_target`, `best_so_far`, `with_charged_energy`, ...);
- ert.py: the expected energy to target (ERT, the headline across seeds:
  `expected_energy_to_target`), its bootstrap and Wilson intervals and ERT ratios;
- stats.py: strategies across seeds (`strategy_summary`, bootstrap and ratio intervals,
  `strategy_tests`: Kruskal-Wallis, Mann-Whitney U with Holm, A12 = U / (n_a n_b));
- energy_factors.py: what costs energy (`layer_attribution`, `prediction_error`,
  `pareto_front`, ...).

Every function takes a DataFrame and returns one, so results from elsewhere (another tool's
CSV) can be analysed as long as the columns used are there.
"""

from __future__ import annotations

from tuning_energy.analysis.energy_factors import (
    LAYER_FACTORS,
    PAPER_ETA_SQ,
    PREDICTORS,
    energy_per_epoch_by_factor,
    full_runs,
    layer_attribution,
    pareto_front,
    prediction_error,
)
from tuning_energy.analysis.ert import expected_energy_to_target
from tuning_energy.analysis.stats import (
    BOOTSTRAP_SEED,
    RATIO_SEED,
    a12,
    a12_magnitude,
    bootstrap_median_ci,
    mann_whitney,
    ratio_ci,
    strategy_summary,
    strategy_tests,
)
from tuning_energy.analysis.table import (
    COUNTED_STATES,
    PROVENANCE,
    TABLE_BASE,
    energy_methods,
    method_label,
    require,
    strategy_label,
    studies_info,
    study_rows,
    study_table,
    tidy,
    trials_table,
)
from tuning_energy.analysis.to_target import (
    best_so_far,
    censored_energy,
    charged_parts,
    charged_what,
    energy_counted,
    energy_to_target,
    target_from_best,
    unmeasured,
    unmeasured_text,
    with_charged_energy,
)

__all__ = [
    "BOOTSTRAP_SEED", "COUNTED_STATES", "LAYER_FACTORS", "PAPER_ETA_SQ", "PREDICTORS",
    "PROVENANCE", "RATIO_SEED", "TABLE_BASE", "a12", "a12_magnitude", "best_so_far",
    "bootstrap_median_ci", "censored_energy", "charged_parts", "charged_what",
    "energy_counted", "energy_methods", "energy_per_epoch_by_factor", "energy_to_target",
    "expected_energy_to_target",
    "full_runs", "layer_attribution", "mann_whitney", "method_label", "pareto_front",
    "prediction_error", "ratio_ci", "require", "strategy_label", "strategy_summary",
    "strategy_tests", "studies_info", "study_rows", "study_table", "target_from_best", "tidy",
    "trials_table", "unmeasured", "unmeasured_text", "with_charged_energy",
]
