"""Download a dataset's files on first use: verified, atomic, retried, quick to give up.

- Verified: every downloaded file is checked against its published MD5 before it takes its
  name; a CIFAR-10 member unpacked from the tarball is checked against its own MD5 too.
- Atomic: bytes go to a hidden `.<name>.<random>.part` file beside the target, which is
  renamed over the target (`os.replace`) only once complete and verified. A download that
  is killed leaves no file under the name that is read as data (stale `.part` files older
  than ten minutes are removed by the next download of the same file).
- Retried: a transfer that breaks off, times out mid-file, fails its checksum or gets an
  HTTP 5xx is tried again (`retries` times, with a pause that doubles).
- Quick to give up: a host that cannot be reached (no network, name not resolved,
  connection refused or not accepted within `timeout_s`) or an HTTP 4xx is not retried:
  without a network the study stops in seconds with a `DataError` that names the dataset,
  the folder, the files and where to get them.

The base URL and checksums come from a `Source` (sources.py); tests pass their own.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from tuning_energy.cnn.datasets.sources import Source
from tuning_energy.errors import DataError

TIMEOUT_S = 10.0  # connect, and each read: a stalled transfer counts as broken off
RETRIES = 2
BACKOFF_S = 1.0
STALE_PART_S = 600.0
CHUNK = 1 << 20


class DownloadError(Exception):
    """A download that did not produce the verified file (the message says why)."""


class _Transient(Exception):
    """Worth another try: broken off, timed out mid-file, checksum mismatch, HTTP 5xx."""


def md5_of(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fetch(url: str, dest: Path, md5: str | None, *, timeout_s: float = TIMEOUT_S,
          retries: int = RETRIES, backoff_s: float = BACKOFF_S, progress: bool = True,
          out=None) -> Path:
    """Download `url` to `dest` (atomically, verified against `md5`); raise DownloadError."""
    out = out or sys.stderr
    dest.parent.mkdir(parents=True, exist_ok=True)
    last = ""
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, dest, md5, timeout_s, progress, out)
            return dest
        except _Transient as exc:
            last = str(exc)
            if attempt < retries:
                pause = backoff_s * 2**attempt
                print(f"download of {url} failed ({last}); retrying in {pause:g} s "
                      f"({attempt + 1}/{retries})", file=out)
                time.sleep(pause)
    raise DownloadError(f"{url}: {last} (tried {retries + 1} times)")


def _fetch_once(url: str, dest: Path, md5: str | None, timeout_s: float, progress: bool,
                out) -> None:
    _remove_stale_parts(dest)
    request = urllib.request.Request(url, headers={"User-Agent": "tuning-energy"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:  # name not resolved, refused, connect timeout
        raise DownloadError(f"{url}: cannot reach the host ({exc.reason})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: cannot reach the host ({type(exc).__name__}: "
                            f"{exc})") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        print(f"downloading {url} -> {dest}", file=out)
        fd, part = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            digest = hashlib.md5(usedforsecurity=False)
            received = 0
            with os.fdopen(fd, "wb") as f, tqdm(total=total, unit="B", unit_scale=True,
                                                 unit_divisor=1024, desc=dest.name, file=out,
                                                 disable=not progress, leave=False) as bar:
                try:
                    while chunk := response.read(CHUNK):
                        f.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                except (OSError, http.client.HTTPException) as exc:  # reset, timeout, chunks
                    raise _Transient(f"broken off after {received:,} bytes "
                                     f"({type(exc).__name__}: {exc})") from None
                f.flush()
                os.fsync(f.fileno())
            if total is not None and received != total:
                raise _Transient(f"broken off after {received:,} of {total:,} bytes")
            if md5 is not None and digest.hexdigest() != md5:
                raise _Transient(f"checksum mismatch: MD5 {digest.hexdigest()}, published "
                                 f"{md5}")
            os.replace(part, dest)
        except BaseException:
            Path(part).unlink(missing_ok=True)
            raise


def _remove_stale_parts(dest: Path) -> None:
    """`.part` files of `dest` left by a killed download (not written to for 10 minutes)."""
    now = time.time()
    for p in dest.parent.glob(f".{dest.name}.*.part"):
        try:
            if now - p.stat().st_mtime > STALE_PART_S:
                p.unlink()
        except OSError:
            pass


def _write_atomic(dest: Path, data: bytes) -> None:
    fd, part = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, dest)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise


def unpack(source: Source, archive: Path, root: Path) -> None:
    """The files of `source.folder` out of the tarball, each checked and written atomically.

    Only the expected members are read (by name, as regular files): nothing else in the
    archive is written, whatever paths it holds.
    """
    folder = root / source.folder
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name, md5 in source.files.items():
                try:
                    member = tar.getmember(f"{source.folder}/{name}")
                except KeyError:
                    raise DownloadError(f"{archive} has no {source.folder}/{name}") from None
                fileobj = tar.extractfile(member) if member.isfile() else None
                if fileobj is None:
                    raise DownloadError(f"{archive}: {member.name} is not a regular file")
                data = fileobj.read()
                got = hashlib.md5(data, usedforsecurity=False).hexdigest()
                if md5 is not None and got != md5:
                    raise DownloadError(f"{archive}: {member.name} has MD5 {got}, published "
                                        f"{md5}")
                _write_atomic(folder / name, data)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DownloadError(f"{archive} cannot be unpacked ({type(exc).__name__}: "
                            f"{exc})") from None


def ensure(source: Source, root: Path, *, progress: bool = True, out=None,
           timeout_s: float = TIMEOUT_S, retries: int = RETRIES,
           backoff_s: float = BACKOFF_S) -> Path:
    """The folder holding `source`'s files under `root`, downloading what is missing.

    Raises DataError naming the dataset, the folder, the files and where to get them.
    """
    missing = source.missing(root)
    if not missing:
        return root / source.folder
    out = out or sys.stderr
    kw = {"timeout_s": timeout_s, "retries": retries, "backoff_s": backoff_s,
          "progress": progress, "out": out}
    try:
        (root / source.folder).mkdir(parents=True, exist_ok=True)
        if source.archive is not None:
            archive = root / source.archive
            md5 = source.downloads[source.archive]
            if not (archive.is_file() and md5_of(archive) == md5):
                fetch(source.url(source.archive), archive, md5, **kw)
            unpack(source, archive, root)
        else:
            for name in missing:
                gz = f"{name}.gz"
                fetch(source.url(gz), root / source.folder / gz, source.downloads[gz], **kw)
    except (DownloadError, OSError) as exc:
        raise DataError(
            f"data.dataset = {source.dataset!r}: its files are not (all) in "
            f"{root / source.folder} and the download failed: {exc}. Without a network, "
            f"{source.how_to_get(root)}.") from None
    return root / source.folder
