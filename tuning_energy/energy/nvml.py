"""The `nvml` meter: NVIDIA GPU energy through NVML (module `pynvml`, package nvidia-ml-py).

Per GPU, one of two methods, recorded per device and in the meter's `method`:

- `nvml-counter`: `nvmlDeviceGetTotalEnergyConsumption` (millijoules since the driver
  loaded; Volta and newer), read at the window's edges. Exact to the driver's counter.
- `nvml-power-sampling`: for GPUs whose counter raises `NVMLError_NotSupported`, a
  background thread samples `nvmlDeviceGetPowerUsage` (milliwatts) every `sample_s`
  (<= 0.1 s) and integrates with the trapezoid rule; a read also takes a fresh sample.

CUDA is synchronised before each read (`sync`) so that queued kernels are charged to the
window that launched them. GPUs: all visible to CUDA, or the ones named in `meter.gpus`
(CUDA indices, as in `cuda:N`), honouring `CUDA_VISIBLE_DEVICES` (indices or `GPU-` UUIDs).
`by_device_j` keys are `gpu{cuda index}`. NVML enumerates GPUs in PCI bus order; CUDA does
too when `CUDA_DEVICE_ORDER=PCI_BUS_ID` (set it on mixed-GPU machines).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..errors import MeterUnavailable
from .base import Meter

COUNTER = "nvml-counter"
SAMPLING = "nvml-power-sampling"
MAX_SAMPLE_S = 0.1


def import_pynvml() -> ModuleType:
    try:
        import pynvml
    except ImportError as exc:
        raise MeterUnavailable(
            "module pynvml is not installed: `pip install nvidia-ml-py`, or use "
            "meter.kind = 'rapl' or 'estimate'") from exc
    return pynvml


def cuda_sync() -> None:
    """Wait for every initialised CUDA device (creates no CUDA context if none exists)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            torch.cuda.synchronize(i)


