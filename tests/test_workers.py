"""Several workers on one study: real PostgreSQL on 127.0.0.1 and a real journal file.

The PostgreSQL server: the URL in TUNING_ENERGY_TEST_POSTGRES_URL (.ci/run exports it), this
clone's `make postgres` server, or one conftest.py's `pg_url` starts for the session and stops
at its end. Without server binaries the PostgreSQL tests skip locally, and fail under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from tuning_energy.analysis import trials_table
from tuning_energy.config import parse_config
from tuning_energy.energy import MeterChoice
from tuning_energy.energy.accounting import CHARGED_PARTS, charged_energy_j, charged_total_j
from tuning_energy.energy.base import Meter
from tuning_energy.energy.baseline import measure_idle
from tuning_energy.energy.shared import CpuTimeLedger, SharedCpuTimeMeter, shared_method
from tuning_energy.errors import ConfigError, StorageError
from tuning_energy.run.pool import WorkerPool, gpu_assignment
from tuning_energy.run.runner import run_study
from tuning_energy.run.trial_source import LocalTrials
from tuning_energy.run.workers import (
    WORKER_ATTR,
    WorkerContext,
    WorkerOptions,
    check_workers,
    threads_per_worker,
    trial_source,
)
from tuning_energy.search.strategies import SkoptSampler, distributions
from tuning_energy.store.storage import open_storage
from tuning_energy.store.url import redact

from .conftest import tiny_doc
from .energy.fake_pynvml import FakeGpu, make_pynvml

POWER_W = 40.0
IDLE_S = 0.3


class ClockPackageMeter(Meter):
    """A package-wide counter every process reads alike: POWER_W x wall-clock seconds."""

    method = "fake-package"
    package_wide = True

    def read_j(self) -> dict[str, float]:
        return {"cpu0": POWER_W * time.time()}


def clock_meters(config, use_gpus=None, cuda_index=None) -> MeterChoice:  # a MeterFactory; spawned workers import it
    return MeterChoice(ClockPackageMeter(), "fake")


class TickMeter(Meter):
    """A per-process counter that advances 1 J each time it is read: every trial is charged
    the same few joules, however fast or loaded the machine is."""

    method = "fake-tick"

    def __init__(self):
        self.j = 0.0

    def read_j(self) -> dict[str, float]:
        self.j += 1.0
        return {"cpu0": self.j}


def tick_meters(config, use_gpus=None, cuda_index=None) -> MeterChoice:
    return MeterChoice(TickMeter(), "fake")


# ---------------------------------------------------------------- PostgreSQL


# pg_url: conftest.py's session fixture (stops the server it started when the session ends).


def _config(name: str, search_space=None, **over):
    doc = tiny_doc(name=name, **over)
    if search_space is not None:
        doc["search_space"] = search_space
    return parse_config(doc)


def _kill_mid_trial(storage_url: str, study_name: str, pids: list[int],
                    timeout_s: float = 120) -> int:
    """SIGKILL the worker of the first trial whose heartbeat has written its energy so far
    (it has trained for at least one heartbeat interval); its trial number."""
    storage = open_storage(storage_url)
    deadline = time.monotonic() + timeout_s
    oldest = 0.0
    while time.monotonic() < deadline:
        study = optuna.load_study(study_name=study_name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            ident = t.system_attrs.get(WORKER_ATTR)
            age = time.time() - t.datetime_start.timestamp()
            oldest = max(oldest, age)
            if ident and ident["pid"] in pids and t.params and \
                    t.user_attrs.get("energy_partial") is True:
                os.kill(ident["pid"], signal.SIGKILL)
                return t.number
        time.sleep(0.1)
    raise AssertionError(f"no trial ran long enough to be killed mid-trial with its energy so "
                         f"far written (oldest RUNNING trial seen: {oldest:.2f} s)")


def _run_and_kill(storage_url: str, strategy: str, options: WorkerOptions, n_trials: int):
    name = f"w{uuid.uuid4().hex[:8]}"
    # 1 conv block and enough epochs that a trial outlasts a few 1 s heartbeats, so that one
    # writes its energy so far before the kill: 50 epochs took 1.0 s on a fresh 2-core
    # machine (an epoch ~20 ms), about one heartbeat, and no trial was caught mid-way.
    # The idle baseline is on: its windows go through the ledger too.
    config = _config(name, train={"epochs": 150}, budget={"n_trials": n_trials},
                     meter={"kind": "estimate", "idle_s": IDLE_S},
                     fixed={"n_conv": 1},
                     search_space={"lr": {"type": "float", "low": 1e-3, "high": 1e-1,
                                          "log": True},
                                   "beta1": {"type": "float", "low": 0.5, "high": 0.95}},
                     strategy={"bayes": {"n_initial_points": 2, "n_points": 100},
                               "grid_levels": 3})
    pool = WorkerPool(config, strategy, 0, storage_url, options, meter_factory=clock_meters)
    pool.start()
    try:
        pids = [p.pid for p in pool.processes]
        killed = _kill_mid_trial(storage_url, f"{name}-{strategy}-s0", pids)
    except BaseException:  # stop every worker this test started, then report
        for p in pool.processes:
            p.kill()
        with contextlib.suppress(Exception):
            pool.wait(timeout_s=60)  # joins them and shuts the ledger down
        raise
    summary = pool.wait(timeout_s=120)
    return pool.study, killed, summary


def _check_fault_tolerance(study: optuna.Study, killed: int, n_trials: int,
                           storage_url: str) -> None:
    trials = study.get_trials(deepcopy=False)
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    # The budgeted number of COMPLETE trials; nothing left RUNNING or WAITING.
    assert len(by_state[TrialState.COMPLETE]) == n_trials
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING]
    # The killed trial is FAIL, says why, and was re-run exactly once with its parameters.
    dead = trials[killed]
    assert dead.state == TrialState.FAIL
    assert "worker" in dead.user_attrs["fail_reason"]
    # It keeps the energy its heartbeat wrote before the kill, marked partial ...
    assert dead.user_attrs["energy_partial"] is True
    assert dead.user_attrs["energy_j"] > 0
    assert dead.user_attrs["energy_method"] == shared_method("fake-package")
    # ... and the study's totals count it.
    assert charged_energy_j(dead.user_attrs) >= dead.user_attrs["energy_j"]
    table = trials_table(storage_url, [study.study_name])  # what the analysis reads
    row = table[table["number"] == killed].iloc[0]
    assert row["energy_j"] == pytest.approx(dead.user_attrs["energy_j"])
    assert bool(row["energy_partial"])
    # A trial that finished has its final energy: never marked partial.
    assert not any(t.user_attrs.get("energy_partial") for t in trials
                   if t.state == TrialState.COMPLETE)
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
    # Every window a worker closed: each part a trial is charged (training, proposing, ...).
    measured = [t.user_attrs[k] for t in trials for k in CHARGED_PARTS
                if t.user_attrs.get(k) is not None]
    assert all(t.user_attrs["energy_method"] == method for t in trials
               if t.state == TrialState.COMPLETE)
    # The meter saw POWER_W for as long as the ledger ran ...
    assert ledger["total_j"] == pytest.approx(POWER_W * ledger["duration_s"], rel=0.02)
    # ... and the trials (the killed one's partial energy included) plus the unattributed
    # rest add up to exactly that, with the idle baseline on: its windows are on no trial.
    assert sum(measured) + study.user_attrs["energy_unattributed_j"] == \
        pytest.approx(ledger["total_j"], rel=1e-9)
    assert sum(measured) == pytest.approx(ledger["in_trials_j"], rel=1e-9)
    assert 0 < ledger["idle_j"] <= ledger["unattributed_j"]
    # Each worker's idle reading is kept (one attr per worker), none overwritten.
    idle = {k: v for k, v in study.user_attrs.items() if k.startswith("idle_power_w:")}
    pids = {t.system_attrs[WORKER_ATTR]["pid"] for t in trials}
    assert {int(k.rsplit(":", 1)[1]) for k in idle} == pids
    assert all(v["idle_power_w"] is not None and v["idle_s"] == IDLE_S for v in idle.values())
    assert "idle_power_w" not in study.user_attrs


def test_postgres_two_workers_one_killed_mid_trial(pg_url):
    options = WorkerOptions(n_workers=2, heartbeat_interval_s=1, grace_period_s=2,
                            reconnect_limit_s=10, poll_s=0.3)
    study, killed, _ = _run_and_kill(pg_url, "bayes", options, n_trials=4)
    _check_fault_tolerance(study, killed, 4, pg_url)
    assert "heartbeat" in study.trials[killed].user_attrs["fail_reason"]
    _check_energy(study)
    # Concurrent bayes proposals are distinct points.
    points = [tuple(t.params.values()) for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(set(points)) == len(points)


def test_journal_two_workers_one_killed_mid_trial_grid_never_repeats(tmp_path):
    url = f"journal:///{tmp_path / 'study.log'}"
    options = WorkerOptions(n_workers=2, heartbeat_interval_s=1, poll_s=0.3)
    study, killed, _ = _run_and_kill(url, "grid", options, n_trials=4)
    _check_fault_tolerance(study, killed, 4, url)
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


def test_a_process_gets_the_trial_source_of_its_store(tmp_path):
    """SQLite: this process alone, under the study's lock; journal / PostgreSQL: one worker
    that claims its trials beside any other process on the study, with the config's threads."""
    config = parse_config(tiny_doc(train={"torch_threads": 2}))
    local = trial_source(config, f"sqlite:///{tmp_path / 's.db'}")
    assert isinstance(local, LocalTrials) and local.storage_url.path == tmp_path / "s.db"
    for url in (f"journal:///{tmp_path / 'j.log'}", "postgresql://u:pw@127.0.0.1:1/db"):
        worker = trial_source(config, url)
        assert isinstance(worker, WorkerContext), url
        assert (worker.options.n_workers, worker.torch_threads) == (1, 2)


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


