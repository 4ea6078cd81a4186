"""Time-varying grid carbon intensity from a CSV file (`meter.carbon_intensity_csv`).

The file: a header, then one row per period, `timestamp, g CO2e per kWh`, as exported from
a grid operator or Electricity Maps (their CSVs have more columns: the first column that
parses as a time and the first numeric column named like an intensity are used, or the
first two columns). A timestamp is ISO 8601 (`2026-12-05T14:00:00Z`; without a zone it is
UTC) or Unix seconds. A row's value holds from its timestamp until the next row's; the last
row holds for the median step of the file.

A trial's intensity is the time-weighted mean over its meter window. A window outside the
file's range takes the config's constant intensity (region, explicit, or the world
average: energy/carbon.py), and the trial says so in `co2_source`; nothing is guessed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tuning_energy.errors import ConfigError

KEY = "meter.carbon_intensity_csv"


def _time(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


@dataclass(frozen=True)
class IntensitySeries:
    """Step function of intensity (g/kWh) over Unix time."""

    path: str
    starts: np.ndarray  # sorted Unix seconds
    values: np.ndarray  # g CO2e/kWh from each start
    end: float  # where the last value stops holding

    @classmethod
    def load(cls, path: str | Path) -> IntensitySeries:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{KEY} = {str(path)!r}: no such file (a CSV of timestamp, "
                              f"g CO2e/kWh)")
        with p.open(newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
        if len(rows) < 2:
            raise ConfigError(f"{KEY} = {str(path)!r}: needs a header and at least one row")
        header = [h.strip().lower() for h in rows[0]]
        t_col = next((i for i, h in enumerate(header) if "time" in h or "date" in h), 0)
        v_col = next((i for i, h in enumerate(header) if i != t_col and (
            "intensity" in h or "co2" in h or "gco2" in h)), 1 if t_col == 0 else 0)
        times, values = [], []
        for n, row in enumerate(rows[1:], start=2):
            t = _time(row[t_col]) if t_col < len(row) else None
            try:
                v = float(row[v_col])
            except (ValueError, IndexError):
                v = None
            if t is None or v is None or not np.isfinite(v) or v < 0:
                raise ConfigError(
                    f"{KEY} = {str(path)!r}, line {n}: {','.join(row)!r} is not "
                    f"'timestamp, g CO2e/kWh' (ISO 8601 or Unix seconds; intensity >= 0)")
            times.append(t)
            values.append(v)
        order = np.argsort(times)
        starts, vals = np.asarray(times)[order], np.asarray(values)[order]
        if np.any(np.diff(starts) == 0):
            raise ConfigError(f"{KEY} = {str(path)!r}: a timestamp appears twice")
        step = float(np.median(np.diff(starts))) if len(starts) > 1 else 3600.0
        return cls(str(path), starts, vals, float(starts[-1] + step))

    def covers(self, start: float, end: float) -> bool:
        return self.starts[0] <= start and end <= self.end

    def mean(self, start: float, end: float) -> float | None:
        """Time-weighted mean intensity over [start, end]; None outside the file's range."""
        if not self.covers(start, end):
            return None
        if end <= start:
            return float(self.values[np.searchsorted(self.starts, start, "right") - 1])
        edges = np.append(self.starts, self.end)
        lo, hi = np.clip(edges[:-1], start, end), np.clip(edges[1:], start, end)
        return float(np.sum(self.values * (hi - lo)) / (end - start))

    def describe(self) -> str:
        first = datetime.fromtimestamp(self.starts[0], timezone.utc).isoformat()
        last = datetime.fromtimestamp(self.end, timezone.utc).isoformat()
        return f"{self.path} ({len(self.values)} rows, {first} to {last})"
