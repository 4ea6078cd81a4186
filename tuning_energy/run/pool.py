"""Several worker processes on one study: `tuning-energy study|compare --workers N`.

`WorkerPool` opens the study (with the meter the workers will use), spawns N processes,
each running `runner.run_study` with its own `WorkerContext` (workers.py: how a worker
claims trials, beats a heartbeat, survives lost connections), and, for a package-wide meter,
the energy ledger (ledger.py). `run_workers` is how `tuning-energy study` and `compare` run
each study.

- Devices: workers pinned to GPUs round-robin (CUDA_VISIBLE_DEVICES) when GPUs exist, or
  all to the one GPU `train.device = "cuda:N"` names (each worker trains on its cuda:0, the
  GPU it sees); torch threads = usable cores // N (at least 1). Stated in the study attrs
  `workers`, `torch_threads_per_worker`, `worker_gpus` (each worker's CUDA_VISIBLE_DEVICES,
  None for none), and per trial in the system attr `te_worker`. On GPUs the study's
  `energy_method` and `meter` are those of the workers' GPU meter; NVML reads a whole GPU,
  so more NVML-metered workers than GPUs are refused (worker_energy.check_gpu_sharing).
- Energy: a package-wide meter (RAPL) is read by one `CpuTimeLedger` per machine and split
  by CPU time (see energy/shared.py); the rest is stored on the study as
  `energy_unattributed_j`, and per run under `energy_ledger:HOST:START` (`total_j`,
  `in_trials_j`, `unattributed_j`, of which `idle_j` in idle-baseline windows,
  `in_partial_trials_j`, `died_in_window_j`): trials + unattributed = what the meter saw.
  Package energy the ledger could not read is unknown, never 0 J: the trials' windows over
  it have None for that device, and `total_j`, `unattributed_j` and
  `energy_unattributed_j` are None, with `errors` saying why.
- Energy of a killed trial: with each heartbeat (`heartbeat_interval_s`, every store) the
  trial's energy so far is written on it with `energy_partial = true`; the final write sets
  `energy_partial = false` (worker_energy.py).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import optuna

from tuning_energy.config import StudyConfig
from tuning_energy.energy import build_meter
from tuning_energy.energy.gpus import parse_visible_devices
from tuning_energy.energy.shared import needs_attribution, shared_method
from tuning_energy.errors import ConfigError, TuningEnergyError
from tuning_energy.liveness import WORKER_ATTR, pid_on
from tuning_energy.run.budget import StudyBudget
from tuning_energy.run.ledger import LedgerManager, connect_ledger, init_ledger
from tuning_energy.run.runner import open_study, run_study
from tuning_energy.run.signals import Terminated, exit_code, forward_stop, sigterm_as_interrupt
from tuning_energy.run.summary import FINISHED, study_summary
from tuning_energy.run.worker_energy import check_gpu_sharing, partial_package_j
from tuning_energy.run.workers import (
    MULTI_WORKER_KINDS,
    MeterFactory,
    WorkerContext,
    WorkerOptions,
    check_workers,
    single_worker,
    threads_per_worker,
)
from tuning_energy.search.strategies import grid_size
from tuning_energy.store.faults import storage_fault
from tuning_energy.store.storage import redact, storage_kind


def gpu_assignment(n_workers: int, visible: list[str]) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES per worker: round-robin over the visible GPUs (None: no GPU)."""
    if not visible:
        return [None] * n_workers
    return [visible[i % len(visible)] for i in range(n_workers)]


def visible_gpus() -> list[str]:
    """The GPUs this process sees, as CUDA_VISIBLE_DEVICES entries (CUDA's own reading of
    the variable: energy.gpus.parse_visible_devices), else torch's device indices."""
    parsed = parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if parsed is not None:
        return [str(g) for g in parsed]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # pragma: no cover - no CUDA build
        return []


@dataclass
class _WorkerSpec:
    config: StudyConfig
    strategy: str
    seed: int
    context: WorkerContext
    cross_check: str | None = None