def test_ledger_books_idle_windows_apart_from_trials():
    meter = ClockPackageMeter()
    ledger = CpuTimeLedger(meter, cpu_s=lambda pid: 0.0)
    a = SharedCpuTimeMeter(meter, ledger, pid=1)
    idle_w = measure_idle(a, 0.05)  # the worker's idle reading, through the ledger
    assert idle_w == pytest.approx(POWER_W, rel=0.2)  # alone: all of the package
    window = a.begin()
    time.sleep(0.02)
    trial_j = a.end(window).energy_j
    totals = ledger.totals()
    # The idle window is on no trial: only the trial window is in_trials_j ...
    assert totals["in_trials_j"] == pytest.approx(trial_j)
    assert totals["idle_j"] == pytest.approx(idle_w * 0.05, rel=0.2)
    # ... and trials + unattributed (idle included) is what the meter saw.
    assert trial_j + totals["unattributed_j"] == pytest.approx(totals["total_j"])
    assert totals["idle_j"] < totals["unattributed_j"]


def test_ledger_gives_a_dead_worker_no_share():
    meter = CounterMeter()
    cpu = {1: 0.0, 2: 0.0}
    ledger = CpuTimeLedger(meter, cpu_s=lambda pid: cpu.get(pid))
    a, b = SharedCpuTimeMeter(meter, ledger, pid=1), SharedCpuTimeMeter(meter, ledger, pid=2)
    wa, wb = a.begin(), b.begin()
    meter.j += 4.0  # no CPU time shown: an even split, 2 J each
    assert a.peek(wa).by_device_j["cpu0"] == pytest.approx(2.0)
    del cpu[1]  # A is killed in its window
    meter.j += 10.0  # too short to show CPU time: all of it to B, the only live window
    assert b.end(wb).by_device_j["cpu0"] == pytest.approx(12.0)
    totals = ledger.totals()
    assert totals["died_in_window"] == {1: pytest.approx(2.0)}
    assert totals["in_trials_j"] + totals["unattributed_j"] == pytest.approx(14.0)
    assert totals["unattributed_j"] == pytest.approx(2.0)


