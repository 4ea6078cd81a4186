"""What every figure shares: a colour and line style per strategy, the energy unit of its
axes (J, kJ or MJ, picked from the data: `energy_unit`), and the footnote that names the
energy method (and says ESTIMATE when it is one); and `use_file_backend`, which the writers
of figure files (report.write_figures, compare_report.write_compare) call before they draw:
importing a figure module never switches matplotlib's backend."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from tuning_energy.energy.methods import MethodLabel


def use_file_backend() -> None:
    """Draw into files, not windows: matplotlib's Agg backend (no display needed)."""
    matplotlib.use("Agg")


COLORS = {"grid": "#1b9e77", "random": "#d95f02", "bayes": "#7570b3"}
_EXTRA = plt.get_cmap("tab10").colors


def strategy_color(name: str, order: list[str] | None = None) -> str:
    """A strategy's colour; a pruned variant (`tpe+asha`) takes a darker shade of its
    strategy's colour (and dashed or dotted lines: PRUNER_LINESTYLES)."""
    import zlib

    base = str(name).split("+")[0]
    if base in COLORS:
        color = COLORS[base]
    else:
        bases = list(dict.fromkeys(str(o).split("+")[0] for o in order or []))
        i = bases.index(base) if base in bases else zlib.crc32(base.encode())  # stable
        color = matplotlib.colors.to_hex(_EXTRA[(i + 3) % len(_EXTRA)])
    if "+" in str(name):  # darker, so that it shows where it runs over its strategy's line
        r, g, b = matplotlib.colors.to_rgb(color)
        color = matplotlib.colors.to_hex((r * 0.6, g * 0.6, b * 0.6))
    return color


#: Pruned variants (`tpe+asha`) are drawn in their strategy's colour with these lines.
PRUNER_LINESTYLES = {"median": ":", "asha": "--", "hyperband": "-."}


def strategy_linestyle(name: str) -> str:
    return PRUNER_LINESTYLES.get(str(name).partition("+")[2], "-")


#: Energy units of figure axes, by size: (joules per unit, name).
ENERGY_UNITS = ((1e6, "MJ"), (1e3, "kJ"), (1.0, "J"))


def energy_unit(joules) -> tuple[float, str]:
    """(joules per unit, unit name) for energies of this size: the largest unit of
    ENERGY_UNITS in which the largest finite value is at least 1 (J below 1 kJ), so that
    an axis reads '0.33 J', not '0.000327 kJ'. `joules`: a number or numbers."""
    import numpy as np

    x = np.asarray(joules, dtype=float).ravel()
    x = np.abs(x[np.isfinite(x)])
    top = float(x.max()) if x.size else 0.0
    return next(((scale, name) for scale, name in ENERGY_UNITS if top >= scale),
                ENERGY_UNITS[-1])


def method_note(methods: MethodLabel) -> str:
    """'energy method: rapl', 'energy: an ESTIMATE (estimate-cpu-tdp-tree), modelled, not
    measured' or 'energy: nvml-counter+estimate-cpu-tdp-tree, partly an ESTIMATE: cpu0 from ...'."""
    if not methods.methods:
        return "energy method: not recorded"
    text = ", ".join(methods.methods)
    if methods.fully_estimated:
        return f"energy: {methods.text()}"
    if methods.any_estimate:
        return f"energy: {text}, {methods.text()}"
    return f"energy method: {text}"


def finish(fig: Figure, methods: MethodLabel, extra: str = "") -> Figure:
    note = method_note(methods) + (f"   |   {extra}" if extra else "")
    color = "#b00000" if methods.any_estimate else "#444444"
    fig.text(0.01, 0.01, note, fontsize=8, color=color, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def strategy_order(df: pd.DataFrame) -> list[str]:
    order = [s for s in ("grid", "random", "bayes") if s in set(df["strategy"])]
    return order + sorted(set(df["strategy"].dropna()) - set(order))
