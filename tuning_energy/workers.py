"""Several worker processes on one study: `tuning-energy study|compare --workers N`.

Optuna's storage is the scheduler: every worker runs the ordinary runner loop and takes its
own trials from the store. What this module adds around the runner (`WorkerContext`):

- Storages: `journal:///file.log` (several processes on one machine, no server) and
  `postgresql://...` (several machines). SQLite is refused for N > 1 ("database is locked").
- An exact budget: a worker takes a new trial only while finished + running + waiting
  trials < n_trials, checked and claimed under a lock shared by all workers (a PostgreSQL
  advisory lock, or an flock next to the journal file), and it suggests the trial's
  parameters inside that lock, so concurrent proposals see each other.
- Fault tolerance: a trial whose worker died is marked FAIL (`fail_reason` says why) by a
  surviving worker and re-run once (Optuna's RetryHeartbeatStaleTrialCallback, which sets
  the system attrs `failed_trial` and `retry_history` on the retry). PostgreSQL: Optuna's
  heartbeat (`heartbeat_interval`, `grace_period`). Journal (Optuna 5's JournalStorage has
  no heartbeat): the worker's host and pid stored on the trial; a dead pid on this host
  means the trial is stale (liveness.py). The budget counts finished trials only.
- Lost database connections: every storage call retries with back-off, then the worker
  exits with a StorageError that says so (storage_retry.py).
- Devices: workers pinned to GPUs round-robin (CUDA_VISIBLE_DEVICES) when GPUs exist, or
  all to the one GPU `train.device = "cuda:N"` names (each worker trains on its cuda:0, the
  GPU it sees); torch threads = usable cores // N (at least 1). Stated in the study attrs `workers`,
  `torch_threads_per_worker`, `worker_gpus` (each worker's CUDA_VISIBLE_DEVICES, None for
  none), and per trial in the system attr `te_worker`. On GPUs the study's `energy_method`
  and `meter` are those of the workers' GPU meter; NVML reads a whole GPU, so more
  NVML-metered workers than GPUs are refused (worker_energy.check_gpu_sharing).
- Energy: a package-wide meter (RAPL) is read by one `CpuTimeLedger` per machine and split
  by CPU time (see energy/shared.py); the rest is stored on the study as
  `energy_unattributed_j`, and per run under `energy_ledger:HOST:START` (`total_j`,
  `in_trials_j`, `unattributed_j`, of which `idle_j` in idle-baseline windows,
  `in_partial_trials_j`, `died_in_window_j`): trials + unattributed = what the meter saw.
  Package energy the ledger could not read is unknown, never 0 J: the trials' windows over
  it have None for that device, and `total_j`, `unattributed_j` and
  `energy_unattributed_j` are None, with `errors` saying why.
  Each worker's idle baseline is kept in the study attr `idle_power_w:HOST:PID`
  (`idle_power_w`, `idle_s`, `worker`, `gpu`, `measured_at`); workers do not write the
  single-process `idle_power_w`.
- Energy of a killed trial: with each heartbeat (`heartbeat_interval_s`, every store) the
  trial's energy so far is written on it with `energy_partial = true`; the final write sets
  `energy_partial = false` (worker_energy.py).
- Energy budget: `budget.max_energy_j` is checked at every claim, under the lock, against
  the whole study's charged energy (accounting.py), so N workers do not overrun it N-fold.
- One process: on a journal / PostgreSQL store any single process is a worker too
  (`single_worker`: runner.run_study makes one), so two commands running one study share
  its budget; it trains with the config's `train.torch_threads`, not usable cores // 1.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import multiprocessing as mp
import os
import socket
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.managers import BaseManager
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from .config import MeterConfig, StudyConfig
from .energy import MeterChoice, build_meter
from .energy.shared import CpuTimeLedger, SharedCpuTimeMeter, needs_attribution, shared_method
from .errors import ConfigError, StorageError, TuningEnergyError
from .liveness import WORKER_ATTR, pid_on, worker_alive, worker_identity
from .storage import journal_path, open_storage, redact, storage_kind
from .storage_retry import retry_callback, retrying, wrap_storage
from .worker_energy import (
    PartialEnergyWriter,
    TrialWindowMeter,
    check_gpu_sharing,
    energy_budget_stop,
    partial_package_j,
)

MULTI_WORKER_KINDS = ("journal", "postgresql")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

MeterFactory = Callable[..., MeterChoice]  # (MeterConfig, use_gpus=, cuda_index=) like build_meter


@dataclass(frozen=True)
class WorkerOptions:
    """How workers share a study. Seconds are integers where Optuna wants them."""

    n_workers: int = 1
    heartbeat_interval_s: int = 10  # a running trial's worker beats (PostgreSQL) and
    # writes the trial's energy so far (every store) this often
    grace_period_s: int = 30  # ... and is declared dead after this long without a beat
    max_retry: int = 1  # re-runs of a trial whose worker died
    reconnect_limit_s: float = 60.0  # give up on a lost database connection after this
    poll_s: float = 1.0  # wait while the rest of the budget is running on other workers
    torch_threads: int | None = None  # default: usable cores // n_workers, at least 1


def check_workers(storage_url: str, n_workers: int) -> None:
    if n_workers < 1:
        raise TuningEnergyError(f"--workers = {n_workers}: must be >= 1")
    kind = storage_kind(storage_url)
    if n_workers > 1 and kind not in MULTI_WORKER_KINDS:
        raise StorageError(
            f"--workers = {n_workers} with --storage = {redact(storage_url)!r}: {kind} allows "
            f"one process at a time (concurrent writers hit 'database is locked'); use "
            f"journal:///PATH (several processes on one machine) or "
            f"postgresql://USER@HOST:PORT/DB (several machines; `make postgres` starts one)"
        )


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def threads_per_worker(n_workers: int, cores: int | None = None) -> int:
    return max(1, (cores or usable_cores()) // n_workers)


def gpu_assignment(n_workers: int, visible: list[str]) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES per worker: round-robin over the visible GPUs (None: no GPU)."""
    if not visible:
        return [None] * n_workers
    return [visible[i % len(visible)] for i in range(n_workers)]


def visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # pragma: no cover - no CUDA build
        return []


# ---------------------------------------------------------------- one worker


@dataclass
class WorkerContext:
    """What the runner needs to be one of several workers (see runner.run_study(worker=))."""

    storage_url: str
    options: WorkerOptions = field(default_factory=WorkerOptions)
    index: int = 0
    gpu: str | None = None
    meter_factory: MeterFactory = build_meter
    ledger_address: Any = None
    ledger_authkey: bytes | None = None
    out: Any = None

    def __post_init__(self) -> None:
        self.kind = storage_kind(self.storage_url)
        self.torch_threads = self.options.torch_threads or \
            threads_per_worker(self.options.n_workers)
        self._retry = retry_callback(self.options.max_retry)
        self._storage: BaseStorage | None = None
        self._meter: TrialWindowMeter | None = None
        self.n_reaped = 0
        self.stop_reason: str | None = None  # set when claim() stops for the energy budget

    @property
    def identity(self) -> dict[str, Any]:
        """Who runs the trial, computed in the worker process itself (not where built)."""
        if getattr(self, "_identity", {}).get("pid") != os.getpid():
            self._identity = worker_identity(self.index, self.options.n_workers,
                                             self.torch_threads, self.gpu)
        return self._identity

    # -- storage
    def storage(self) -> BaseStorage:
        if self._storage is None:
            o = self.options
            what = redact(self.storage_url)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", FutureWarning)
                if self.kind == "postgresql" or self.kind == "mysql":
                    opened = retrying(open_storage, what, o.reconnect_limit_s, self.out)(
                        self.storage_url, heartbeat_interval=o.heartbeat_interval_s,
                        grace_period=o.grace_period_s, stale_trial_callback=self._retry)
                    self._storage = wrap_storage(opened, what, o.reconnect_limit_s)
                else:
                    self._storage = open_storage(self.storage_url)
        return self._storage

    # -- device and meter
    def train_device(self, name: str) -> str:
        """train.device as this worker names it. A worker the pool pinned to one GPU
        (CUDA_VISIBLE_DEVICES = `gpu`) sees only that GPU, as cuda:0: `cuda:N` named the
        GPU the pool picked (WorkerPool.gpus), so here it is `cuda`."""
        if self.gpu is not None and name.startswith("cuda:"):
            return "cuda"
        return name

    def meter_choice(self, config: MeterConfig, use_gpus: bool | None = None,
                     cuda_index: int | None = None) -> MeterChoice:
        """The worker's meter: the ledger's share of a package-wide meter, and the trial's
        window known to the heartbeat (it writes the energy so far, worker_energy.py).
        use_gpus, cuda_index: as build_meter's (the training device, as this worker sees it).
        """
        choice = self.meter_factory(config, use_gpus=use_gpus, cuda_index=cuda_index)
        meter = choice.meter
        if self.ledger_address is not None and needs_attribution(meter):
            meter = SharedCpuTimeMeter(meter, connect_ledger(self.ledger_address,
                                                             self.ledger_authkey))
        self._meter = TrialWindowMeter(meter)
        return replace(choice, meter=self._meter)

    def idle_attrs(self, idle_power_w: float | None, idle_s: float) -> dict[str, Any]:
        """Study attrs for this worker's idle baseline: one key per worker, none overwritten."""
        ident = self.identity
        return {f"idle_power_w:{ident['host']}:{ident['pid']}": {
            "idle_power_w": idle_power_w, "idle_s": idle_s, "worker": self.index,
            "gpu": self.gpu, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }}

    # -- claiming trials
    @contextlib.contextmanager
    def claim_lock(self, study: optuna.Study) -> Iterator[None]:
        """One worker at a time checks the budget, reaps stale trials and asks."""
        if self.kind == "journal":
            path = f"{journal_path(self.storage_url)}.claim.lock"
            with open(path, "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        elif self.kind == "postgresql":
            from sqlalchemy import text

            key = zlib.crc32(f"tuning-energy/{study.study_name}".encode())
            engine = self.storage().engine  # type: ignore[attr-defined]
            conn = retrying(engine.connect, redact(self.storage_url),
                            self.options.reconnect_limit_s, self.out)()
            try:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    with contextlib.suppress(Exception):
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            finally:
                with contextlib.suppress(Exception):
                    conn.close()
        else:
            yield

    def reap(self, study: optuna.Study) -> list[int]:
        """Mark trials whose worker died FAIL and queue their retry; returns their numbers."""
        from optuna.storages._heartbeat import is_heartbeat_enabled

        storage = study._storage
        stale: list[tuple[int, str]] = []
        if is_heartbeat_enabled(storage):
            o = self.options
            stale = [(tid, f"its worker stopped sending heartbeats (none for "
                           f"{o.grace_period_s} s)")
                     for tid in storage._get_stale_trial_ids(study._study_id)]  # type: ignore[attr-defined]
        else:
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                ident = t.system_attrs.get(WORKER_ATTR)
                if ident and worker_alive(ident) is False:
                    stale.append((t._trial_id, f"its worker (pid {ident['pid']} on "
                                               f"{ident['host']}) died"))
        reaped = []
        for trial_id, reason in stale:
            try:
                storage.set_trial_user_attr(trial_id, "fail_reason", reason)
                if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # finished meanwhile
            failed = storage.get_trial(trial_id)
            self._retry(study, _retry_template(failed))
            reaped.append(failed.number)
        self.n_reaped += len(reaped)
        if reaped:
            print(f"[worker {self.index}] trial(s) {reaped}: worker died; marked FAIL, "
                  f"re-queued (at most {self.options.max_retry} retry)", file=self.out)
        return reaped

    def claim(self, study: optuna.Study, n_budget: int, begin: Callable[[], Any],
              propose: Callable[[optuna.Trial, Any], Any],
              max_energy_j: float | None = None) -> tuple[optuna.Trial, Any] | None:
        """A trial for this worker and its parameters, proposed under the workers' lock;
        None when there is nothing to take now (the budget is finished or running elsewhere)
        or when the study-wide energy budget is spent (then `stop_reason` says so).

        begin() opens the meter window of the proposal, propose(trial, window) suggests the
        parameters and ends it (Objective.propose), as in the single-process runner.
        """
        from optuna.storages._heartbeat import is_heartbeat_enabled

        with self.claim_lock(study):
            self.reap(study)
            trials = study.get_trials(deepcopy=False)
            states = [t.state for t in trials]
            finished = sum(s in FINISHED for s in states)
            running = states.count(TrialState.RUNNING)
            waiting = states.count(TrialState.WAITING)
            if finished < n_budget and max_energy_j is not None:
                self.stop_reason = energy_budget_stop(trials, max_energy_j)
                if self.stop_reason:
                    return None
            if finished < n_budget and (waiting or finished + running < n_budget):
                window = begin()
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = study.ask()
                study._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, self.identity)
                if is_heartbeat_enabled(study._storage):
                    # A first beat now: Optuna never declares a trial without one stale, so a
                    # worker killed before its heartbeat thread ran would block the budget.
                    study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
                return trial, propose(trial, window)
        if finished < n_budget:
            time.sleep(self.options.poll_s)
        return None

    @contextlib.contextmanager
    def heartbeat(self, trial: optuna.Trial) -> Iterator[None]:
        """While the trial runs: Optuna's heartbeat (PostgreSQL), and on every store the
        trial's energy so far, written every `heartbeat_interval_s` (energy_partial)."""
        from optuna.storages._heartbeat import get_heartbeat_thread

        partial = contextlib.nullcontext() if self._meter is None else PartialEnergyWriter(
            self._meter, trial, self.options.heartbeat_interval_s, self.out)
        with get_heartbeat_thread(trial._trial_id, trial.study._storage), partial:
            yield

    def describe(self) -> dict[str, Any]:
        return {"workers": self.options.n_workers, "torch_threads_per_worker": self.torch_threads}


