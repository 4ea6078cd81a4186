"""Faults a user's machine throws, injected for real: SIGTERM, a torn journal, a full disk,
a read-only store, a locked database. Each asserts a clear message, no traceback, no trial
lost and an exact resume (docs/reliability.md).

How each fault is made here (the container runs as root, so chmod alone never blocks a
write):
- SIGTERM: sent to a real `tuning-energy` process while its trial is in the objective (the
  objective below waits on a file and says when it started), to `study`, to `compare`,
  and to a pool's parent (`--workers 2`).
- a torn journal: a real journal cut in the middle of its last line.
- a full disk: the store's folder is a small tmpfs (`mount -t tmpfs -o size=...`, root
  only; skipped elsewhere), remounted larger for the resume.
- a read-only store: a read-only bind mount of its folder, or `chattr +i` on its file
  (root only; skipped elsewhere).
- a locked SQLite database: a second connection holds `BEGIN EXCLUSIVE` while the run's
  busy timeout (storage.SQLITE_TIMEOUT_S, 60 s) is cut to 0.5 s.
The storage faults run the CLI in this process (`cli.main`, the code path of the command)
to keep the suite fast; the signals need a process of their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuning_energy.cli import main
from tuning_energy.store import storage as storage_mod

REPO = Path(__file__).resolve().parents[1]

OBJECTIVE = '''
import time
from pathlib import Path

HERE = Path(__file__).parent


def objective(params, ctx):
    """Fast; while HERE/hold exists it waits (mid-trial) and says so in started-N."""
    if (HERE / "hold").exists():
        (HERE / f"started-{ctx.trial_number}").touch()
        try:
            while (HERE / "hold").exists():
                time.sleep(0.01)
        except KeyboardInterrupt:  # a clean-up that hangs while HERE/hang exists
            (HERE / "interrupted").touch()
            while (HERE / "hang").exists():
                time.sleep(0.01)
            raise
    return {"loss": (params["x"] - 0.3) ** 2}
'''


def _study_dir(tmp_path: Path, n_trials: int = 4) -> Path:
    """A fast own objective and its config in tmp_path/study (one module name per test)."""
    folder = tmp_path / "study"
    folder.mkdir()
    module = f"faults_objective_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(OBJECTIVE)
    (folder / "fast.toml").write_text(textwrap.dedent(f'''
        name = "fast"
        [objective]
        function = "{module}:objective"
        metric = "loss"
        direction = "minimize"
        [budget]
        n_trials = {n_trials}
        [meter]
        kind = "estimate"
        idle_s = 0
        [search_space.x]
        type = "float"
        low = -1.0
        high = 1.0
    '''))
    return folder


def _args(folder: Path, url: str, *more: str, command: str = "study") -> list[str]:
    return [command, "--config", str(folder / "fast.toml"), "--strategy" if command == "study"
            else "--strategies", "random", "--storage", url, "--no-progress", *more]


def _plain(url: str):
    """The store as plain Optuna opens it (no repair)."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url.split(":///", 1)[1]))
    return url


def _trials(url: str, name: str = "fast-random-s0") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=_plain(url)).get_trials(deepcopy=False)


def _study_attrs(log: Path) -> dict:
    return optuna.load_study(study_name="s", storage=_plain(f"journal:///{log}")).user_attrs


def _complete(url: str) -> dict[int, tuple]:
    return {t.number: (t.params["x"], t.value) for t in _trials(url)
            if t.state == TrialState.COMPLETE}


def _resumes_exactly(url: str, folder: Path, n: int, before: dict[int, tuple], capsys) -> str:
    """Rerun the command: exactly n COMPLETE trials, nothing RUNNING, the earlier ones kept."""
    storage_mod._JOURNALS.clear()  # as a new process would open it
    assert main(_args(folder, url, "--trials", str(n))) == 0
    out = capsys.readouterr()
    trials = _trials(url)
    done = _complete(url)
    assert len(done) == n and not any(t.state == TrialState.RUNNING for t in trials)
    assert {k: done[k] for k in before} == before  # nothing stored was lost or changed
    return out.out + out.err


