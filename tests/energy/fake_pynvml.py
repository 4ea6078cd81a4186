"""A stand-in for the `pynvml` module (nvidia-ml-py) with its real names, constants and units.

Mirrors pynvml 13: `NVMLError(value)` maps to the subclass for the code
(`NVMLError_NotSupported` for NVML_ERROR_NOT_SUPPORTED = 3, ...), handles are opaque,
`nvmlDeviceGetTotalEnergyConsumption` returns millijoules since driver load (an int),
`nvmlDeviceGetPowerUsage` milliwatts (an int), names are `str`. Calls before `nvmlInit`
raise NVMLError_Uninitialized, as the real library does.
"""

from __future__ import annotations

import threading
import types
from dataclasses import dataclass, field

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15


class NVMLError(Exception):
    _valClassMapping: dict[int, type] = {}

    def __new__(cls, value):
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value):
        super().__init__(value)

    def __str__(self):
        return {1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported",
                6: "Not Found", 12: "NVML Shared Library Not Found",
                15: "GPU is lost"}.get(self.value, "Unknown")


def _sub(name: str, value: int) -> type:
    cls = type(name, (NVMLError,), {"__new__": lambda typ, *a: NVMLError.__new__(typ, value)})
    NVMLError._valClassMapping[value] = cls
    return cls


NVMLError_Uninitialized = _sub("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _sub("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _sub("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NotFound = _sub("NVMLError_NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_LibraryNotFound = _sub("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_GpuIsLost = _sub("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)


@dataclass
class FakeGpu:
    name: str
    uuid: str
    power_mw: int = 100_000
    energy_mj: int | None = 0  # None: no counter (pre-Volta): NotSupported
    lost: bool = False  # fell off the bus: every read raises NVMLError_GpuIsLost
    power_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_pynvml(gpus: list[FakeGpu] | None, driver: str = "550.54.15") -> types.ModuleType:
    """A module object; `gpus=None` behaves like a machine without the driver."""
    mod = types.ModuleType("pynvml")
    state = {"init": 0, "shutdown": 0}
    mod.state = state
    mod.gpus = gpus
    for k, v in globals().items():
        if k.startswith(("NVML_", "NVMLError")):
            setattr(mod, k, v)

    def need_init():
        if state["init"] <= state["shutdown"]:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def nvmlInit():
        if gpus is None:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        state["init"] += 1

    def nvmlShutdown():
        need_init()
        state["shutdown"] += 1

    def nvmlSystemGetDriverVersion():
        need_init()
        return driver

    def nvmlDeviceGetCount():
        need_init()
        return len(gpus)

    def nvmlDeviceGetHandleByIndex(index):
        need_init()
        if not 0 <= index < len(gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpus[index]

    def nvmlDeviceGetHandleByUUID(uuid):
        need_init()
        for g in gpus:
            if g.uuid == uuid:
                return g
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetName(handle):
        need_init()
        return handle.name

    def nvmlDeviceGetUUID(handle):
        need_init()
        return handle.uuid

    def need_gpu(handle):
        if handle.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)

    def nvmlDeviceGetTotalEnergyConsumption(handle):
        need_init()
        need_gpu(handle)
        if handle.energy_mj is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return handle.energy_mj

    def nvmlDeviceGetPowerUsage(handle):
        need_init()
        need_gpu(handle)
        with handle.lock:
            handle.power_calls += 1
        return handle.power_mw

    for fn in (nvmlInit, nvmlShutdown, nvmlSystemGetDriverVersion, nvmlDeviceGetCount,
               nvmlDeviceGetHandleByIndex, nvmlDeviceGetHandleByUUID, nvmlDeviceGetName,
               nvmlDeviceGetUUID, nvmlDeviceGetTotalEnergyConsumption, nvmlDeviceGetPowerUsage):
        setattr(mod, fn.__name__, fn)
    return mod