def test_partial_energy_is_written_during_the_trial_and_replaced_at_its_end():
    from tuning_energy.run.worker_energy import PartialEnergyWriter, TrialWindowMeter

    meter = TrialWindowMeter(TickMeter())
    study = optuna.create_study()
    trial = study.ask()
    meter.end(meter.begin())  # e.g. the proposal's window, before the trial's heartbeat
    meter.arm()  # what the heartbeat does when the trial starts
    assert not meter.write_partial(trial)  # no window open: nothing written
    window = meter.begin()  # the training window
    meter.end(meter.begin())  # a window after it (storage, ...) is not the trial's
    assert meter.write_partial(trial)
    assert trial.user_attrs["energy_partial"] is True
    assert trial.user_attrs["energy_j"] == pytest.approx(3.0)  # three reads since its begin
    assert trial.user_attrs["energy_method"] == "fake-tick"
    m = meter.end(window)
    assert m.extra == {"energy_partial": False}  # for the final write, in one transaction
    assert not meter.write_partial(trial)  # ended: no partial value after the final one
    # A window with no partial write carries no mark.
    assert meter.end(meter.begin()).extra == {}
    # The heartbeat's thread: a trial window begun inside it is written every interval.
    trial = study.ask()
    with PartialEnergyWriter(meter, trial, interval_s=0.01) as writer:
        window = meter.begin()
        deadline = time.monotonic() + 10
        while writer.n_written < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert meter.end(window).extra == {"energy_partial": False}
    assert writer.n_written >= 2 and trial.user_attrs["energy_partial"] is True
    assert not meter.write_partial(trial)