def _one_clear_line(err: str, *needles: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("tuning-energy: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and all(n in lines[0] for n in needles), err
    return lines[0]


# ---------------------------------------------------------------- SIGTERM (real processes)


def _cli(folder: Path, args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tuning_energy.cli", *args], cwd=folder,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait_for(paths, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(p.exists() for p in paths):
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {proc.communicate()[0]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {paths}")
        time.sleep(0.05)


@contextlib.contextmanager
def _stopped(proc: subprocess.Popen):
    """The test's process is ended whatever happens."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _assert_sigterm_failed(trials, n: int) -> None:
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == n and not any(t.state == TrialState.RUNNING for t in trials)
    for t in failed:
        assert "SIGTERM" in t.user_attrs["fail_reason"]
        assert t.user_attrs["energy_j"] is not None  # the energy it spent is kept
        assert t.user_attrs["energy_method"]


def test_sigterm_on_a_pool_fails_each_trial_in_flight_prints_the_summary_and_exits_143(
        tmp_path, capsys):
    """`kill PID` on `study --workers 2`: the parent alone gets it and tells its workers;
    each records its trial FAIL with its energy. (One process: the compare test below.)"""
    folder = _study_dir(tmp_path, n_trials=4)
    url = f"journal:///{tmp_path / 'energy.log'}"
    workers = 2
    assert main(_args(folder, url, "--trials", "1")) == 0  # one trial stored before
    before = _complete(url)
    (folder / "hold").touch()
    with _stopped(_cli(folder, _args(folder, url, "--workers", str(workers)))) as proc:
        _wait_for([folder / f"started-{i + 1}" for i in range(workers)], proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert "Traceback" not in out and "interrupted" in out and "finished" in out  # summary
    _assert_sigterm_failed(_trials(url), workers)
    (folder / "hold").unlink()
    _resumes_exactly(url, folder, 4, before, capsys)


@pytest.mark.parametrize("command, summary", [
    ("study", "1/3 finished, 1 failed"),  # the study's summary
    ("compare", "fast-random-s0"),  # the table of the studies it ran
])
def test_sigterm_on_one_process_records_the_trial_and_returns_143(tmp_path, capsys, command,
                                                                  summary):
    """`study` and `compare` on SQLite, the signal sent to this very process (the CLI's
    main() runs here: a handler that was not installed would end the test run)."""
    import threading

    folder = _study_dir(tmp_path, n_trials=3)
    url = f"sqlite:///{tmp_path / 'energy.db'}"
    assert main(_args(folder, url, "--trials", "1")) == 0
    before = _complete(url)
    (folder / "hold").touch()

    def terminate_when_started() -> None:
        deadline = time.monotonic() + 60
        while not (folder / "started-1").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_when_started)
    killer.start()
    more = ["--seeds", "1", "--out", str(tmp_path / "fig")] if command == "compare" else []
    try:
        code = main(_args(folder, url, *more, command=command))
    finally:
        killer.join()
    out = capsys.readouterr()
    assert code == 143 and "Traceback" not in out.err
    assert "interrupted" in out.out and summary in out.out
    _assert_sigterm_failed(_trials(url), 1)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back as it was
    (folder / "hold").unlink()
    _resumes_exactly(url, folder, 3, before, capsys)


def test_a_second_sigterm_ends_compare_at_once_and_check_reports_what_it_left(tmp_path,
                                                                              capsys):
    """`compare` takes the first SIGTERM as Ctrl-C; a clean-up that hangs is ended by the
    second at once. The trial it leaves RUNNING is reported by `check`, failed by the rerun."""
    folder = _study_dir(tmp_path, n_trials=3)
    url = f"sqlite:///{tmp_path / 'energy.db'}"
    for name in ("hold", "hang"):
        (folder / name).touch()
    args = _args(folder, url, "--seeds", "1", "--out", str(tmp_path / "fig"), command="compare")
    with _stopped(_cli(folder, args)) as proc:
        _wait_for([folder / "started-0"], proc)
        proc.send_signal(signal.SIGTERM)
        _wait_for([folder / "interrupted"], proc)  # the first one raised in the objective
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGTERM
    assert main(["check", "--storage", url]) == 1
    assert "RUNNING trial(s) [0] without a live worker" in capsys.readouterr().out
    for name in ("hold", "hang"):
        (folder / name).unlink()
    out = _resumes_exactly(url, folder, 3, {}, capsys)
    assert "marked 1 trial(s) left RUNNING" in out
    assert main(["check", "--storage", url]) == 0


# ---------------------------------------------------------------- a torn journal


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _journal_with_two_trials(tmp_path: Path) -> tuple[Path, Path, str]:
    folder = _study_dir(tmp_path)
    log = tmp_path / "energy.log"
    url = f"journal:///{log}"
    assert main(_args(folder, url, "--trials", "2")) == 0
    return folder, log, url


def test_a_torn_journal_tail_is_reported_then_cut_with_a_copy_and_the_run_resumes(tmp_path,
                                                                                 capsys):
    folder, log, url = _journal_with_two_trials(tmp_path)
    whole = log.read_bytes()
    log.write_bytes(whole[:-20])  # a writer killed in the middle of its last line
    torn = _md5(log)
    capsys.readouterr()
    assert main(["check", "--storage", url]) == 1  # reported, not changed
    assert "torn last line, " in capsys.readouterr().out and _md5(log) == torn
    before = _complete(url)
    out = _resumes_exactly(url, folder, 4, before, capsys)
    assert "removed a torn last line" in out
    copies = list(tmp_path.glob("energy.log.torn-*"))
    assert len(copies) == 1 and _md5(copies[0]) == torn  # the file before the repair
    assert main(["check", "--storage", url]) == 0


def test_a_fragment_left_while_the_store_is_open_is_cut_before_the_next_append(tmp_path):
    """Another process killed mid-append: this one's next write does not merge with it."""
    log = tmp_path / "energy.log"
    store = storage_mod.open_storage(f"journal:///{log}")
    study = optuna.create_study(storage=store, study_name="s")
    with open(log, "ab") as f:
        f.write(b'{"op_code":5,"worker_id":"x","trial_')
    study.set_user_attr("after", 1)
    assert _study_attrs(log) == {"after": 1}  # plain Optuna reads every line


def test_an_invalid_line_in_the_middle_is_refused_by_number_and_the_file_kept(tmp_path,
                                                                             capsys):
    folder, log, url = _journal_with_two_trials(tmp_path)
    lines = log.read_bytes().split(b"\n")
    lines[6] = lines[7][:15] + lines[6]  # a fragment merged with the next record
    log.write_bytes(b"\n".join(lines))
    kept = _md5(log)
    storage_mod._JOURNALS.clear()
    capsys.readouterr()
    assert main(_args(folder, url, "--trials", "4")) == 2
    _one_clear_line(capsys.readouterr().err, "line 7 of", "left as it is")
    assert _md5(log) == kept and not list(tmp_path.glob("energy.log.torn-*"))


# ---------------------------------------------------------------- storage faults (root)

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                                reason="mounts and chattr need root (the faults are made "
                                       "with tmpfs, bind mounts and chattr +i)")


@contextlib.contextmanager
def _mounted(folder: Path, *how: str):
    """`mount *how SOURCE folder` (SOURCE: `tmpfs`, or the folder itself for a bind)."""
    folder.mkdir(exist_ok=True)
    source = str(folder) if "--bind" in how else "tmpfs"
    done = subprocess.run(["mount", *how, source, str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _url(kind: str, folder: Path) -> str:
    return f"sqlite:///{folder / 'energy.db'}" if kind == "sqlite" else \
        f"journal:///{folder / 'energy.log'}"


@needs_root
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_full_disk_stops_with_one_line_and_a_rerun_resumes(tmp_path, capsys, kind):
    folder = _study_dir(tmp_path)
    disk = tmp_path / "disk"
    with _mounted(disk, "-t", "tmpfs", "-o", "size=1200k" if kind == "sqlite" else "size=48k"):
        url = _url(kind, disk)
        assert main(_args(folder, url, "--trials", "400")) == 2  # fills the disk mid-run
        line = _one_clear_line(capsys.readouterr().err, "is out of space", "df -h", "rerun")
        before = _complete(url)
        assert before, line  # it stopped after some trials
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        _resumes_exactly(url, folder, len(before) + 2, before, capsys)


@needs_root
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
@pytest.mark.parametrize("how", ["read-only mount", "chattr +i"])
def test_a_read_only_store_stops_with_one_line_and_keeps_everything(tmp_path, capsys, kind,
                                                                    how):
    folder = _study_dir(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    url = _url(kind, store)
    assert main(_args(folder, url, "--trials", "2")) == 0
    before = _complete(url)
    file = store / ("energy.db" if kind == "sqlite" else "energy.log")
    kept = _md5(file)
    capsys.readouterr()
    storage_mod._JOURNALS.clear()
    if how == "chattr +i":  # the store's files (SQLite's -wal and -shm too) and folder
        files = [str(p) for p in store.iterdir()] + [str(store)]
        if subprocess.run(["chattr", "+i", *files], capture_output=True).returncode:
            subprocess.run(["chattr", "-i", *files], capture_output=True)
            pytest.skip("chattr +i does not work on this file system")
        try:
            assert main(_args(folder, url, "--trials", "4")) == 2
        finally:
            subprocess.run(["chattr", "-i", *files], check=True)
    else:
        with _mounted(store, "--bind", "-o", "ro"):
            assert main(_args(folder, url, "--trials", "4")) == 2
            if kind == "journal":  # reading needs no write: `show` works on it
                assert main(["show", "--storage", url]) == 0
    _one_clear_line(capsys.readouterr().err, "cannot be written", "writable", "rerun")
    assert _md5(file) == kept or kind == "sqlite"  # SQLite may checkpoint its WAL on close
    _resumes_exactly(url, folder, 4, before, capsys)


def test_a_locked_database_past_its_timeout_stops_with_one_line(tmp_path, capsys,
                                                                monkeypatch):
    import sqlite3

    folder = _study_dir(tmp_path)
    url = f"sqlite:///{tmp_path / 'energy.db'}"
    assert main(_args(folder, url, "--trials", "1")) == 0
    before = _complete(url)
    capsys.readouterr()
    monkeypatch.setattr(storage_mod, "SQLITE_TIMEOUT_S", 0.5)
    other = sqlite3.connect(tmp_path / "energy.db", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # e.g. a sqlite3 shell in an open transaction
        assert main(_args(folder, url, "--trials", "3")) == 2
    finally:
        other.close()
    _one_clear_line(capsys.readouterr().err, "stayed locked past SQLite's 0.5 s timeout",
                    "database is locked", "rerun")
    _resumes_exactly(url, folder, 3, before, capsys)