def _worker_main(spec: _WorkerSpec) -> None:
    try:
        with sigterm_as_interrupt(forwarded=True):  # SIGTERM: as Ctrl-C (run/signals.py)
            run_study(spec.config, spec.strategy, spec.seed, spec.context.storage_url,
                      progress=False, cross_check=spec.cross_check, source=spec.context)
    except Exception as exc:  # ours, or a full / read-only store (store/faults.py)
        fault = storage_fault(exc, spec.context.storage_url)
        if fault is None and not isinstance(exc, TuningEnergyError):
            raise
        print(f"tuning-energy worker {spec.context.index}: error: {fault or exc}",
              file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        sys.exit(exit_code(exc))


class WorkerPool:
    """N worker processes (spawned) on one study, and the ledger for a package-wide meter.

        pool = WorkerPool(config, "bayes", 0, "journal:///studies/s.log", WorkerOptions(n_workers=2))
        pool.start(); summary = pool.wait()
    """

    def __init__(self, config: StudyConfig, strategy: str, seed: int, storage_url: str,
                 options: WorkerOptions, meter_factory: MeterFactory = build_meter, out=None,
                 cross_check: str | None = None):
        check_workers(storage_url, options.n_workers)
        self.cross_check = cross_check
        self.config, self.strategy, self.seed = config, strategy, seed
        self.storage_url = storage_url
        threads = options.torch_threads or threads_per_worker(options.n_workers)
        self.options = replace(options, torch_threads=threads)
        self.meter_factory = meter_factory
        self.out = out or sys.stdout
        self.processes: list[Any] = []
        self._manager: LedgerManager | None = None
        self._started_iso = ""
        self._t0 = 0.0

    def gpus(self) -> list[str | None]:
        """Each worker's CUDA_VISIBLE_DEVICES (None: the worker trains on the CPU).

        `cuda` / `auto`: round-robin over the visible GPUs. `cuda:N`: every worker on the
        N-th visible GPU (each sees it as its cuda:0); a GPU metered by NVML then takes one
        worker only (check_gpu_sharing).
        """
        device = self.config.train.device
        n = self.options.n_workers
        if device in ("cuda", "auto"):
            return gpu_assignment(n, visible_gpus())
        if device.startswith("cuda:"):
            visible = visible_gpus()
            index = int(device.split(":", 1)[1])
            if index >= len(visible):
                raise ConfigError(
                    f"train.device = {device!r}: the pool sees {len(visible)} GPU(s) "
                    f"(CUDA_VISIBLE_DEVICES = {os.environ.get('CUDA_VISIBLE_DEVICES')!r}"
                    + (f": cuda:0..cuda:{len(visible) - 1}" if visible else "")
                    + "); cuda:N is the N-th GPU it lists")
            return [visible[index]] * n
        return [None] * n

    def _open_study(self, gpus: list[str | None]) -> tuple[optuna.Study, bool]:
        """The study, created with the meter the workers will use (GPUs included); refuses
        more NVML-metered workers than GPUs before anything is stored."""
        ctx = WorkerContext(self.storage_url, self.options, meter_factory=self.meter_factory)
        use_gpus = any(g is not None for g in gpus)
        # Each worker meters its own GPU (its cuda:0): together, every GPU the workers see.
        with _cuda_visible(",".join(sorted({g for g in gpus if g is not None})) or None):
            choice = self.meter_factory(self.config.meter, use_gpus=None if use_gpus
                                        else False)
        if use_gpus and choice.gpu_choice is not None and self.config.meter.gpus is None:
            choice = replace(choice, gpu_choice=(
                f"each worker's training GPU, its cuda:0 (train.device = "
                f"{self.config.train.device!r}; CUDA_VISIBLE_DEVICES per worker: "
                f"{', '.join(str(g) for g in gpus)}; meter.gpus not set)"))
        shared = needs_attribution(choice.meter)
        try:
            if use_gpus:
                check_gpu_sharing(choice.meter, self.options.n_workers, gpus,
                                  self.config.train.device)
            if shared and self.options.n_workers > 1:
                choice.meter.method = shared_method(choice.meter.method)  # as trials record it
            study = open_study(self.config, self.strategy, self.seed, self.storage_url, choice,
                               storage=ctx.storage())
        finally:
            choice.meter.close()
        for k, v in {**ctx.describe(), "worker_gpus": gpus}.items():
            study.set_user_attr(k, v)
        return study, shared

    def start(self) -> None:
        import datetime as dt

        self._t0 = time.perf_counter()
        self._started_iso = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        gpus = self.gpus()
        self.study, shared = self._open_study(gpus)
        spawn = mp.get_context("spawn")
        address = authkey = None
        if shared and self.options.n_workers > 1:
            authkey = os.urandom(16)
            self._manager = LedgerManager(authkey=authkey, ctx=spawn)
            self._manager.start(initializer=init_ledger,
                                initargs=(self.meter_factory, self.config.meter))
            address = self._manager.address
        for i, gpu in enumerate(gpus):
            context = WorkerContext(self.storage_url, self.options, index=i, gpu=gpu,
                                    meter_factory=self.meter_factory,
                                    ledger_address=address, ledger_authkey=authkey)
            p = spawn.Process(target=_worker_main, name=f"tuning-energy-worker-{i}",
                              args=(_WorkerSpec(self.config, self.strategy, self.seed,
                                                context, self.cross_check),))
            with _cuda_visible(gpu):  # the child inherits it at spawn
                p.start()
            self.processes.append(p)
        print(f"{self.options.n_workers} workers on {redact(self.storage_url)} "
              f"(pids {', '.join(str(p.pid) for p in self.processes)}; "
              f"{self.options.torch_threads} torch thread(s) each"
              + (f"; GPUs {', '.join(g for g in gpus if g)}" if any(gpus) else "") + ")",
              file=self.out)

    def wait(self, timeout_s: float | None = None):
        """Wait for every worker; store the energy ledger; the study's summary.

        timeout_s: stop (SIGTERM) workers still running after this long, then raise.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        interrupted = False
        try:
            for p in self.processes:
                p.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            late = [p for p in self.processes if p.is_alive()]
            for p in late:
                p.terminate()
                p.join()
            if late:
                raise TuningEnergyError(
                    f"{len(late)} worker(s) still running after {timeout_s:g} s; stopped")
        except KeyboardInterrupt as exc:  # the workers got the SIGINT too: each fails its trial
            interrupted = True
            if isinstance(exc, Terminated):  # `kill PID` reaches this process only
                forward_stop(p.pid for p in self.processes if p.is_alive())
            for p in self.processes:
                p.join()
        finally:
            self._store_ledger()
        codes = [p.exitcode for p in self.processes]
        pids = {p.pid for p in self.processes}
        ran = sum((t.system_attrs.get(WORKER_ATTR) or {}).get("pid") in pids
                  for t in self.study.get_trials(deepcopy=False))
        reason = "interrupted" if interrupted else "budget reached" if all(
            c == 0 for c in codes) else f"worker exit codes {codes}"
        budget = StudyBudget.of(self.config)
        trials = self.study.get_trials(deepcopy=False)
        if reason == "budget reached" and budget and \
                sum(t.state in FINISHED for t in trials) < self._budget():
            reason = budget.stop(trials) or reason  # why the workers stopped
        summary = study_summary(self.study, redact(self.storage_url), self._budget(), ran,
                           self._t0, reason, _MethodOnly(self.study))
        summary.interrupted = interrupted
        summary.extra["exit_codes"] = codes
        return summary

    def _budget(self) -> int:
        n = self.config.budget.n_trials
        if self.strategy == "grid":
            n = min(n, grid_size(self.config.search_space, self.config.strategy.grid_levels))
        return n

    def _store_ledger(self) -> None:
        if self._manager is None:
            return
        try:
            totals = connect_ledger(self._manager.address, self._manager._authkey).totals()
        finally:
            self._manager.shutdown()
            self._manager = None
        # A killed worker's window never closed, but its heartbeat wrote the energy so far
        # on its trial (energy_partial): that part is on a trial, not unattributed.
        died_in_window = totals.pop("died_in_window", {})
        totals["died_in_window_j"] = {str(pid): j for pid, j in died_in_window.items()}
        died = {int(pid) for pid in died_in_window}
        host = socket.gethostname()
        partial_j = partial_package_j(self.study.get_trials(deepcopy=False), died,
                                      functools.partial(pid_on, host))
        totals["in_trials_j"] += partial_j
        if totals["unattributed_j"] is not None:  # None: some package energy was unknown
            totals["unattributed_j"] -= partial_j
        totals["in_partial_trials_j"] = partial_j
        totals["workers"] = self.options.n_workers
        key = f"energy_ledger:{host}:{self._started_iso}"
        self.study.set_user_attr(key, totals)
        ledgers = [v for k, v in self.study.user_attrs.items() if k.startswith("energy_ledger:")]
        unattributed = [v.get("unattributed_j") for v in ledgers]
        self.study.set_user_attr("energy_unattributed_j", None if None in unattributed
                                 else sum(unattributed))


@contextlib.contextmanager
def _cuda_visible(gpus: str | None) -> Iterator[None]:
    """CUDA_VISIBLE_DEVICES = gpus for a while (None: unchanged)."""
    if gpus is None:
        yield
        return
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


class _MethodOnly:
    def __init__(self, study: optuna.Study):
        self.method = study.user_attrs.get("energy_method", "unknown")


def run_workers(config: StudyConfig, strategy: str, seed: int, storage_url: str,
                options: WorkerOptions, meter_factory: MeterFactory = build_meter,
                out=None, progress: bool = True, cross_check: str | None = None):
    """Run the study with `options.n_workers` workers; one worker runs in this process.

    One worker: `runner.run_study` in this process, under the run lock on SQLite and as a
    claiming worker (`single_worker`) on journal / PostgreSQL. This is how `tuning-energy
    study` and `compare` run each study (`--workers N`)."""
    check_workers(storage_url, options.n_workers)
    if options.n_workers == 1:
        context = single_worker(config, storage_url, options, meter_factory, out) \
            if storage_kind(storage_url) in MULTI_WORKER_KINDS else None
        return run_study(config, strategy, seed, storage_url, progress=progress, out=out,
                         cross_check=cross_check, source=context)
    pool = WorkerPool(config, strategy, seed, storage_url, options, meter_factory, out,
                      cross_check)
    pool.start()
    return pool.wait()