# ---------------------------------------------------------------- energy across workers


def test_energy_budget_is_study_wide_with_two_workers(tmp_path):
    """max_energy_j with 2 workers: each claim checks what the whole study was charged."""
    url = f"journal:///{tmp_path / 'study.log'}"
    name = f"b{uuid.uuid4().hex[:8]}"
    # A tick per meter read: a trial is charged its training window's ticks plus those of
    # its proposing windows (one per sampler call, nested in the store's): about 17 J here.
    # Trials of 10 epochs (~1 s): both workers are up before the budget is spent.
    max_j = 200.0
    config = _config(name, budget={"n_trials": 60, "max_energy_j": max_j},
                     train={"epochs": 10})
    pool = WorkerPool(config, "random", 0, url, WorkerOptions(n_workers=2, poll_s=0.2),
                      meter_factory=tick_meters)
    pool.start()
    summary = pool.wait(timeout_s=300)
    trials = pool.study.get_trials(deepcopy=False)
    charged = [charged_energy_j(t.user_attrs) for t in trials]
    assert None not in charged
    per_trial_j = max(charged)
    assert max_j / per_trial_j >= 4  # the budget allows several trials
    total_j = charged_total_j(t.user_attrs for t in trials)
    # The energy budget stopped the study, within one trial per worker of it (each worker
    # counting only its own trials would have spent about twice the budget).
    assert summary.stop_reason.startswith("energy budget")
    assert summary.n_finished < 60
    assert max_j - 2 * per_trial_j < total_j <= max_j + 2 * per_trial_j
    assert len({t.system_attrs[WORKER_ATTR]["pid"] for t in trials}) == 2
    assert summary.extra["exit_codes"] == [0, 0]


