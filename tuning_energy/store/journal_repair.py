"""A journal file torn by a killed writer, repaired; a corrupt one refused, left as it is.

Optuna's `JournalFileBackend` appends each batch of records as JSON lines, under the
journal's lock (`FILE.lock`, a symlink: JournalFileSymlinkLock), then fsyncs. A process
killed during the write (SIGKILL, out of memory, a power cut) or a disk that fills up
mid-write leaves the last line without its newline. Optuna's reader skips such a
fragment, but its next append lands right after it: the merged line is invalid JSON, and
from then on every read raises (JSONDecodeError), in tuning-energy and in plain Optuna
alike, and every trial in the store is lost to its user.

`RepairingJournalBackend`, the backend `storage.open_storage` gives journal:/// stores:
- At open and before each append, under the journal's lock (so no writer is mid-line), a
  last line without its newline is cut off. A copy of the whole file is kept beside it
  (`FILE.torn-<UTC time>`), and one line on stderr says so. Only that trailing fragment
  goes; a complete line is never touched.
- A write that fails (disk full, read-only file or folder) is cut back to the size the file
  had before it, so it leaves no fragment, and raises a `StoreWriteError` (an OSError),
  which store/faults.py words as one line naming the store, the cause and the fix.
- An invalid complete line (a line merged by an append after a fragment, before this
  repair existed; a file edited by hand) is refused at open with a StorageError naming its
  line number; the file is left as it is.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.storages.journal._file import get_lock_file

from tuning_energy.errors import StorageError

_BLOCK = 1 << 16


class StoreWriteError(OSError):
    """A journal file could not be written (its errno says why); nothing was left half
    written. store/faults.py turns it into a StoreFault."""


def _write_error(exc: OSError) -> StoreWriteError:
    return StoreWriteError(exc.errno, exc.strerror, exc.filename)


@dataclass(frozen=True)
class Tail:
    """The end of a journal file: its size, and the bytes after its last newline."""

    size: int
    fragment: int  # bytes of a last line without its newline (0: the file ends cleanly)
    last_line: bytes  # the last complete line (b"" when there is none)


def read_tail(path: Path) -> Tail:
    """The tail of `path`, read backwards from its end (the file is not read whole)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        buf, pos = b"", size
        while pos > 0 and buf.count(b"\n") < 2:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
    if not buf:
        return Tail(size, 0, b"")
    last_nl = buf.rfind(b"\n")
    fragment = len(buf) - last_nl - 1 if last_nl >= 0 else len(buf)
    body = buf[:last_nl] if last_nl >= 0 else b""
    complete = body.rsplit(b"\n", 1)[-1] if last_nl >= 0 and (pos == 0 or b"\n" in body) \
        else b""
    return Tail(size, fragment, complete)


def first_invalid_line(path: Path) -> tuple[int, str] | None:
    """(line number from 1, why) of the first complete line that is not a JSON record."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                return None  # the trailing fragment: not a complete line
            try:
                record = json.loads(line)
            except ValueError as exc:
                return number, f"not JSON ({exc})"
            if not isinstance(record, dict) or "op_code" not in record:
                return number, "a JSON value without an op_code"
    return None


def invalid_line_error(where: str, path: Path, number: int, why: str) -> StorageError:
    return StorageError(
        f"--storage = {where!r}: line {number} of {path} is not a valid journal record "
        f"({why}); the file is left as it is. A line merged from a torn write holds a "
        f"fragment followed by a complete record: keep a copy of the file, then cut line "
        f"{number} back to its last '{{\"op_code\"' (or remove it), and rerun. "
        f"`tuning-energy check --storage {where}` reports the store's health")


class RepairingJournalBackend(JournalFileBackend):
    """Optuna's journal file backend that cuts a torn last line under its lock, and rolls
    back a failed append (see the module doc). `where`: the store's URL for messages."""

    def __init__(self, file_path: str, where: str, err=None) -> None:
        super().__init__(file_path)
        self._where = where
        self._err = err

    def repair_at_open(self) -> None:
        """Cut a torn tail; refuse an invalid last complete line (the middle ones are found
        when Optuna replays the file: open_journal). A clean file is only read (no lock),
        so a read-only journal still opens for reading; so does a torn one, whose fragment
        Optuna's reader skips, with a line saying it could not be cut."""
        path = Path(self._file_path)
        tail = read_tail(path)
        if tail.fragment:
            try:
                with get_lock_file(self._lock):  # re-read under it: a writer may have ended
                    self._cut_torn_tail()
            except OSError as exc:  # a read-only file or folder: read it as it is
                print(f"tuning-energy: {path}: a torn last line ({tail.fragment} bytes "
                      f"without a newline) could not be cut ({exc.strerror}); reading "
                      f"without it", file=self._err or sys.stderr)
            else:
                tail = read_tail(path)
        if tail.last_line:
            try:
                record = json.loads(tail.last_line)
            except ValueError as exc:
                record, why = None, f"not JSON ({exc})"
            else:
                why = "a JSON value without an op_code"
            if not isinstance(record, dict) or "op_code" not in record:
                number = _count_lines(path)
                raise invalid_line_error(self._where, path, number, why)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
                ).encode("utf-8")  # Optuna's own format
        with get_lock_file(self._lock):
            self._cut_torn_tail()
            try:
                fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
            except OSError as exc:
                raise _write_error(exc) from exc
            try:
                start = os.lseek(fd, 0, os.SEEK_END)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except OSError as exc:
                    try:
                        os.ftruncate(fd, start)  # no fragment left behind
                    except OSError:
                        pass  # cut at the next open or append
                    raise _write_error(exc) from exc
            finally:
                os.close(fd)

    def _cut_torn_tail(self) -> Tail:
        """Under the lock: remove a last line without its newline, keeping a copy."""
        path = Path(self._file_path)
        with open(path, "rb") as f:  # the common case, one byte: the file ends cleanly
            size = f.seek(0, os.SEEK_END)
            if size == 0 or (f.seek(size - 1) and f.read(1) == b"\n"):
                return Tail(size, 0, b"")
        tail = read_tail(path)
        if not tail.fragment:
            return tail  # a file of one byte
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        copy = path.with_name(f"{path.name}.torn-{stamp}")
        try:
            shutil.copy2(path, copy)
            os.truncate(path, tail.size - tail.fragment)
        except OSError as exc:
            raise _write_error(exc) from exc
        print(f"tuning-energy: {path}: removed a torn last line ({tail.fragment} bytes without "
              f"a newline, left by a writer that was killed or ran out of space); a copy of "
              f"the file before the repair is {copy}", file=self._err or sys.stderr)
        return Tail(tail.size - tail.fragment, 0, tail.last_line)


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def open_journal(path: Path, where: str) -> JournalStorage:
    """A JournalStorage on `path`, its torn tail repaired; an invalid line refused."""
    backend = RepairingJournalBackend(str(path), where)
    backend.repair_at_open()
    try:
        return JournalStorage(backend)
    except ValueError as exc:  # json.JSONDecodeError, or Optuna's "Invalid log format."
        found = first_invalid_line(path)
        if found is None:
            raise
        raise invalid_line_error(where, path, *found) from exc
