"""What an energy method says about how its joules were obtained: measured, estimated, or
partly estimated, and which devices the estimate covers.

A method is one meter's (`rapl`, `nvml-counter`, `estimate-cpu-tdp-tree`) or several joined with
`+` by `CompositeMeter` (`nvml-counter+estimate-cpu-tdp-tree`: the GPUs counted by NVML, the CPU
estimated, what `auto` gives on a GPU machine whose RAPL is not readable). Workers sharing a
package-wide meter add `-shared-cputime` to a part (`estimate-cpu-tdp-tree-shared-cputime`).

A part is an estimate when its name starts with `estimate`. Which devices a part covered:
a part naming a GPU (`nvml-*`, `estimate-gpu-*`) covers the `gpuN` devices, any other part
(`rapl`, `estimate-cpu-tdp-tree`) the rest (`cpu0`, `dram0`, ...), as the meters name them.

`label(methods, devices)` is the one place that decides; every report, figure and note
that names a method shows `MethodLabel.text()` beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ESTIMATE_PREFIX = "estimate"
GPU_PREFIX = "gpu"


def parts(method: str) -> list[str]:
    """The meters' methods a (composite) method is made of: 'nvml-counter+rapl' -> 2."""
    return [p for p in str(method).split("+") if p]


def is_estimated_part(part: str) -> bool:
    return part.startswith(ESTIMATE_PREFIX)


def is_estimate(method: str) -> bool:
    """True when any part of `method` is an estimate (`nvml-counter+estimate-cpu-tdp-tree`)."""
    return any(is_estimated_part(p) for p in parts(method))


def part_devices(part: str, devices: Iterable[str]) -> list[str]:
    """Which of `devices` (one trial's or study's `energy_by_device_j` keys) `part` covered."""
    gpu = part.startswith("nvml") or f"-{GPU_PREFIX}" in part
    return sorted(d for d in devices if str(d).startswith(GPU_PREFIX) == gpu)


@dataclass(frozen=True)
class MethodLabel:
    """How a set of energy methods (one table's, one study's) was obtained.

    methods: the distinct methods, sorted. estimated: each estimated part -> the devices it
    covered (empty when the devices were not recorded). measured: the parts that measured.
    """

    methods: tuple[str, ...]
    estimated: dict[str, tuple[str, ...]] = field(default_factory=dict)
    measured: tuple[str, ...] = ()

    @property
    def any_estimate(self) -> bool:
        return bool(self.estimated)

    @property
    def fully_estimated(self) -> bool:
        """Every part of every method is an estimate (nothing was measured)."""
        return self.any_estimate and not self.measured

    def estimated_devices(self) -> list[str]:
        return sorted({d for devs in self.estimated.values() for d in devs})

    def text(self) -> str:
        """'' when everything was measured; 'an ESTIMATE (estimate-cpu-tdp-tree), modelled, not
        measured'; or 'partly an ESTIMATE: cpu0 from estimate-cpu-tdp-tree (the rest measured by
        nvml-counter)'."""
        if not self.any_estimate:
            return ""
        names = ", ".join(self.estimated)
        if self.fully_estimated:
            return f"an ESTIMATE ({names}), modelled, not measured"
        which = "; ".join(f"{', '.join(devs)} from {p}" if devs else p
                          for p, devs in self.estimated.items())
        return (f"partly an ESTIMATE: {which} (the rest measured by "
                f"{', '.join(self.measured)})")


def label(methods: Iterable[str | None],
          devices: Mapping[str, Iterable[str]] | None = None) -> MethodLabel:
    """The label of `methods` (None entries are skipped); `devices`: per method, the
    devices its trials recorded energy for (optional: without it no device is named)."""
    distinct = sorted({str(m) for m in methods if m is not None and str(m)})
    devices = devices or {}
    estimated: dict[str, set[str]] = {}
    measured: set[str] = set()
    for m in distinct:
        for p in parts(m):
            if is_estimated_part(p):
                estimated.setdefault(p, set()).update(part_devices(p, devices.get(m, ())))
            else:
                measured.add(p)
    return MethodLabel(tuple(distinct), {p: tuple(sorted(d)) for p, d in
                                         sorted(estimated.items())}, tuple(sorted(measured)))
