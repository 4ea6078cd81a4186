"""`meter_vs_codecarbon` / `meter_vs_zeus`: our meter's window beside the tools users have.

Window cost: one begin + end of our `estimate` meter, of CodeCarbon's
`OfflineEmissionsTracker` (the `crosscheck` extra: offline, country set, no file written,
its logging silenced; both of its window APIs, `start_task`/`stop_task` as our
cross-check uses it and `start`/`stop`) and of Zeus's `ZeusMonitor`
(`begin_window`/`end_window`, the `bench` extra) where it builds, all interleaved. The
row divides ours by the cheapest of the other tool's windows.

Readings: the same busy window (one default trial's training: `train.fit`, default
parameters, on digits) measured by our meter with the project's CodeCarbon cross-check
(`tuning_energy.energy.crosscheck`, as `--cross-check codecarbon` stores it) and by Zeus
around it; each reading with its tool's method.
"""

from __future__ import annotations

import contextlib
import io
import logging
import statistics
import time
import warnings
from typing import Any

from tuning_energy.energy import EstimateMeter

from .common import Context, interleave, row, say

GOAL_VS_CODECARBON = 0.01
COUNTRY = "USA"  # CodeCarbon needs a country offline; its energy does not depend on it


class _Captured(logging.Handler):
    """Keeps a library's log records (the reasons it gives for what it cannot measure)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@contextlib.contextmanager
def _quiet(logger_name: str, level: int = logging.INFO):
    """Silence a library (its loggers, warnings, and what it prints), keeping it all."""
    log = logging.getLogger(logger_name)
    handler = _Captured()
    old = (log.level, log.propagate, list(log.handlers))
    log.handlers, log.propagate = [handler], False
    log.setLevel(level)
    out = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(out):
            warnings.simplefilter("ignore")
            yield handler.lines
    finally:
        log.setLevel(old[0])
        log.propagate, log.handlers = old[1], old[2]
        printed = [ln.strip() for ln in out.getvalue().splitlines() if ln.strip()]
        handler.lines.extend(f"printed: {ln}" for ln in printed)
        handler.lines[:] = [ln if len(ln) <= 160 else ln[:157] + "..." for ln in handler.lines]


def build_codecarbon() -> tuple[Any, dict[str, Any]]:
    """An OfflineEmissionsTracker as our cross-check builds it, or (None, why not). A
    tracker that was `stop()`ped cannot run tasks any more: each API gets its own."""
    with _quiet("codecarbon", logging.ERROR) as said:
        try:
            import codecarbon
            from codecarbon import OfflineEmissionsTracker
        except ImportError as exc:
            return None, {"why_not": f"not installed ({exc}): pip install "
                                     "'tuning-energy[crosscheck]'"}
        tracker = OfflineEmissionsTracker(
            project_name="tuning-energy-bench", country_iso_code=COUNTRY, save_to_file=False,
            log_level="error", tracking_mode="process", measure_power_secs=1,
            allow_multiple_runs=True)
        t = time.perf_counter()
        tracker.start_task("first")  # detects the hardware (seconds): not a per-window cost
        tracker.stop_task("first")
        first_s = time.perf_counter() - t
    cpu = next((h for h in getattr(tracker, "_hardware", []) if type(h).__name__ == "CPU"), None)
    return tracker, {"version": codecarbon.__version__, "first_window_s": round(first_s, 3),
                     "method": f"codecarbon-{codecarbon.__version__} offline "
                               f"tracking_mode=process cpu={getattr(cpu, '_mode', 'none')}",
                     "cpu_tdp_w_assumed": getattr(cpu, "_tdp", None),
                     "cpu_count": getattr(cpu, "_cpu_count", None),
                     "said_on_start": said[:6]}


def build_zeus() -> tuple[Any, dict[str, Any]]:
    """A ZeusMonitor with its defaults (every GPU and CPU package it finds), or why not."""
    with _quiet("zeus", logging.INFO) as said:
        try:
            import zeus
            from zeus.monitor import ZeusMonitor
        except ImportError as exc:
            return None, {"why_not": f"not installed ({exc}): pip install "
                                     "'tuning-energy[bench]'"}
        try:
            monitor = ZeusMonitor()
        except Exception as exc:  # e.g. RAPL without permission: Zeus says why
            return None, {"why_not": f"{type(exc).__name__}: {exc}", "said": said[:8]}
    gpus, cpus = list(monitor.gpu_indices), list(monitor.cpu_indices)
    what = ([f"gpu {gpus}"] if gpus else []) + ([f"cpu packages {cpus}"] if cpus else [])
    info = {"version": getattr(zeus, "__version__", "?"), "gpu_indices": gpus,
            "cpu_indices": cpus,
            "measures": ", ".join(what) or "nothing: no GPU (NVML/AMDSMI) and no RAPL here, "
                                           "so its window reads only the clock",
            "said_on_start": said[:8]}
    info["method"] = f"zeus-{info['version']} ZeusMonitor ({info['measures']})"
    return monitor, info


def _ours_side(pairs: int):
    meter = EstimateMeter()

    def run() -> float:
        t = time.perf_counter()
        for _ in range(pairs):
            meter.end(meter.begin())
        return (time.perf_counter() - t) / pairs
    return run


def _codecarbon_sides(tracker, tracker2) -> dict[str, Any]:
    count = iter(range(10**9))

    def task() -> float:
        name = f"w{next(count)}"
        t = time.perf_counter()
        tracker.start_task(name)
        tracker.stop_task(name)
        return time.perf_counter() - t

    def start_stop() -> float:
        t = time.perf_counter()
        tracker2.start()
        tracker2.stop()
        return time.perf_counter() - t

    return {"codecarbon start_task + stop_task": task, "codecarbon start + stop": start_stop}


def _zeus_side(monitor, pairs: int):
    count = iter(range(10**9))

    def run() -> float:
        t = time.perf_counter()
        for _ in range(pairs):
            name = f"w{next(count)}"
            monitor.begin_window(name, sync_execution=True)
            monitor.end_window(name, sync_execution=True)
        return (time.perf_counter() - t) / pairs
    return run


def _busy_work(ctx: Context, epochs: int):
    """One default trial's training (fit of the default model on digits)."""
    import torch

    from tuning_energy.cnn.data import load_dataset
    from tuning_energy.cnn.models import ModelSpec, build_model
    from tuning_energy.cnn.train import Hyper, fit

    d = load_dataset(ctx.config.data)
    params = ctx.config.param_values({})

    def work() -> None:
        torch.manual_seed(0)
        model = build_model(ModelSpec.from_params(params), d.input_shape, d.n_classes)
        fit(model, d.x_train, d.y_train, d.x_val, d.y_val,
            Hyper(lr=params["lr"], beta1=params["beta1"], beta2=params["beta2"],
                  eps=params["eps"], weight_decay=params["weight_decay"], epochs=epochs,
                  batch_size=ctx.config.train.batch_size), torch.Generator().manual_seed(0))
    return work


