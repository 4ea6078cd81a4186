"""Which physical GPU is `cuda:N` of this process: CUDA's view mapped onto NVML's.

torch's `cuda:N` is the N-th device CUDA shows this process: `CUDA_VISIBLE_DEVICES` picks
and orders them (by index, by `GPU-` UUID or a unique prefix of one, or MIG instances by
`MIG-` id), and `CUDA_DEVICE_ORDER` orders indices (FASTEST_FIRST by default, not PCI bus
order). NVML lists every physical GPU of the machine in PCI bus order, whatever the
variable says. The join that holds in every case is the UUID:

- when torch sees CUDA, `torch.cuda.get_device_properties(n).uuid` for each visible `n`
  (exact: it is CUDA's own answer, for any selector and any order);
- otherwise `CUDA_VISIBLE_DEVICES` is parsed as CUDA parses it (torch's
  `_parse_visible_devices` spells the rules out): indices with strtoul semantics, the list
  ends at the first invalid entry or index out of range, a repeated entry makes the list
  empty, UUID prefixes must match exactly one GPU, and a list is all indices, all `GPU-`
  UUIDs or all `MIG-` ids. Indices are taken in NVML (PCI bus) order, which is CUDA's
  only with `CUDA_DEVICE_ORDER=PCI_BUS_ID` or GPUs of one model; the result says so.

A MIG instance has no energy counter of its own: NVML measures only the whole GPU, which
the other instances share, so a MIG instance is listed with `nvml_index = None`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: How the visible GPUs were found (stored on the study with the meter).
BY_TORCH = "torch CUDA device UUIDs"
BY_ENV = "CUDA_VISIBLE_DEVICES"
ALL_GPUS = "all NVML GPUs in PCI bus order (CUDA_VISIBLE_DEVICES unset)"


@dataclass(frozen=True)
class VisibleGpu:
    """One device CUDA shows this process."""

    cuda_index: int  # N of cuda:N
    nvml_index: int | None  # the physical GPU; None: a MIG instance or unknown to NVML
    uuid: str  # NVML's spelling (GPU-...) when matched, else CUDA's (MIG-...)


def normal_uuid(uuid: str) -> str:
    """UUID without NVML's `GPU-` / `MIG-` prefix, lower case (torch prints it bare)."""
    u = uuid.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if u.startswith(prefix):
            return u[len(prefix):]
    return u


def _strtoul(s: str) -> int:
    """The leading (signed) integer of `s`, as C's strtoul reads it; -1 when none."""
    end = 1 if s[:1] in ("+", "-") else 0
    while end < len(s) and s[end].isdigit():
        end += 1
    digits = s[:end]
    return int(digits) if digits.lstrip("+-") else -1


def parse_visible_devices(raw: str | None) -> list[int] | list[str] | None:
    """`CUDA_VISIBLE_DEVICES` as CUDA reads it: indices, `GPU-`/`MIG-` ids, or None (unset)."""
    if raw is None:
        return None
    for prefix in ("GPU-", "MIG-"):
        if raw.startswith(prefix):
            ids: list[str] = []
            for item in raw.split(","):
                if item in ids:
                    return []  # a repeated id: CUDA shows no device
                if not item.startswith(prefix):
                    break  # CUDA stops at the first entry of another kind
                ids.append(item)
            return ids
    indices: list[int] = []
    for item in raw.split(","):
        n = _strtoul(item.strip())
        if n in indices:
            return []
        if n < 0:
            break
        indices.append(n)
    return indices


def torch_cuda_uuids() -> list[str] | None:
    """UUIDs of the devices torch sees, in `cuda:N` order; None when torch sees no CUDA."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    try:
        if not torch.cuda.is_available():
            return None
        return [str(torch.cuda.get_device_properties(i).uuid)
                for i in range(torch.cuda.device_count())]
    except (RuntimeError, AssertionError, AttributeError):  # pragma: no cover - broken CUDA
        return None


def _by_prefix(candidate: str, nvml_uuids: Sequence[str]) -> int | None:
    """The one NVML GPU whose UUID starts with `candidate` (None: none, or ambiguous)."""
    hits = [i for i, u in enumerate(nvml_uuids) if normal_uuid(u).startswith(normal_uuid(candidate))]
    return hits[0] if len(hits) == 1 else None


def visible_gpus(nvml_uuids: Sequence[str], environ: Mapping[str, str],
                 cuda_uuids: Sequence[str] | None) -> tuple[list[VisibleGpu], str]:
    """The devices CUDA shows this process, in `cuda:N` order, and how they were found.

    nvml_uuids: the UUID of every NVML GPU, by NVML index. cuda_uuids: torch's UUIDs of the
    visible devices (None when torch sees no CUDA: `CUDA_VISIBLE_DEVICES` is parsed).
    """
    if cuda_uuids is not None:
        by_uuid = {normal_uuid(u): i for i, u in enumerate(nvml_uuids)}
        out = []
        for n, u in enumerate(cuda_uuids):
            i = by_uuid.get(normal_uuid(u))
            out.append(VisibleGpu(n, i, nvml_uuids[i] if i is not None else u))
        return out, BY_TORCH
    parsed = parse_visible_devices(environ.get("CUDA_VISIBLE_DEVICES"))
    if parsed is None:
        return [VisibleGpu(i, i, u) for i, u in enumerate(nvml_uuids)], ALL_GPUS
    out = []
    for n, item in enumerate(parsed):
        if isinstance(item, int):
            if item >= len(nvml_uuids):
                break  # CUDA stops at the first index out of range
            out.append(VisibleGpu(n, item, nvml_uuids[item]))
        elif item.startswith("MIG-"):
            out.append(VisibleGpu(n, None, item))
        else:
            i = _by_prefix(item, nvml_uuids)
            if i is None:
                break  # no GPU, or more than one, has this UUID prefix: CUDA stops here
            if any(g.nvml_index == i for g in out):
                return [], BY_ENV  # two prefixes of one GPU: a repeated entry
            out.append(VisibleGpu(n, i, nvml_uuids[i]))
    how = BY_ENV
    if parsed and isinstance(parsed[0], int):
        how += " (indices in PCI bus order: CUDA's order with CUDA_DEVICE_ORDER=PCI_BUS_ID)"
    return out, how
