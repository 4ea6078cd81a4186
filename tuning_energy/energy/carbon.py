"""Grid carbon intensity by country, and CO2 from energy.

    co2_g = energy_j / 3.6e6 [kWh] * intensity [g CO2e / kWh] * pue

Source of the table: Ember (2024), "Yearly Electricity Data", as processed by Our World in
Data, "Carbon intensity of electricity generation" (g CO2e/kWh, life-cycle), year 2023,
rounded to 1 g. The same figures ship with CodeCarbon 3.3 in
`codecarbon/data/private_infra/global_energy_mix.json` (checked against it). WORLD is
Ember's Global Electricity Review 2024 figure for 2023 (480 g/kWh); it is used, and said
to be used, when the config names no region.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuning_energy.energy.carbon_series import IntensitySeries
from tuning_energy.errors import ConfigError

if TYPE_CHECKING:
    from tuning_energy.config import MeterConfig

SOURCE = "Ember 2024 yearly electricity data via Our World in Data, year 2023"
YEAR = 2023

#: ISO 3166-1 alpha-3 -> (alpha-2, country, g CO2e/kWh in 2023).
INTENSITY_G_PER_KWH: dict[str, tuple[str, str, float]] = {
    "AUS": ("AU", "Australia", 549),
    "AUT": ("AT", "Austria", 111),
    "BEL": ("BE", "Belgium", 138),
    "BRA": ("BR", "Brazil", 98),
    "CAN": ("CA", "Canada", 170),
    "CHE": ("CH", "Switzerland", 35),
    "CHN": ("CN", "China", 582),
    "DEU": ("DE", "Germany", 381),
    "DNK": ("DK", "Denmark", 152),
    "ESP": ("ES", "Spain", 174),
    "FIN": ("FI", "Finland", 79),
    "FRA": ("FR", "France", 56),
    "GBR": ("GB", "United Kingdom", 238),
    "IND": ("IN", "India", 713),
    "IRL": ("IE", "Ireland", 291),
    "ITA": ("IT", "Italy", 331),
    "JPN": ("JP", "Japan", 485),
    "KOR": ("KR", "South Korea", 431),
    "MEX": ("MX", "Mexico", 507),
    "NLD": ("NL", "Netherlands", 268),
    "NOR": ("NO", "Norway", 30),
    "POL": ("PL", "Poland", 662),
    "SGP": ("SG", "Singapore", 471),
    "SWE": ("SE", "Sweden", 41),
    "USA": ("US", "United States", 369),
    "ZAF": ("ZA", "South Africa", 708),
}
WORLD_G_PER_KWH = 480.0
_ALPHA2 = {a2: a3 for a3, (a2, _, _) in INTENSITY_G_PER_KWH.items()}


@dataclass(frozen=True)
class Carbon:
    """The intensity used for a study, where it came from, and the PUE multiplier."""

    intensity_g_per_kwh: float
    source: str
    pue: float = 1.0
    country_alpha3: str | None = None
    #: meter.carbon_intensity_csv: the intensity over time; `intensity_g_per_kwh` is then
    #: the fallback outside the file's range
    series: IntensitySeries | None = field(default=None, compare=False)
    #: with a series: where the fallback constant comes from (`source` describes both)
    constant_source: str | None = field(default=None, compare=False)

    def co2_g(self, energy_j: float | None) -> float | None:
        return co2_g(energy_j, self.intensity_g_per_kwh, self.pue)

    def intensity_over(self, start: float, end: float) -> tuple[float, str]:
        """(g CO2e/kWh over the Unix-time window [start, end], where it came from)."""
        if self.series is not None:
            mean = self.series.mean(start, end)
            if mean is not None:
                return mean, "csv"
            return self.intensity_g_per_kwh, "outside the CSV's range: " + self.fallback
        return self.intensity_g_per_kwh, self.source

    def intensity_now(self, seconds: float = 0.0) -> float:
        now = time.time()
        return self.intensity_over(now, now + seconds)[0]

    def window_attrs(self, energy_j: float | None, duration_s: float) -> dict[str, Any]:
        """co2_g of a meter window that ended now (with the CSV: its intensity, and where
        it came from)."""
        if self.series is None:
            return {"co2_g": self.co2_g(energy_j)}
        end = time.time()
        intensity, source = self.intensity_over(end - duration_s, end)
        return {"co2_g": co2_g(energy_j, intensity, self.pue),
                "co2_intensity_g_per_kwh": intensity, "co2_source": source}

    @property
    def fallback(self) -> str:
        return f"{self.intensity_g_per_kwh:g} g/kWh ({self.constant_source or self.source})"

    def study_attrs(self) -> dict[str, Any]:
        attrs = {"carbon_intensity_g_per_kwh": self.intensity_g_per_kwh,
                 "carbon_source": self.source, "pue": self.pue}
        if self.series is not None:
            attrs["carbon_intensity_csv"] = self.series.describe()
        return attrs


def co2_g(energy_j: float | None, intensity_g_per_kwh: float | None,
          pue: float = 1.0) -> float | None:
    """Grams of CO2e for `energy_j` joules at the meter; None when either is unknown."""
    if energy_j is None or intensity_g_per_kwh is None:
        return None
    return energy_j / 3.6e6 * intensity_g_per_kwh * pue


def country_alpha3(region: str) -> str:
    code = region.strip().upper()
    if code in INTENSITY_G_PER_KWH:
        return code
    if code in _ALPHA2:
        return _ALPHA2[code]
    known = ", ".join(f"{a3}/{a2}" for a3, (a2, _, _) in sorted(INTENSITY_G_PER_KWH.items()))
    raise ConfigError(
        f"meter.region = {region!r}: not in the carbon table; allowed ISO codes are {known}; "
        f"or set meter.carbon_intensity_g_per_kwh explicitly")


def resolve_carbon(meter: MeterConfig) -> Carbon:
    """meter.carbon_intensity_csv over time (with the constant below outside its range);
    the constant: explicit intensity, else the region's from the table, else the world
    average."""
    constant = _constant_carbon(meter)
    if not meter.carbon_intensity_csv:
        return constant
    series = IntensitySeries.load(meter.carbon_intensity_csv)
    return Carbon(constant.intensity_g_per_kwh,
                  f"time-varying from {series.describe()}; outside it: {constant.source}",
                  constant.pue, constant.country_alpha3, series, constant.source)


def _constant_carbon(meter: MeterConfig) -> Carbon:
    if meter.carbon_intensity_g_per_kwh is not None:
        where = f" for region {meter.region}" if meter.region else ""
        return Carbon(float(meter.carbon_intensity_g_per_kwh),
                      f"meter.carbon_intensity_g_per_kwh (explicit in the config{where})",
                      meter.pue, country_alpha3(meter.region) if meter.region else None)
    if meter.region:
        a3 = country_alpha3(meter.region)
        _, country, value = INTENSITY_G_PER_KWH[a3]
        return Carbon(float(value), f"{country} ({a3}): {SOURCE}", meter.pue, a3)
    return Carbon(WORLD_G_PER_KWH, f"world average (meter.region not set): Ember Global "
                  f"Electricity Review 2024, year {YEAR}", meter.pue, None)
