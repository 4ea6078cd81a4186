"""Which run (process, machine, meter) produced each trial of a study.

A study can be resumed, on another machine or with another meter (`auto` uses what the
machine has). Each run that runs trials records itself on the study and on its trials, so
that a study whose trials come from more than one machine or energy method says so instead
of silently pooling their joules.

Study attr per run:  `run:<run_id>` = {run_id, host, pid, started_utc, hardware,
                     hardware_id, energy_method, meter, idle_power_w, idle_note,
                     config_changes, tuning_energy_version, torch_version}
Trial attrs:         `run_id`, `hardware_id` (and `energy_method`, from the objective)

    run_id       "<host>:<UTC start, YYYYMMDDTHHMMSS.ffffffZ>:<pid>" (microseconds: two runs
                 of one process in the same second are two runs)
    hardware_id  "<host>: <cpu model>" and " + <gpu names>" when training may use GPUs

The study attrs `hardware`, `energy_method` and `meter` keep what the first run recorded.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from tuning_energy.energy.hardware import usable_cores

RUN_PREFIX = "run:"


def hardware_info() -> dict[str, Any]:
    """The machine: host, CPU model and cores, GPUs torch sees, platform, Python."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    usable = usable_cores()
    return {"host": socket.gethostname(), "cpu": cpu, "cpu_cores": os.cpu_count(),
            "cpu_cores_usable": usable, "gpus": gpus or "none",
            "platform": platform.platform(), "python": platform.python_version()}


def hardware_id(hardware: Mapping[str, Any]) -> str:
    """A short, readable name of the machine: '<host>: <cpu>[ + <gpus>]'."""
    gpus = hardware.get("gpus")
    gpu_part = f" + {', '.join(map(str, gpus))}" if isinstance(gpus, list) and gpus else ""
    return f"{hardware.get('host', '?')}: {hardware.get('cpu', '?')}{gpu_part}"


def new_run_id(host: str | None = None, pid: int | None = None,
               now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return (f"{host or socket.gethostname()}:{now.strftime('%Y%m%dT%H%M%S.%fZ')}:"
            f"{os.getpid() if pid is None else pid}")


def run_record(run_id: str, hardware: dict[str, Any], energy_method: str,
               meter: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The study attr `run:<run_id>`."""
    host, started, pid = run_id.rsplit(":", 2)
    return {"run_id": run_id, "host": host, "pid": int(pid), "started_utc": started,
            "hardware": hardware, "hardware_id": hardware_id(hardware),
            "energy_method": energy_method, "meter": meter, **extra}


def runs(study_attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The study's run records, oldest first."""
    records = [v for k, v in study_attrs.items() if k.startswith(RUN_PREFIX) and
               isinstance(v, dict)]
    return sorted(records, key=lambda r: (str(r.get("started_utc")), str(r.get("run_id"))))


def provenance(trials_attrs: Iterable[Mapping[str, Any]]) -> dict[str, Counter]:
    """Trials per machine (`hardware_id`) and per energy method, over trials that carry them."""
    machines: Counter = Counter()
    methods: Counter = Counter()
    for a in trials_attrs:
        if a.get("hardware_id"):
            machines[a["hardware_id"]] += 1
        if a.get("energy_method"):
            methods[a["energy_method"]] += 1
    return {"machines": machines, "energy_methods": methods}


def _counted(c: Mapping[str, int]) -> str:
    return "; ".join(f"{k} ({n} trial{'s' if n != 1 else ''})" for k, n in c.items())


def mixture_lines(machines: Mapping[str, int], methods: Mapping[str, int]) -> list[str]:
    """What a summary says when a study's trials come from several machines or methods."""
    lines = []
    if len(machines) > 1:
        lines.append(f"MIXED      this study's trials ran on {len(machines)} machines: "
                     f"{_counted(machines)}; its energy figures pool them")
    if len(methods) > 1:
        lines.append(f"MIXED      this study's energy comes from {len(methods)} methods: "
                     f"{_counted(methods)}; its energy figures pool them")
    return lines


def record_run(study: Any, hardware: dict[str, Any], choice: Any, out,
               **extra: Any) -> dict[str, Any]:
    """Record this run on `study` (`run:<run_id>`); returns the attrs each of its trials gets.

    `choice` is the run's `MeterChoice`. Prints a note when earlier trials of the study ran
    on another machine or were metered by another method.
    """
    import torch

    from tuning_energy._version import __version__

    run_id = new_run_id(hardware.get("host"))
    method = choice.meter.method
    record = run_record(run_id, hardware, method, choice.describe(), **extra,
                        tuning_energy_version=__version__, torch_version=torch.__version__)
    earlier = provenance(t.user_attrs for t in study.get_trials(deepcopy=False)
                         if "energy_j" in t.user_attrs)
    machines, methods = set(earlier["machines"]), set(earlier["energy_methods"])
    if machines - {record["hardware_id"]}:
        print(f"note: earlier trials of this study ran on {'; '.join(sorted(machines))}; this "
              f"run is on {record['hardware_id']}: the study will mix machines (each trial's "
              f"hardware_id says where it ran)", file=out)
    if methods - {method}:
        print(f"note: earlier trials of this study were metered by {', '.join(sorted(methods))};"
              f" this run uses {method}: the study will mix energy methods", file=out)
    study.set_user_attr(f"{RUN_PREFIX}{run_id}", record)
    return {"run_id": run_id, "hardware_id": record["hardware_id"]}
