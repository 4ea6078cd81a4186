"""The dashboard study note's CO2 row: the CO2 of the study's charged energy, computed and
shown as compare.md and report.md give it (analysis.charged_co2_total_g on the study's
trials table, markdown.co2_number), with where the carbon intensity came from and ESTIMATE
where the energy is one."""

from __future__ import annotations

import pandas as pd

from tuning_energy.analysis.to_target import charged_co2_total_g
from tuning_energy.energy.methods import MethodLabel
from tuning_energy.report.markdown import carbon_sources, co2_number


def co2_row(table: pd.DataFrame, source: str | None, lower_bound: bool,
            label: MethodLabel) -> list[str]:
    """['| CO2 of the search | ... |'], or [] when no trial can be priced. `source`: the
    study's `carbon_source`; `lower_bound`: some trial has no training-energy measurement
    (only its measured parts are priced: '≥'); `label`: the trials' energy method label."""
    co2 = charged_co2_total_g(table)
    if co2 is None:
        return []
    estimate = f"; like its energy, {label.text()}" if label.any_estimate else ""
    return [f"| CO2 of the search | **{co2_number(co2, lower_bound)} g CO2e**: of its charged "
            f"energy, each trial at the carbon intensity the study recorded "
            f"({carbon_sources([source])}){estimate} |"]
