"""One of several worker processes on one study: its trial source (`WorkerContext`).

`tuning-energy study|compare --workers N` starts N of them (pool.py). Optuna's storage is
the scheduler: every worker runs the ordinary runner loop and takes its own trials from the
store through its `WorkerContext` (a trial_source.TrialSource):

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
- Devices and energy: a worker pinned to one GPU sees it as cuda:0 (`train_device`); its
  meter is the ledger's share of a package-wide meter (ledger.py) and knows the trial's
  window, so the heartbeat writes the trial's energy so far (`energy_partial`,
  worker_energy.py). Each worker's idle baseline is kept in the study attr
  `idle_power_w:HOST:PID` (`idle_power_w`, `idle_s`, `worker`, `gpu`, `measured_at`).
- Energy and CO2 budgets (`budget.max_energy_j`, `max_co2_g`: budget.py) are checked at every claim, under the lock, against
  the whole study's charged energy (accounting.py), so N workers do not overrun it N-fold.
- One process: on a journal / PostgreSQL store any single process is a worker too
  (`single_worker`: runner.run_study makes one), so two commands running one study share
  its budget; it trains with the config's `train.torch_threads`, not usable cores // 1.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuning_energy.config import MeterConfig, StudyConfig
from tuning_energy.energy import MeterChoice, build_meter
from tuning_energy.energy.hardware import usable_cores
from tuning_energy.energy.shared import SharedCpuTimeMeter, needs_attribution
from tuning_energy.errors import StorageError, TuningEnergyError
from tuning_energy.liveness import WORKER_ATTR, worker_alive, worker_identity
from tuning_energy.run.budget import StudyBudget
from tuning_energy.run.ledger import connect_ledger
from tuning_energy.run.summary import FINISHED
from tuning_energy.run.trial_source import Claim, TrialSource
from tuning_energy.run.worker_energy import PartialEnergyWriter, TrialWindowMeter
from tuning_energy.store.faults import recorded_on_fault
from tuning_energy.store.retry import retry_callback, retrying, wrap_storage
from tuning_energy.store.storage import journal_path, open_storage, redact, storage_kind

MeterFactory = Callable[..., MeterChoice]  # (MeterConfig, use_gpus=, cuda_index=) like build_meter

MULTI_WORKER_KINDS = ("journal", "postgresql")

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


def threads_per_worker(n_workers: int, cores: int | None = None) -> int:
    return max(1, (cores or usable_cores()) // n_workers)


# ---------------------------------------------------------------- one worker


@dataclass
class WorkerContext(TrialSource):
    """The trial source of one of several workers (trial_source.py; runner.run_study(source=))."""

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
                elif ident and _same_process(ident, self.identity):  # claiming: it runs none
                    stale.append((t._trial_id, "its run in this process stopped (an error "
                                               "of the store, e.g. a full disk)"))
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
              budget: StudyBudget | None = None) -> Claim | str | None:
        """A trial for this worker with its parameters, proposed under the workers' lock;
        None when there is nothing to take now (the budget is finished or running
        elsewhere); why it stops when the study-wide energy budget is spent (also kept in
        `stop_reason`).

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
            if finished < n_budget and budget:
                self.stop_reason = budget.stop(trials)
                if self.stop_reason:
                    return self.stop_reason
            if finished < n_budget and (waiting or finished + running < n_budget):
                window = begin()
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = study.ask()
                with recorded_on_fault(study, trial, self.storage_url):  # full, read-only
                    study._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR,
                                                         self.identity)
                    if is_heartbeat_enabled(study._storage):
                        # A first beat now: Optuna never declares a trial without one stale,
                        # so a worker killed before its heartbeat thread ran would block
                        # the budget.
                        study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
                    params = propose(trial, window)
                return Claim(trial, lambda: params)
        if finished < n_budget:
            time.sleep(self.options.poll_s)
        return None

    def prepare(self, study: optuna.Study, out) -> None:
        for k, v in self.describe().items():
            study.set_user_attr(k, v)

    def n_finished(self, study: optuna.Study, counted: int) -> int:
        """Read from the store: other workers finish trials too."""
        return len(study.get_trials(deepcopy=False, states=FINISHED))

    def running(self, trial: optuna.Trial) -> contextlib.AbstractContextManager:
        return self.heartbeat(trial)

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


def _same_process(ident: dict[str, Any], me: dict[str, Any]) -> bool:
    return all(ident.get(k) == me[k] for k in ("host", "pid", "start_ticks"))


def _retry_template(failed: FrozenTrial) -> FrozenTrial:
    """The failed trial as the retry callback should copy it: params and grid point only."""
    t = copy.deepcopy(failed)
    t.user_attrs.clear()
    t.system_attrs.pop(WORKER_ATTR, None)
    return t


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


