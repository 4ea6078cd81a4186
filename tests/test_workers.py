"""Several workers on one study: real PostgreSQL on 127.0.0.1 and a real journal file.

The PostgreSQL server: the URL in TUNING_ENERGY_TEST_POSTGRES_URL (.ci/run exports it), this
clone's `make postgres` server, or one conftest.py's `pg_url` starts for the session and stops
at its end. Without server binaries the PostgreSQL tests skip locally, and fail under CI=true.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from tuning_energy.config import parse_config
from tuning_energy.energy import MeterChoice
from tuning_energy.energy.base import Meter
from tuning_energy.energy.shared import CpuTimeLedger, SharedCpuTimeMeter, shared_method
from tuning_energy.errors import StorageError
from tuning_energy.storage import open_storage
from tuning_energy.strategies import SkoptSampler, distributions
from tuning_energy.workers import (
    WORKER_ATTR,
    WorkerContext,
    WorkerOptions,
    WorkerPool,
    check_workers,
    gpu_assignment,
    redact,
    threads_per_worker,
)

from .conftest import tiny_doc

POWER_W = 40.0


class ClockPackageMeter(Meter):
    """A package-wide counter every process reads alike: POWER_W x wall-clock seconds."""

    method = "fake-package"
    package_wide = True

    def read_j(self) -> dict[str, float]:
        return {"cpu0": POWER_W * time.time()}


def clock_meters(config, use_gpus=None) -> MeterChoice:  # a MeterFactory; spawned workers import it
    return MeterChoice(ClockPackageMeter(), "fake")


# ---------------------------------------------------------------- PostgreSQL


# pg_url: conftest.py's session fixture (stops the server it started when the session ends).


def _config(name: str, search_space=None, **over):
    doc = tiny_doc(name=name, **over)
    if search_space is not None:
        doc["search_space"] = search_space
    return parse_config(doc)


def _kill_mid_trial(storage_url: str, study_name: str, pids: list[int],
                    timeout_s: float = 120) -> int:
    """SIGKILL the worker of the first trial that has trained for 0.3 s; its trial number."""
    storage = open_storage(storage_url)
    deadline = time.monotonic() + timeout_s
    oldest = 0.0
    while time.monotonic() < deadline:
        study = optuna.load_study(study_name=study_name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            ident = t.system_attrs.get(WORKER_ATTR)
            age = time.time() - t.datetime_start.timestamp()
            oldest = max(oldest, age)
            if ident and ident["pid"] in pids and t.params and age > 0.3:
                os.kill(ident["pid"], signal.SIGKILL)
                return t.number
        time.sleep(0.1)
    raise AssertionError(f"no trial ran long enough to be killed mid-trial (oldest RUNNING "
                         f"trial seen: {oldest:.2f} s)")


def _run_and_kill(storage_url: str, strategy: str, options: WorkerOptions, n_trials: int):
    name = f"w{uuid.uuid4().hex[:8]}"
    # 1 conv block and enough epochs that a trial lasts well over a second here (an epoch
    # takes ~40 ms on 1 thread): long enough to be caught mid-trial by a 0.1 s poll.
    config = _config(name, train={"epochs": 40}, budget={"n_trials": n_trials},
                     fixed={"n_conv": 1},
                     search_space={"lr": {"type": "float", "low": 1e-3, "high": 1e-1,
                                          "log": True},
                                   "beta1": {"type": "float", "low": 0.5, "high": 0.95}},
                     strategy={"bayes": {"n_initial_points": 2, "n_points": 100},
                               "grid_levels": 3})
    pool = WorkerPool(config, strategy, 0, storage_url, options, meter_factory=clock_meters)
    pool.start()
    pids = [p.pid for p in pool.processes]
    killed = _kill_mid_trial(storage_url, f"{name}-{strategy}-s0", pids)
    summary = pool.wait(timeout_s=120)
    return pool.study, killed, summary


def _check_fault_tolerance(study: optuna.Study, killed: int, n_trials: int) -> None:
    trials = study.get_trials(deepcopy=False)
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    # The budgeted number of COMPLETE trials; nothing left RUNNING or WAITING.
    assert len(by_state[TrialState.COMPLETE]) == n_trials
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING]
    # The killed trial is FAIL, says why, and was re-run exactly once with its parameters.
    dead = trials[killed]
    assert dead.state == TrialState.FAIL
    assert "worker" in dead.user_attrs["fail_reason"]
    assert dead.user_attrs.get("energy_j") is None  # its window never closed: not invented
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == dead.params
    assert [t.number for t in by_state[TrialState.FAIL]] == [killed]
    # Both workers ran trials.
    assert len({t.system_attrs[WORKER_ATTR]["pid"] for t in trials}) == 2
    assert study.user_attrs["workers"] == 2
    assert study.user_attrs["torch_threads_per_worker"] >= 1


def _check_energy(study: optuna.Study) -> None:
    trials = study.get_trials(deepcopy=False)
    ledgers = [v for k, v in study.user_attrs.items() if k.startswith("energy_ledger:")]
    assert len(ledgers) == 1
    ledger = ledgers[0]
    method = shared_method("fake-package")
    assert study.user_attrs["energy_method"] == method == ledger["method"]
    # Every window a worker closed: proposing (the strategy's propose_energy_j and the
    # store's store_energy_j) and training (energy_j).
    measured = [t.user_attrs[k] for t in trials
                for k in ("energy_j", "propose_energy_j", "store_energy_j")
                if t.user_attrs.get(k) is not None]
    assert all(t.user_attrs["energy_method"] == method for t in trials
               if t.state == TrialState.COMPLETE)
    # The meter saw POWER_W for as long as the ledger ran ...
    assert ledger["total_j"] == pytest.approx(POWER_W * ledger["duration_s"], rel=0.02)
    # ... and the trials plus the unattributed rest add up to exactly that.
    assert sum(measured) + study.user_attrs["energy_unattributed_j"] == \
        pytest.approx(ledger["total_j"], rel=1e-9)
    assert sum(measured) == pytest.approx(ledger["in_trials_j"], rel=1e-9)


def test_postgres_two_workers_one_killed_mid_trial(pg_url):
    options = WorkerOptions(n_workers=2, heartbeat_interval_s=1, grace_period_s=2,
                            reconnect_limit_s=10, poll_s=0.3)
    study, killed, _ = _run_and_kill(pg_url, "bayes", options, n_trials=4)
    _check_fault_tolerance(study, killed, 4)
    assert "heartbeat" in study.trials[killed].user_attrs["fail_reason"]
    _check_energy(study)
    # Concurrent bayes proposals are distinct points.
    points = [tuple(t.params.values()) for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(set(points)) == len(points)


def test_journal_two_workers_one_killed_mid_trial_grid_never_repeats(tmp_path):
    url = f"journal:///{tmp_path / 'study.log'}"
    options = WorkerOptions(n_workers=2, poll_s=0.3)
    study, killed, _ = _run_and_kill(url, "grid", options, n_trials=4)
    _check_fault_tolerance(study, killed, 4)
    assert "died" in study.trials[killed].user_attrs["fail_reason"]
    _check_energy(study)
    # The grid never ran a point twice: only the retry repeats the killed trial's point.
    grid_ids = [t.system_attrs["grid_id"] for t in study.trials
                if t.state == TrialState.COMPLETE]
    assert len(set(grid_ids)) == len(grid_ids) == 4


# ---------------------------------------------------------------- lost connection


class _Proxy:
    """A TCP forwarder on 127.0.0.1 that can cut every connection (a network outage)."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.up = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(self.target)
            self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def cut(self):
        self.up = False
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns.clear()

    def close(self):
        self.cut()
        self.sock.close()


