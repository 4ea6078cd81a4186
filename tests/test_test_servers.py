"""Tests stop what they start: conftest.py's PostgreSQL fixture and its leftover check.

The servers here are real (scripts/postgres.sh) but private: their own data directory and a
free port, never the server other sessions use.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, _pg, free_port, have_pg_binaries, pg_server


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _port(url: str) -> int:
    return int(url.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _server_pids(data_dir: str) -> list[int]:
    """Processes whose command line names this data directory (the postmaster's `-D`)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if f"{data_dir}/data".encode() in f.read():
                        pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture(scope="module")
def pg_env() -> Iterator[dict[str, str]]:
    """A data directory of its own (under /tmp: the postgres user must reach it as root)."""
    if not have_pg_binaries():
        if os.environ.get("CI") == "true":
            pytest.fail("CI: no PostgreSQL server binaries")
        pytest.skip("no PostgreSQL server binaries here")
    root = tempfile.mkdtemp(prefix="tuning-energy-pg-test-", dir="/tmp")
    try:
        yield {"TUNING_ENERGY_PG_DIR": root}
    finally:
        _pg("stop", {"TUNING_ENERGY_PG_DIR": root})  # whatever a failed test left
        shutil.rmtree(root, ignore_errors=True)


def test_a_server_the_fixture_started_is_stopped_at_its_end(pg_env):
    with pg_server(pg_env) as url:
        port = _port(url)
        assert url.startswith("postgresql://postgres:") and _listening(port)
        assert _server_pids(pg_env["TUNING_ENERGY_PG_DIR"])
    assert not _listening(port)
    assert not _server_pids(pg_env["TUNING_ENERGY_PG_DIR"])
    assert _pg("status", pg_env).returncode == 3  # "stopped"


def test_a_server_that_was_already_running_is_left_alone(pg_env):
    env = {**pg_env, "TUNING_ENERGY_PG_PORT": str(free_port())}
    started = _pg("start", env)  # as a user's `make postgres` would
    assert started.returncode == 0, started.stderr
    try:
        # Asked from an environment without the port: the URL still names the server's own.
        with pg_server(pg_env) as url:
            assert url == started.stdout.strip().splitlines()[-1]
        assert _listening(_port(url))
        assert _pg("status", pg_env).returncode == 0
    finally:
        _pg("stop", pg_env)
    assert not _listening(_port(url))


def _session(tmp_path: Path, test_source: str, env: dict[str, str] | None = None):
    """A pytest session of its own, with this suite's conftest.py and one test file."""
    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    (tests / "__init__.py").write_text("")
    shutil.copy(REPO / "tests" / "conftest.py", tests / "conftest.py")
    if not (tmp_path / "scripts").exists():
        (tmp_path / "scripts").symlink_to(REPO / "scripts")
    (tests / "test_one.py").write_text(textwrap.dedent(test_source))
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    environ.pop("TUNING_ENERGY_TEST_POSTGRES_URL", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tests)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=environ)


def test_a_session_stops_the_server_it_started_and_twice_in_a_row_passes(pg_env, tmp_path):
    """What `make test` does without TUNING_ENERGY_TEST_POSTGRES_URL and with no server
    running: the session starts one, and none is left running when it ends."""
    url_file = tmp_path / "url"
    source = f"""
        import optuna
        from tuning_energy.store.storage import open_storage

        def test_uses_the_server(pg_url):
            open({str(url_file)!r}, "w").write(pg_url)
            optuna.create_study(storage=open_storage(pg_url))
    """
    for _ in range(2):
        out = _session(tmp_path, source, pg_env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert not _listening(_port(url_file.read_text()))
        assert not _server_pids(pg_env["TUNING_ENERGY_PG_DIR"])
        assert _pg("status", pg_env).returncode == 3


def test_a_process_a_test_leaves_running_fails_the_session_and_is_ended(tmp_path: Path):
    """A session whose test starts a detached process and never stops it: the session
    reports the process as an error and ends it."""
    pid_file = tmp_path / "pid"
    out = _session(tmp_path, f"""
        import subprocess

        def test_starts_a_daemon_and_forgets_it():
            proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
            open({str(pid_file)!r}, "w").write(str(proc.pid))
    """)
    report = out.stdout + out.stderr
    assert out.returncode == 1, report
    assert "1 passed, 1 error" in report
    pid = int(pid_file.read_text())
    assert f"pid {pid}: sleep 300" in report
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