def readings(ctx: Context, zeus, zeus_method: str, windows: int, epochs: int) -> dict[str, Any]:
    """Our estimate with the project's CodeCarbon cross-check, and Zeus around the same
    window, on `windows` busy windows."""
    from tuning_energy.energy.crosscheck import wrap_cross_check

    work = _busy_work(ctx, epochs)
    with _quiet("codecarbon", logging.ERROR):
        meter = wrap_cross_check(EstimateMeter(), "codecarbon", COUNTRY)
        meter.end(meter.begin())  # hardware detection, outside the windows
    out: list[dict[str, Any]] = []
    for i in range(windows):
        if zeus is not None:
            zeus.begin_window(f"busy{i}")
        with _quiet("codecarbon", logging.ERROR):
            w = meter.begin()
            work()
            m = meter.end(w)
        z = zeus.end_window(f"busy{i}") if zeus is not None else None
        cc = m.extra.get("crosscheck_energy_j")
        cc_cpu = m.extra.get("crosscheck_by_device_j", {}).get("cpu")
        zj = None
        if z is not None:
            parts = [*z.gpu_energy.values(), *(z.cpu_energy or {}).values(),
                     *(z.dram_energy or {}).values()]
            zj = sum(parts) if parts else None  # Zeus measured nothing: None, not 0
        out.append({"duration_s": round(m.duration_s, 3), "ours_j": round(m.energy_j, 3),
                    "codecarbon_j": None if cc is None else round(cc, 3),
                    "codecarbon_by_device_j": {k: round(v, 3) for k, v in
                                               m.extra.get("crosscheck_by_device_j", {}).items()},
                    "zeus_j": None if zj is None else round(zj, 3),
                    "ours_over_codecarbon": None if not cc else round(m.energy_j / cc, 3),
                    "ours_over_codecarbon_cpu": None if not cc_cpu else
                    round(m.energy_j / cc_cpu, 3)})
    meter.close()
    def median_of(key: str) -> float | None:
        got = [w[key] for w in out if w[key] is not None]
        return round(statistics.median(got), 3) if got else None
    return {
        "busy_window": f"train.fit of the default model (default parameters, digits, "
                       f"{epochs} epochs, batch {ctx.config.train.batch_size}, "
                       f"{ctx.threads} thread(s))",
        "ours_method": f"{EstimateMeter.method} (ESTIMATE: CPU s of this process tree x "
                       f"{EstimateMeter().watts_per_core_w:g} W per core)",
        "codecarbon_method": m.extra.get("crosscheck_method"),
        "zeus_method": zeus_method,
        "windows": out,
        "median_ours_over_codecarbon": median_of("ours_over_codecarbon"),
        "median_ours_over_codecarbon_cpu": median_of("ours_over_codecarbon_cpu"),
        "like_for_like": "ours is the CPU alone (no DRAM); CodeCarbon's total adds its RAM "
                         "model: ours_over_codecarbon_cpu compares the CPU parts",
    }


