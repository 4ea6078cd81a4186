"""The storage URL, parsed once into a typed value (`StoreURL`).

The command line parses `--storage` here (cli.main) and passes the value down; the public
functions that take a store (run_study, trials_table, export_trials, ...) take the text too
and parse it on entry. Forms:

- `sqlite:///PATH` (`sqlite:////abs/path.db` absolute; `sqlite:///:memory:` in memory)
- `journal:///PATH`: Optuna's JournalStorage on a file
- `postgresql://USER@HOST:PORT/DB` (or `postgresql+DRIVER://`), `mysql://...`: a server
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tuning_energy.errors import StorageError

DEFAULT_STORAGE = "sqlite:///studies/energy.db"
ALLOWED = "sqlite:///PATH, journal:///PATH, postgresql://USER@HOST:PORT/DB"
KINDS = ("sqlite", "journal", "postgresql", "mysql")
#: Stores where several processes may run one study (workers.py); SQLite allows one.
SHARED_KINDS = ("journal", "postgresql")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def password(url: str) -> str | None:
    m = re.search(r"://[^:/@]+:([^@/]*)@", url)
    return m.group(1) if m and m.group(1) else None


@dataclass(frozen=True)
class StoreURL:
    """A storage URL: its `kind`, the `path` of a file store, the raw `text`.

    `str()` gives the text without its password (`redacted`), so a message that shows the
    value never leaks it; the raw `text` goes only to the driver.
    """

    text: str
    kind: str  # one of KINDS
    path: Path | None  # the file of a sqlite / journal store; None: in memory, or a server

    @classmethod
    def parse(cls, text: str | StoreURL) -> StoreURL:
        """Parse `text` (a StoreURL is returned as it is). Raises StorageError naming
        --storage and the allowed forms."""
        if isinstance(text, StoreURL):
            return text
        scheme = text.split("://", 1)[0] if "://" in text else ""
        kind = scheme.split("+", 1)[0]
        if kind not in KINDS:
            raise StorageError(f"--storage = {redact(text)!r}: not a storage URL; the scheme is "
                               f"one of {', '.join(KINDS)}; allowed forms are {ALLOWED}")
        rest = text.split("://", 1)[1]
        path = None
        if kind == "sqlite":  # sqlite:///rel/path.db, sqlite:////abs/path.db
            file = rest[1:] if rest.startswith("/") else ""
            path = Path(file) if file and file != ":memory:" else None
        elif kind == "journal":  # as for SQLite
            if not rest.startswith("/") or len(rest) < 2:
                raise StorageError(f"--storage = {text!r}: a journal URL is journal:///PATH "
                                   f"(three slashes)")
            path = Path(rest[1:])
        return cls(text, kind, path)

    @classmethod
    def parse_all(cls, urls: str | StoreURL | Iterable[str | StoreURL]) -> list[StoreURL]:
        """One URL or several, parsed."""
        if isinstance(urls, (str, StoreURL)):
            return [cls.parse(urls)]
        return [cls.parse(u) for u in urls]

    @property
    def redacted(self) -> str:
        return redact(self.text)

    @property
    def shared(self) -> bool:
        """Several processes may run one study in this store (workers.py)."""
        return self.kind in SHARED_KINDS

    @property
    def name(self) -> str:
        """The store file's name without its suffix (`energy` for studies/energy.db), or the
        kind for a store without a file."""
        return self.path.stem if self.path is not None else self.kind

    def exists(self) -> bool:
        """Whether a file store's file is there (a server store: ask it, so True)."""
        return self.path.is_file() if self.path is not None else self.kind not in (
            "sqlite", "journal")

    def __str__(self) -> str:
        return self.redacted