def test_workers_on_gpus_record_the_gpu_meter_and_never_share_a_metered_gpu(
        tmp_path, monkeypatch):
    fake = make_pynvml([FakeGpu("GPU A", "GPU-a"), FakeGpu("GPU B", "GPU-b"),
                        FakeGpu("GPU C", "GPU-c")])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")  # two of the three GPUs are ours
    url = f"journal:///{tmp_path / 'study.log'}"
    config = _config(f"g{uuid.uuid4().hex[:8]}", train={"device": "cuda"},
                     meter={"kind": "auto", "idle_s": 0, "powercap_root": str(tmp_path)})

    # Three NVML-metered workers on two GPUs: refused before anything starts or is stored.
    pool = WorkerPool(config, "random", 0, url, WorkerOptions(n_workers=3))
    try:
        with pytest.raises(ConfigError) as err:
            pool.start()
    finally:
        for p in pool.processes:  # (none, unless the check is missing)
            p.kill()
            p.join()
    msg = str(err.value)
    assert "--workers = 3" in msg and "2 GPU(s)" in msg and "0,2" in msg
    assert "--workers 2" in msg and "train.device = 'cpu'" in msg
    assert pool.processes == []
    assert not (tmp_path / "study.log").exists()

    # One worker per GPU: the study says the GPUs are metered, and which.
    pool = WorkerPool(config, "random", 0, url, WorkerOptions(n_workers=2))
    assert pool.gpus() == ["0", "2"]
    study, _ = pool._open_study(pool.gpus())
    attrs = study.user_attrs
    assert attrs["energy_method"] == "nvml-counter+estimate-cpu-tdp-tree"
    assert "nvml" not in attrs["meter"]["not_used"]
    gpus = attrs["meter"]["parts"][0]["gpus"]
    assert sorted(g["name"] for g in gpus.values()) == ["GPU A", "GPU C"]
    assert attrs["worker_gpus"] == ["0", "2"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,2"  # restored


@pytest.fixture
def three_gpus(monkeypatch):
    """A fake pynvml with three GPUs, of which CUDA_VISIBLE_DEVICES = 0,2 are ours; torch's
    own view of CUDA is not asked (CUDA_VISIBLE_DEVICES is parsed)."""
    from tuning_energy.energy import gpus

    fake = make_pynvml([FakeGpu("GPU A", "GPU-a"), FakeGpu("GPU B", "GPU-b"),
                        FakeGpu("GPU C", "GPU-c")])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    monkeypatch.setattr(gpus, "torch_cuda_uuids", lambda: None)
    return fake


def _metered_gpu_names(choice: MeterChoice) -> list[str]:
    try:
        return sorted(g["name"] for g in choice.describe()["gpus"].values())
    finally:
        choice.meter.close()


def test_a_workers_meter_is_the_training_gpus_and_keeps_why(three_gpus, tmp_path):
    ctx = WorkerContext(f"journal:///{tmp_path / 'study.log'}")
    config = parse_config(tiny_doc(meter={"kind": "auto", "powercap_root": str(tmp_path)}))
    choice = ctx.meter_choice(config.meter, use_gpus=True, cuda_index=1)
    assert "cuda:1" in choice.gpu_choice  # why these GPUs, as the study records it
    assert _metered_gpu_names(choice) == ["GPU C"]  # cuda:1 of "0,2": physical GPU 2
    assert choice.meter.method == "nvml-counter+estimate-cpu-tdp-tree"
    # A CPU-time estimate cannot see idle power, wrapped for the heartbeat or not.
    estimate = ctx.meter_choice(parse_config(tiny_doc()).meter, use_gpus=False)
    assert not estimate.meter.sees_idle_power


class _Built(Exception):
    """Raised by `_stop_after_meter`: the meter a run built, and the run stopped there."""


def _stop_after_meter(config, **kwargs) -> MeterChoice:  # a MeterFactory
    from tuning_energy.energy import build_meter

    raise _Built(build_meter(config, **kwargs), kwargs)


@pytest.mark.parametrize("pinned", [None, "2"])
def test_a_worker_on_cuda_n_trains_and_meters_that_gpu(three_gpus, tmp_path, monkeypatch,
                                                         pinned):
    """train.device = 'cuda:1' (physical GPU 2 of CUDA_VISIBLE_DEVICES = 0,2): a worker in
    this process (pinned None) meters cuda:1; one the pool pinned to GPU 2 sees it alone,
    as cuda:0, and meters it. Either way GPU 2, and the study would say why."""
    import torch

    seen = ["0", "2"] if pinned is None else [pinned]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(seen))  # the pool sets the pinned
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(seen))
    config = _config("cudan", train={"device": "cuda:1"},
                     meter={"kind": "auto", "idle_s": 0, "powercap_root": str(tmp_path)})
    ctx = WorkerContext(f"journal:///{tmp_path / 'study.log'}", gpu=pinned,
                        meter_factory=_stop_after_meter)
    with pytest.raises(_Built) as built:
        run_study(config, "random", 0, ctx.storage_url, progress=False, source=ctx)
    choice, kwargs = built.value.args
    assert kwargs == {"use_gpus": True, "cuda_index": None if pinned else 1}
    assert f"cuda:{0 if pinned else 1}" in choice.gpu_choice
    assert _metered_gpu_names(choice) == ["GPU C"]


