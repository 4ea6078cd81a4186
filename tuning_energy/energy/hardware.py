"""The environment a study ran in, as a short label (del Rey et al.: the environment moves
energy as much as the model does).

`--environment NAME` names it; by default the label is made from the device, the CPU or GPU
model and the torch threads: `cpu: AMD EPYC, 1 thread`, `cuda: NVIDIA H100 80GB HBM3`. The
label is the study attr `environment`; a study stored before it existed gets the label its
stored `hardware`, `config.train.device` and `torch_threads` give. No torch import here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from tuning_energy.errors import ConfigError

MAX_LABEL = 64


def usable_cores() -> int:
    """Cores this process may run on (respects affinity and cgroup cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_label(label: str) -> str:
    """An `--environment` label: printable, at most 64 characters."""
    if not label.strip() or len(label) > MAX_LABEL or not label.isprintable():
        raise ConfigError(f"--environment = {label!r}: must be 1 to {MAX_LABEL} printable "
                          f"characters (e.g. laptop, gpu-server)")
    return label.strip()


def short_cpu(name: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz' -> 'Intel Xeon Platinum 8375C'."""
    name = re.sub(r"\((R|TM|tm|r)\)", "", name)
    name = re.sub(r"\s*@.*$", "", name)
    name = re.sub(r"\b(CPU|Processor|\d+-Core)\b", "", name)
    return re.sub(r"\s+", " ", name).strip() or "unknown CPU"


def environment_label(device: str, hardware: Mapping[str, Any], torch_threads: int) -> str:
    """The default label: device, CPU or GPU model, and threads on a CPU."""
    if device.startswith("cuda"):
        gpus = hardware.get("gpus")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        name = gpus[index] if isinstance(gpus, list) and index < len(gpus) else "GPU"
        return f"{device}: {name}"
    threads = f"{torch_threads} thread{'' if torch_threads == 1 else 's'}"
    return f"cpu: {short_cpu(str(hardware.get('cpu') or ''))}, {threads}"


def environment_of(study_attrs: Mapping[str, Any]) -> str:
    """The study's `environment` attr, or for a study stored without one the default label
    from its stored hardware, device and threads."""
    label = study_attrs.get("environment")
    if isinstance(label, str) and label:
        return label
    hardware = study_attrs.get("hardware") or {}
    hardware = hardware if isinstance(hardware, Mapping) else {}
    train = ((study_attrs.get("config") or {}).get("train") or {})
    device = str(train.get("device") or "cpu")
    if device == "auto":
        device = "cuda" if isinstance(hardware.get("gpus"), list) and hardware["gpus"] else "cpu"
    threads = study_attrs.get("torch_threads") or train.get("torch_threads") or 1
    return environment_label(device, hardware, int(threads))


def slug(label: str) -> str:
    """A label as a file-name part: 'cpu: AMD EPYC, 2 threads' -> 'cpu-amd-epyc-2-threads'."""
    return re.sub(r"[^a-z0-9._]+", "-", label.lower()).strip("-") or "env"