def bench_meter_compare(ctx: Context) -> list[dict]:
    tracker, cc_info = build_codecarbon()
    tracker2, _ = build_codecarbon()
    zeus, zeus_info = build_zeus()
    pairs = ctx.n(full=200, quick=50)
    repeats = ctx.n(full=7, quick=3)
    sides: dict[str, Any] = {"ours (estimate)": _ours_side(pairs)}
    if tracker is not None:
        sides.update(_codecarbon_sides(tracker, tracker2))
    if zeus is not None:
        sides["zeus begin_window + end_window"] = _zeus_side(zeus, pairs)
    say(f"meter_vs_codecarbon: one window (begin + end) of {', '.join(sides)}, interleaved, "
        f"{repeats} repeats (ours and Zeus: mean of {pairs} windows per repeat)")
    with _quiet("codecarbon", logging.ERROR), _quiet("zeus", logging.WARNING):
        times = interleave(sides, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, s in med.items():
        say(f"  {k:40s} {s * 1e6:12.1f} us per window")
    ours = med["ours (estimate)"]
    windows_us = {k: round(s * 1e6, 2) for k, s in med.items()}

    busy = readings(ctx, zeus, zeus_info.get("method") or zeus_info["why_not"], windows=ctx.n(full=3, quick=1),
                    epochs=ctx.config.train.epochs if not ctx.quick else 2)
    say(f"  same busy window, ours / codecarbon: {busy['median_ours_over_codecarbon']} (CPU "
        f"parts: {busy['median_ours_over_codecarbon_cpu']}); {busy['windows']}")
    common = {"repeats": repeats, "windows_per_repeat": {"ours, zeus": pairs, "codecarbon": 1},
              "ours_method": busy["ours_method"]}
    out = []
    if tracker is not None:
        cc_keys = [k for k in med if k.startswith("codecarbon")]
        cheapest = min(cc_keys, key=med.get)
        out.append(row("meter_vs_codecarbon", ours / med[cheapest], "ratio of window times",
                       GOAL_VS_CODECARBON, "lower", {
            "compares": f"our estimate meter's begin+end / CodeCarbon's cheapest window "
                        f"({cheapest})", **common, "window_us": windows_us,
            "codecarbon": cc_info,
            "readings_same_window": busy}))
        if out[-1]["value"] > GOAL_VS_CODECARBON:
            out[-1]["detail"]["why_missed"] = (
                f"ours {ours * 1e6:.0f} us vs {cheapest} {med[cheapest] * 1e6:.0f} us per "
                f"window: our estimate meter ({EstimateMeter.method}) reads the CPU times of "
                "the whole process tree (energy/cputree.py) at each begin and end")
    else:
        out.append(row("meter_vs_codecarbon", None, "ratio of window times",
                       GOAL_VS_CODECARBON, "lower", {"not_built": cc_info["why_not"]}))
    zkey = "zeus begin_window + end_window"
    out.append(row("meter_vs_zeus", ours / med[zkey] if zeus is not None else None,
                   "ratio of window times", None, "lower", {
        "compares": "our estimate meter's begin+end / ZeusMonitor begin_window+end_window",
        "no_goal": "report only: Zeus measures GPUs (NVML) and CPUs (RAPL); where it finds "
                   "neither, as here, its window only reads the clock",
        **common, "window_us": {k: v for k, v in windows_us.items() if "codecarbon" not in k},
        "zeus": zeus_info}))
    return out