def _retry_template(failed: FrozenTrial) -> FrozenTrial:
    """The failed trial as the retry callback should copy it: params and grid point only."""
    t = copy.deepcopy(failed)
    t.user_attrs.clear()
    t.system_attrs.pop(WORKER_ATTR, None)
    return t


# ---------------------------------------------------------------- the energy ledger


class _LedgerManager(BaseManager):
    pass


_LEDGER: CpuTimeLedger | None = None


def _ledger() -> CpuTimeLedger | None:
    return _LEDGER


def _init_ledger(meter_factory: MeterFactory, config: MeterConfig) -> None:
    global _LEDGER
    _LEDGER = CpuTimeLedger(meter_factory(config, use_gpus=False).meter)


_LedgerManager.register("ledger", callable=_ledger)


def connect_ledger(address: Any, authkey: bytes | None) -> Any:
    m = _LedgerManager(address=address, authkey=authkey)
    m.connect()
    return m.ledger()


# ---------------------------------------------------------------- the pool


@dataclass
class _WorkerSpec:
    config: StudyConfig
    strategy: str
    seed: int
    context: WorkerContext
    cross_check: str | None = None


def _worker_main(spec: _WorkerSpec) -> None:
    from .runner import run_study

    try:
        run_study(spec.config, spec.strategy, spec.seed, spec.context.storage_url,
                  progress=False, cross_check=spec.cross_check, worker=spec.context)
    except TuningEnergyError as exc:
        print(f"tuning-energy worker {spec.context.index}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


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
        self._manager: _LedgerManager | None = None
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
        from .runner import open_study

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
            self._manager = _LedgerManager(authkey=authkey, ctx=spawn)
            self._manager.start(initializer=_init_ledger,
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
        from .runner import _summary

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
        except KeyboardInterrupt:  # the workers got the SIGINT too: each fails its trial
            interrupted = True
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
        max_j = self.config.budget.max_energy_j
        trials = self.study.get_trials(deepcopy=False)
        if reason == "budget reached" and max_j is not None and \
                sum(t.state in FINISHED for t in trials) < self._budget():
            reason = energy_budget_stop(trials, max_j) or reason  # why the workers stopped
        summary = _summary(self.study, redact(self.storage_url), self._budget(), ran,
                           self._t0, reason, _MethodOnly(self.study))
        summary.interrupted = interrupted
        summary.extra["exit_codes"] = codes
        return summary

    def _budget(self) -> int:
        from .strategies import grid_size

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


def single_worker(config: StudyConfig, storage_url: str, options: WorkerOptions | None = None,
                  meter_factory: MeterFactory = build_meter, out=None) -> WorkerContext:
    """The worker that one process on a journal / PostgreSQL store is: it claims its trials
    under the workers' lock, so that two commands running one study (two `compare`s, a
    `study` beside a `compare`) share its budget instead of each running all of it. It
    trains with the config's `train.torch_threads`, as one process on SQLite does, unless
    `options.torch_threads` says otherwise."""
    options = options or WorkerOptions()
    return WorkerContext(storage_url, replace(
        options, n_workers=1, torch_threads=options.torch_threads or config.train.torch_threads),
        meter_factory=meter_factory, out=out)


def run_workers(config: StudyConfig, strategy: str, seed: int, storage_url: str,
                options: WorkerOptions, meter_factory: MeterFactory = build_meter,
                out=None, progress: bool = True, cross_check: str | None = None):
    """Run the study with `options.n_workers` workers; one worker runs in this process.

    One worker: `runner.run_study` in this process, under the run lock on SQLite and as a
    claiming worker (`single_worker`) on journal / PostgreSQL. This is how `tuning-energy
    study` and `compare` run each study (`--workers N`)."""
    check_workers(storage_url, options.n_workers)
    if options.n_workers == 1:
        from .runner import run_study

        context = single_worker(config, storage_url, options, meter_factory, out) \
            if storage_kind(storage_url) in MULTI_WORKER_KINDS else None
        return run_study(config, strategy, seed, storage_url, progress=progress, out=out,
                         cross_check=cross_check, worker=context)
    pool = WorkerPool(config, strategy, seed, storage_url, options, meter_factory, out,
                      cross_check)
    pool.start()
    return pool.wait()