def test_lost_connection_retries_then_exits_with_a_clear_message(pg_url, capsys):
    host_port = pg_url.rsplit("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = _Proxy((host, int(port)))
    try:
        url = pg_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        ctx = WorkerContext(url, WorkerOptions(heartbeat_interval_s=1, reconnect_limit_s=1.5))
        storage = ctx.storage()
        study = optuna.create_study(storage=storage, study_name=f"c{uuid.uuid4().hex[:8]}")
        proxy.cut()
        t0 = time.monotonic()
        with pytest.raises(StorageError) as err:
            study.get_trials()
        assert time.monotonic() - t0 >= 1.0  # it retried with back-off before giving up
        msg = str(err.value)
        assert "lost the connection" in msg and "could not reconnect" in msg
        assert "attempts" in msg and ":***@" in msg  # the password is not printed
        assert "retry" in capsys.readouterr().err

        # An outage shorter than the limit is survived.
        proxy.up = True
        ctx2 = WorkerContext(url, WorkerOptions(heartbeat_interval_s=1, reconnect_limit_s=20))
        s2 = optuna.load_study(study_name=study.study_name, storage=ctx2.storage())
        s2.get_trials()
        proxy.cut()
        threading.Timer(1.0, lambda: setattr(proxy, "up", True)).start()
        assert s2.get_trials() == []
    finally:
        proxy.close()


# ---------------------------------------------------------------- small parts


def test_sqlite_refuses_several_workers_and_names_the_alternatives():
    with pytest.raises(StorageError) as err:
        check_workers("sqlite:///studies/energy.db", 2)
    assert "journal:///" in str(err.value) and "postgresql://" in str(err.value)
    check_workers("sqlite:///studies/energy.db", 1)
    check_workers("journal:///x.log", 3)


def test_devices_round_robin_and_cores_split():
    assert gpu_assignment(3, ["0", "1"]) == ["0", "1", "0"]
    assert gpu_assignment(2, []) == [None, None]
    assert threads_per_worker(2, cores=16) == 8
    assert threads_per_worker(3, cores=2) == 1
    assert redact("postgresql://u:secret@h:1/db") == "postgresql://u:***@h:1/db"


class CounterMeter(Meter):
    method = "rapl"

    def __init__(self):
        self.j = 0.0

    def read_j(self):
        return {"cpu0": self.j, "gpu0": 1000.0 + self.j}


def test_ledger_splits_package_energy_by_cpu_time_and_keeps_the_rest():
    meter = CounterMeter()
    cpu = {1: 0.0, 2: 0.0}
    ledger = CpuTimeLedger(meter, cpu_s=lambda pid: cpu.get(pid))
    a, b = SharedCpuTimeMeter(meter, ledger, pid=1), SharedCpuTimeMeter(meter, ledger, pid=2)
    assert a.method == "rapl-shared-cputime"
    meter.j += 5.0  # nobody's window is open: unattributed
    wa = a.begin()
    meter.j += 10.0
    cpu[1] += 1.0  # only A: all 10 J to A
    wb = b.begin()
    meter.j += 30.0
    cpu[1] += 1.0
    cpu[2] += 2.0  # A 1/3, B 2/3 of 30 J
    ma = a.end(wa)
    meter.j += 6.0
    cpu[2] += 1.0
    mb = b.end(wb)
    assert ma.by_device_j["cpu0"] == pytest.approx(20.0)
    assert mb.by_device_j["cpu0"] == pytest.approx(26.0)
    assert ma.by_device_j["gpu0"] == pytest.approx(40.0)  # its own GPU counter, not shared
    assert ma.method == "rapl-shared-cputime"
    totals = ledger.totals()
    assert totals["total_j"] == pytest.approx(51.0)
    assert totals["unattributed_j"] == pytest.approx(5.0)
    # A worker killed in its window: its share stays unattributed, the sum still holds.
    wa = a.begin()
    meter.j += 8.0
    assert a.peek(wa).by_device_j["cpu0"] == pytest.approx(8.0)  # alone: all of it so far
    del cpu[1]
    totals = ledger.totals()
    assert totals["in_trials_j"] + totals["unattributed_j"] == pytest.approx(59.0)
    assert totals["still_open"] == 1


def test_bayes_tells_running_trials_as_the_worst_value():
    config = _config("liar")
    space = distributions(config.search_space)
    sampler = SkoptSampler(0, search_space=space, **vars(config.strategy.bayes))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for i, acc in enumerate([0.2, 0.6, 0.4]):
        study.add_trial(optuna.create_trial(
            params={"n_conv": i % 2, "relu": True, "lr": 0.001 * (i + 1), "beta1": 0.6},
            distributions=space, value=acc))
    running = study.ask()
    for name, dist in space.items():
        running._suggest(name, dist)
    opt = sampler.optimizer(study, trial_number=4)
    assert len(opt.Xi) == 4
    assert opt.yi[-1] == pytest.approx(-0.2)  # the worst accuracy, negated for skopt
    # A single process has no running trials besides its own: nothing invented.
    study.tell(running, 0.5)
    assert len(sampler.optimizer(study, trial_number=5).Xi) == 4