def visible_selectors(environ: Mapping[str, str]) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list of NVML selectors; None when unset (all GPUs).

    Like CUDA, parsing stops at the first entry that is neither an index nor a UUID.
    """
    raw = environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    out: list[str] = []
    for item in raw.split(","):
        item = item.strip()
        if item.isdigit() or item.startswith(("GPU-", "MIG-")):
            out.append(item)
        else:
            break
    return out


@dataclass
class _Gpu:
    device: str  # gpu{cuda index}
    handle: Any
    name: str
    method: str
    start_mj: int = 0  # counter at meter creation (counter path)
    total_j: float = 0.0  # integrated energy (sampling path)
    last_t: float = 0.0
    last_w: float = 0.0


class NvmlMeter(Meter):
    """Cumulative joules per GPU from NVML counters, or integrated power samples."""

    def __init__(self, gpus: Sequence[int] | None = None, *, nvml: ModuleType | None = None,
                 sync: Callable[[], None] | None = cuda_sync, sample_s: float = MAX_SAMPLE_S,
                 environ: Mapping[str, str] | None = None) -> None:
        if not 0 < sample_s <= MAX_SAMPLE_S:
            raise ValueError(f"sample_s = {sample_s}: must be in (0, {MAX_SAMPLE_S}]")
        self.nvml = nvml if nvml is not None else import_pynvml()
        self._sync = sync
        self.sample_s = sample_s
        n = self.nvml
        env = environ if environ is not None else os.environ
        try:
            n.nvmlInit()
        except n.NVMLError as exc:
            raise MeterUnavailable(
                f"NVML cannot start ({type(exc).__name__}: {exc}): no NVIDIA driver or GPU "
                f"here; use meter.kind = 'rapl' or 'estimate'") from exc
        try:
            self.driver = _text(n.nvmlSystemGetDriverVersion())
            handles = self._handles(env)
            if gpus is not None:
                missing = [g for g in gpus if g not in range(len(handles))]
                if missing:
                    raise MeterUnavailable(
                        f"meter.gpus = {list(gpus)}: GPU {missing[0]} is not visible "
                        f"({len(handles)} visible: indices 0..{len(handles) - 1}; "
                        f"CUDA_VISIBLE_DEVICES = {env.get('CUDA_VISIBLE_DEVICES')!r})")
                chosen = {g: handles[g] for g in gpus}
            else:
                chosen = dict(enumerate(handles))
            if not chosen:
                raise MeterUnavailable(
                    "NVML sees no GPU visible to this process (CUDA_VISIBLE_DEVICES = "
                    f"{env.get('CUDA_VISIBLE_DEVICES')!r}); use meter.kind = 'rapl' "
                    "or 'estimate'")
            self.gpus = [self._probe(f"gpu{i}", h) for i, h in chosen.items()]
        except BaseException:
            n.nvmlShutdown()
            raise
        methods = sorted({g.method for g in self.gpus})
        self.method = "+".join(methods)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if any(g.method == SAMPLING for g in self.gpus):
            self._thread = threading.Thread(target=self._sample_loop, name="nvml-power",
                                            daemon=True)
            self._thread.start()

    def _handles(self, environ: Mapping[str, str]) -> list[Any]:
        n = self.nvml
        selectors = visible_selectors(environ)
        if selectors is None:
            return [n.nvmlDeviceGetHandleByIndex(i) for i in range(n.nvmlDeviceGetCount())]
        handles = []
        for sel in selectors:
            try:
                handles.append(n.nvmlDeviceGetHandleByIndex(int(sel)) if sel.isdigit()
                               else n.nvmlDeviceGetHandleByUUID(sel))
            except n.NVMLError:
                break  # CUDA also ignores everything from the first invalid entry on
        return handles

    def _probe(self, device: str, handle: Any) -> _Gpu:
        n = self.nvml
        name = _text(n.nvmlDeviceGetName(handle))
        try:
            start_mj = int(n.nvmlDeviceGetTotalEnergyConsumption(handle))
        except n.NVMLError_NotSupported:
            try:
                watts = n.nvmlDeviceGetPowerUsage(handle) / 1000.0
            except n.NVMLError as exc:
                raise MeterUnavailable(
                    f"{device} ({name}): neither the energy counter nor power readings are "
                    f"supported ({exc}); use meter.kind = 'estimate'") from exc
            return _Gpu(device, handle, name, SAMPLING, last_t=time.perf_counter(),
                        last_w=watts)
        return _Gpu(device, handle, name, COUNTER, start_mj=start_mj)

    # ------------------------------------------------------------------ sampling path

    def _sample(self) -> None:
        with self._lock:
            for g in self.gpus:
                if g.method != SAMPLING:
                    continue
                watts = self.nvml.nvmlDeviceGetPowerUsage(g.handle) / 1000.0
                now = time.perf_counter()
                g.total_j += (g.last_w + watts) / 2 * (now - g.last_t)
                g.last_t, g.last_w = now, watts

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.sample_s):
            try:
                self._sample()
            except self.nvml.NVMLError:  # pragma: no cover - a transient driver error
                continue

    # ------------------------------------------------------------------ interface

    def sync(self) -> None:
        if self._sync is not None:
            self._sync()

    def read_j(self) -> dict[str, float]:
        if self._thread is not None:
            self._sample()
        out = {}
        for g in self.gpus:
            if g.method == COUNTER:
                now_mj = int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle))
                out[g.device] = (now_mj - g.start_mj) / 1000.0
            else:
                with self._lock:
                    out[g.device] = g.total_j
        return out

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:  # pragma: no cover
            pass

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kind": "nvml",
            "driver": self.driver,
            "gpus": {g.device: {"name": g.name, "method": g.method} for g in self.gpus},
            "sample_s": self.sample_s if self._thread is not None else None,
            "note": "NVML GPU energy (whole GPU, all processes on it)",
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
