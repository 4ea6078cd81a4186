"""The `nvml` meter: NVIDIA GPU energy through NVML (module `pynvml`, package nvidia-ml-py).

Per GPU, one of two methods, recorded per device and in the meter's `method`:

- `nvml-counter`: `nvmlDeviceGetTotalEnergyConsumption` (millijoules since the driver
  loaded; Volta and newer), read at the window's edges. Exact to the driver's counter.
- `nvml-power-sampling`: for GPUs whose counter raises `NVMLError_NotSupported`, a
  background thread samples `nvmlDeviceGetPowerUsage` (milliwatts) every `sample_s`
  (<= 0.1 s) and integrates with the trapezoid rule; a read also takes a fresh sample.

CUDA is synchronised before each read (`sync`) so that queued kernels are charged to the
window that launched them. GPUs: the CUDA indices in `gpus` (as in `cuda:N`; the factory
passes the training device, or `meter.gpus`), or every GPU visible to CUDA. `cuda:N` is
mapped to the physical GPU by UUID (`gpus.py`: torch's device UUIDs, else
`CUDA_VISIBLE_DEVICES` parsed as CUDA does), so `by_device_j` keys are `gpu{cuda index}`
and `describe()` names each one's NVML index and UUID. A MIG instance cannot be metered
(NVML measures only the whole GPU, shared by the other instances): `MeterUnavailable`.

A reading that cannot be trusted makes the windows around it unknown for that GPU, never
0 (`Meter.faults`): an NVML error on read (the GPU fell off the bus, was reset, ...) leaves
the GPU out of that reading; a counter lower than the previous reading (it went backwards)
and a failed power sample (a gap in the integral) are faults.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tuning_energy.energy.base import Meter
from tuning_energy.energy.gpus import VisibleGpu, torch_cuda_uuids, visible_gpus
from tuning_energy.errors import MeterUnavailable

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


@dataclass
class _Gpu:
    device: str  # gpu{cuda index}
    visible: VisibleGpu
    handle: Any
    name: str
    method: str
    start_mj: int = 0  # counter at meter creation (counter path)
    last_mj: int = 0  # counter at the last good reading (counter path)
    total_j: float = 0.0  # integrated energy (sampling path)
    last_t: float = 0.0
    last_w: float | None = 0.0  # None: the last sample failed (sampling path)
    faults: int = 0
    problem: str = ""  # the last fault or failed reading, for messages


class NvmlMeter(Meter):
    """Cumulative joules per GPU from NVML counters, or integrated power samples."""

    def __init__(self, gpus: Sequence[int] | None = None, *, nvml: ModuleType | None = None,
                 sync: Callable[[], None] | None = cuda_sync, sample_s: float = MAX_SAMPLE_S,
                 environ: Mapping[str, str] | None = None,
                 cuda_uuids: Callable[[], Sequence[str] | None] | None = torch_cuda_uuids
                 ) -> None:
        """gpus: CUDA indices to meter (None: every visible GPU). cuda_uuids: torch's UUIDs
        of the visible devices (None, or a function returning None: parse
        CUDA_VISIBLE_DEVICES from `environ` instead)."""
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
            handles = [n.nvmlDeviceGetHandleByIndex(i) for i in range(n.nvmlDeviceGetCount())]
            uuids = [_text(n.nvmlDeviceGetUUID(h)) for h in handles]
            visible, self.visible_by = visible_gpus(
                uuids, env, cuda_uuids() if cuda_uuids is not None else None)
            self.cuda_visible_devices = env.get("CUDA_VISIBLE_DEVICES")
            chosen = self._choose(visible, gpus)
            self.gpus = [self._probe(g, handles[g.nvml_index]) for g in chosen]
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

    def _choose(self, visible: list[VisibleGpu], gpus: Sequence[int] | None) -> list[VisibleGpu]:
        where = (f"CUDA_VISIBLE_DEVICES = {self.cuda_visible_devices!r}; found from "
                 f"{self.visible_by}")
        if gpus is None:
            chosen = visible
            if not chosen:
                raise MeterUnavailable(f"NVML sees no GPU visible to this process ({where}); "
                                       f"use meter.kind = 'rapl' or 'estimate'")
        else:
            missing = [g for g in gpus if not 0 <= g < len(visible)]
            if missing:
                seen = f"indices 0..{len(visible) - 1}" if visible else "none"
                raise MeterUnavailable(
                    f"GPU cuda:{missing[0]} is not visible to this process ({len(visible)} "
                    f"visible: {seen}; {where}); meter.gpus and train.device name CUDA "
                    f"indices among the visible GPUs")
            chosen = [visible[g] for g in gpus]
        for g in chosen:
            if g.nvml_index is None:
                raise MeterUnavailable(
                    f"cuda:{g.cuda_index} is {g.uuid}, not a whole GPU that NVML lists (a MIG "
                    f"instance): NVML measures only the whole GPU, shared with its other "
                    f"instances, so its energy is not this process's; use meter.kind = "
                    f"'rapl' or 'estimate' ({where})")
        return chosen

    def _probe(self, visible: VisibleGpu, handle: Any) -> _Gpu:
        n = self.nvml
        device = f"gpu{visible.cuda_index}"
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
            return _Gpu(device, visible, handle, name, SAMPLING, last_t=time.perf_counter(),
                        last_w=watts)
        return _Gpu(device, visible, handle, name, COUNTER, start_mj=start_mj, last_mj=start_mj)

    # ------------------------------------------------------------------ sampling path

    def _sample(self) -> None:
        with self._lock:
            for g in self.gpus:
                if g.method != SAMPLING:
                    continue
                try:
                    watts = self.nvml.nvmlDeviceGetPowerUsage(g.handle) / 1000.0
                except self.nvml.NVMLError as exc:
                    if g.last_w is not None:  # a gap in the integral: one fault per gap
                        g.faults += 1
                    g.last_w = None
                    g.problem = _read_failed("power reading", exc)
                    continue
                now = time.perf_counter()
                if g.last_w is not None:
                    g.total_j += (g.last_w + watts) / 2 * (now - g.last_t)
                g.last_t, g.last_w = now, watts

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.sample_s):
            self._sample()

    # ------------------------------------------------------------------ interface

    def sync(self) -> None:
        if self._sync is not None:
            self._sync()

    def read_j(self) -> dict[str, float]:
        if self._thread is not None:
            self._sample()
        out = {}
        for g in self.gpus:
            if g.method == SAMPLING:
                with self._lock:
                    if g.last_w is not None:
                        out[g.device] = g.total_j
                continue
            try:
                now_mj = int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(g.handle))
            except self.nvml.NVMLError as exc:
                with self._lock:
                    g.problem = _read_failed("energy counter", exc)
                continue
            with self._lock:
                if now_mj < g.last_mj:
                    g.faults += 1
                    g.problem = (f"the NVML energy counter went backwards, from {g.last_mj} mJ "
                                 f"to {now_mj} mJ (a GPU reset or driver reload?)")
                g.last_mj = now_mj
            out[g.device] = (now_mj - g.start_mj) / 1000.0
        return out

    def faults(self) -> dict[str, tuple[int, str]]:
        with self._lock:
            return {g.device: (g.faults, g.problem) for g in self.gpus if g.problem}

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
            "gpus": {g.device: {"name": g.name, "method": g.method,
                                "nvml_index": g.visible.nvml_index, "uuid": g.visible.uuid}
                     for g in self.gpus},
            "cuda_visible_devices": self.cuda_visible_devices,
            "cuda_to_nvml": self.visible_by,
            "sample_s": self.sample_s if self._thread is not None else None,
            "note": "NVML GPU energy (whole GPU, all processes on it) of "
                    + ", ".join(f"{g.device} (NVML {g.visible.nvml_index}, {g.visible.uuid})"
                                for g in self.gpus),
        }


def _read_failed(what: str, exc: Exception) -> str:
    return (f"NVML {what} could not be read ({type(exc).__name__}: {exc}); the GPU may have "
            f"fallen off the bus or been reset")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
