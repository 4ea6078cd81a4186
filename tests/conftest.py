"""Shared fixtures: tiny, fast study configs, temporary real SQLite stores, a PostgreSQL
server, and a check that no test leaves a process behind.

- `pg_url` (session): TUNING_ENERGY_TEST_POSTGRES_URL when set (.ci/run exports it); else
  this clone's server (`make postgres`) when it is running; both are left alone. Otherwise
  the fixture starts one (scripts/postgres.sh, on a free loopback port) and stops it when the
  session ends. Without server binaries the PostgreSQL tests skip locally, and fail under
  CI=true.
- Every process the session starts carries TUNING_ENERGY_TEST_SESSION in its environment
  (inherited, even by a daemon such as the PostgreSQL server). When the session's fixtures
  are torn down, any such process still alive is ended and reported as an error.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuning_energy.config import StudyConfig, parse_config

# Results with convolutions differ between 1 and 2 torch threads: fix it in tests.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Tests that Ctrl-C a child (SIGINT) need SIGINT not ignored. A shell that starts pytest in
# the background without job control (`make test &` in a script) ignores SIGINT, children
# inherit an ignored signal across exec, and Python then installs no KeyboardInterrupt
# handler: the child would run on. A Python-level handler is reset to the default in every
# child at exec, so installing Python's own here gives the children a working Ctrl-C.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TINY = {
    "name": "tiny",
    "target_accuracy": 0.5,
    "data": {"dataset": "digits", "split_seed": 0, "val_fraction": 0.25},
    "train": {"epochs": 1, "batch_size": 128, "torch_threads": 1, "device": "cpu"},
    "budget": {"n_trials": 3},
    "meter": {"kind": "estimate", "idle_s": 0},
    "strategy": {"bayes": {"n_initial_points": 2, "n_points": 200}},
    "search_space": {
        "n_conv": {"type": "int", "low": 0, "high": 1},
        "relu": {"type": "bool"},
        "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
        "beta1": {"type": "float", "low": 0.5, "high": 0.95},
    },
}


def tiny_doc(**overrides) -> dict:
    """A deep copy of the tiny config with top-level sections updated."""
    import copy

    doc = copy.deepcopy(TINY)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    return doc


def toml_text(doc: dict, prefix: str = "") -> str:
    """`doc` as TOML: its plain keys, then a [table] per nested dict; None values left out."""
    import json

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return f"[{', '.join(value(x) for x in v)}]"
        return json.dumps(v) if isinstance(v, str) else repr(v)

    lines = [f"{k} = {value(v)}" for k, v in doc.items()
             if v is not None and not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines += ["", f"[{prefix}{k}]", toml_text(v, f"{prefix}{k}.").strip("\n")]
    return "\n".join(lines) + "\n"


def write_tiny(path: Path, doc: dict | None = None, **overrides) -> Path:
    """The tiny study config, `tiny_doc(**overrides)` (or `doc`, one made from it), written
    as a TOML file at `path`."""
    path.write_text(toml_text(doc if doc is not None else tiny_doc(**overrides)))
    return path


@pytest.fixture
def tiny_config() -> StudyConfig:
    return parse_config(tiny_doc())


@pytest.fixture
def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'energy.db'}"


@pytest.fixture(params=["UTC", "Asia/Kolkata"])
def zone(request) -> Iterator[str]:
    """The process's local time zone, UTC and one that is not (Optuna >= 5 stores a trial's
    datetimes as UTC and reads them back as local time: code that mixes the two is off by
    the zone's offset)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


# ---------------------------------------------------------------- PostgreSQL

REPO = Path(__file__).resolve().parents[1]
PG_SCRIPT = REPO / "scripts" / "postgres.sh"


def have_pg_binaries() -> bool:
    return bool(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")) or shutil.which("pg_ctl") \
        is not None or (os.geteuid() == 0 and shutil.which("apt-get") is not None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(PG_SCRIPT), command], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


@contextlib.contextmanager
def pg_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """The URL of scripts/postgres.sh's server for `env` (TUNING_ENERGY_PG_DIR, ...).

    A server that is already running is used and left running; otherwise one is started
    on a free port (never "port taken" by another clone's server) and stopped on exit.
    """
    env = dict(env or {})
    status = _pg("status", env)
    if status.returncode == 0 and status.stdout.startswith("running: "):
        yield status.stdout.split("running: ", 1)[1].strip()
        return
    env.setdefault("TUNING_ENERGY_PG_PORT", str(free_port()))
    started = _pg("start", env)
    if started.returncode != 0:
        raise RuntimeError(f"scripts/postgres.sh start failed:\n{started.stderr}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        stopped = _pg("stop", env)
        assert stopped.returncode == 0, f"scripts/postgres.sh stop failed:\n{stopped.stderr}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = os.environ.get("TUNING_ENERGY_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if not have_pg_binaries():
        if os.environ.get("CI") == "true":
            pytest.fail("CI: no PostgreSQL server; .ci/run must start one (make postgres)")
        pytest.skip("no PostgreSQL server binaries here (make postgres installs them as root)")
    with pg_server() as url:
        yield url


# ---------------------------------------------------------------- processes left behind

SESSION_ENV = "TUNING_ENERGY_TEST_SESSION"
# The interpreter's own helpers: they end with the pytest process, not with a test.
_OWN_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def marked_processes(marker: str) -> dict[int, str]:
    """pid -> command line of every live process whose environment carries `marker`."""
    needle = f"{SESSION_ENV}={marker}".encode()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":  # exited, not reaped
                    continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if not any(h in cmdline for h in _OWN_HELPERS):
            found[int(entry.name)] = cmdline
    return found


def end_leftovers(marker: str, wait_s: float = 5.0) -> dict[int, str]:
    """The processes carrying `marker` still alive after `wait_s` (time for ones on their way
    out), each then sent SIGTERM (and SIGKILL 5 s later)."""
    deadline = time.monotonic() + wait_s
    while (left := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in marked_processes(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + 5
        while marked_processes(marker) and time.monotonic() < end:
            time.sleep(0.1)
    return left


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Set up first, torn down last: after the session's other fixtures have stopped what
    they started, nothing this session started may still run."""
    marker = uuid.uuid4().hex
    previous = os.environ.get(SESSION_ENV)
    os.environ[SESSION_ENV] = marker
    yield
    if previous is None:
        os.environ.pop(SESSION_ENV, None)
    else:
        os.environ[SESSION_ENV] = previous
    left = end_leftovers(marker)
    assert not left, "tests left these processes running (now ended):\n" + "\n".join(
        f"  pid {pid}: {cmd}" for pid, cmd in sorted(left.items()))