def test_a_pool_on_cuda_n_puts_every_worker_on_that_gpu(three_gpus, tmp_path):
    url = f"journal:///{tmp_path / 'study.log'}"
    gpu_meter = {"kind": "auto", "idle_s": 0, "powercap_root": str(tmp_path)}
    config = _config(f"n{uuid.uuid4().hex[:8]}", train={"device": "cuda:1"}, meter=gpu_meter)
    # Two NVML-metered workers on the one GPU: refused, pointing at train.device = 'cuda'.
    pool = WorkerPool(config, "random", 0, url, WorkerOptions(n_workers=2))
    assert pool.gpus() == ["2", "2"]
    with pytest.raises(ConfigError) as err:
        pool.start()
    assert pool.processes == [] and not (tmp_path / "study.log").exists()
    assert "--workers = 2 on 1 GPU(s) (CUDA_VISIBLE_DEVICES 2)" in str(err.value)
    assert "train.device = 'cuda' (one worker on each visible GPU" in str(err.value)
    # One worker: the study records GPU 2 metered, and why.
    pool = WorkerPool(config, "random", 0, url, WorkerOptions(n_workers=1))
    assert pool.gpus() == ["2"]
    study, _ = pool._open_study(pool.gpus())
    assert sorted(g["name"] for g in study.user_attrs["meter"]["gpus"].values()) == ["GPU C"]
    assert "'cuda:1'" in study.user_attrs["meter"]["gpu_choice"]
    assert study.user_attrs["worker_gpus"] == ["2"]
    # A GPU the pool does not see: said before anything starts.
    far = _config("far", train={"device": "cuda:2"}, meter=gpu_meter)
    with pytest.raises(ConfigError, match=r"'cuda:2': the pool sees 2 GPU\(s\) "
                                          r"\(CUDA_VISIBLE_DEVICES = '0,2': cuda:0..cuda:1\)"):
        WorkerPool(far, "random", 0, url, WorkerOptions(n_workers=2)).gpus()
    # Not metered by NVML: several workers may share the GPU.
    cpu_metered = _config(f"e{uuid.uuid4().hex[:8]}", train={"device": "cuda:1"})
    pool = WorkerPool(cpu_metered, "random", 0, url, WorkerOptions(n_workers=2))
    study, _ = pool._open_study(pool.gpus())
    assert study.user_attrs["worker_gpus"] == ["2", "2"]


def test_partial_package_energy_skips_an_unknown_device():
    from tuning_energy.run.worker_energy import partial_package_j

    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("energy_partial", True)
    trial.set_user_attr("energy_by_device_j", {"cpu0": 2.5, "dram0": None, "gpu0": 9.0})
    frozen = study.get_trials()
    assert partial_package_j(frozen, {7}, lambda t: 7) == pytest.approx(2.5)


def test_a_trials_energy_attrs_reach_a_journal_file_in_one_append(tmp_path):
    """A worker killed while writing its trial's energy leaves all the attrs or none: the
    journal gets them in one append (one line per attr, written and fsynced at once)."""
    storage = open_storage(f"journal:///{tmp_path / 'study.log'}")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    appends = []
    append_logs = storage._backend.append_logs
    storage._backend.append_logs = lambda logs: (appends.append(len(logs)), append_logs(logs))
    attrs = {"energy_partial": True, "energy_j": 3.0, "energy_by_device_j": {"cpu0": 3.0},
             "energy_method": "rapl", "duration_s": 1.0}
    from tuning_energy.store.trial_writes import set_user_attrs

    set_user_attrs(trial, attrs)
    assert appends == [len(attrs)]
    reader = open_storage(f"journal:///{tmp_path / 'study.log'}")
    assert optuna.load_study(study_name="s", storage=reader).trials[0].user_attrs == attrs
    study.tell(trial, 0.5)
    n_appends = len(appends)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_user_attrs(trial, {"energy_j": 4.0, "energy_partial": False})
    assert len(appends) == n_appends  # refused before anything was written
    study.ask()  # the store is still usable
