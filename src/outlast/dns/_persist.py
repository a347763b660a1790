"""The cache file: last-known-good answers that outlive the process.

Format (JSON, version 1)::

    {"format": "outlast-dns-cache", "version": 1, "written_at": <unix time>,
     "names": [{"host": "...", "addresses": ["..."], "ttl": 5.0,
                "learned_at": <unix time>, "source": "udp://...",
                "suspect": "NXDOMAIN" | null, "suspect_since": <unix time> | null}]}

A record with no addresses is a deletion (an empty answer that was believed), kept so
that a merge does not bring the name back.

The file is the user's disk. A file that is not recognisably outlast's (no ``format``
marker, and not the older marker-less layout) is never written over: :func:`load`
raises :class:`CacheFileError` with ``foreign`` set, and the resolver refuses to start.
An outlast file whose content is malformed is reported and ignored, entry by entry.

Writes merge: under an advisory lock (``fcntl.flock`` on the file's directory where
POSIX allows, else an exclusively created ``<file>.lock``) the file is read
again, the newest record per name is kept, and the result is written atomically: a
temporary file in the same directory, flushed and fsynced, given the old file's mode,
then renamed over it. Several resolvers and processes may share one file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import math
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from outlast._names import normalize

__all__ = ["FORMAT", "FORMAT_VERSION", "CacheFileError", "Record", "load", "save"]

FORMAT: Final = "outlast-dns-cache"
FORMAT_VERSION: Final = 1
#: How long a writer waits for the lock before giving up on this write (seconds).
#: close() writes the file, so this bounds it too. A write holds the lock for
#: milliseconds; a lock held for a second is a stuck or foreign holder, not contention.
LOCK_TIMEOUT: Final = 1.0
#: A fallback lock file older than this is taken to be left by a dead process (seconds).
STALE_LOCK: Final = 30.0
#: A record dated further than this past the reader's clock (seconds) is malformed: it
#: would win every merge and look just learned at every start.
FUTURE_SKEW: Final = 60.0
_MARKER: Final = b'{"format":"outlast-dns-cache"'


class CacheFileError(Exception):
    """The cache file could not be read, parsed or written.

    ``replaceable`` is True when the file is outlast's but corrupt or truncated, so
    writing a good one over it loses nothing; False when it is unreadable or of another
    format version, which a later write must leave alone. ``foreign`` is True when the
    file is not outlast's at all: it must never be written over.
    """

    def __init__(self, message: str, *, replaceable: bool = False, foreign: bool = False) -> None:
        super().__init__(message)
        self.replaceable = replaceable
        self.foreign = foreign


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    host: str
    addresses: tuple[str, ...]
    ttl: float
    learned_at: float  # unix time
    source: str
    suspect: str | None = None  # a distrusted negative ("NXDOMAIN", "NODATA")
    suspect_since: float | None = None  # unix time it was first seen

    @property
    def news(self) -> float:
        """When what this record says was last learned (unix time)."""
        return max(self.learned_at, self.suspect_since or -math.inf)


def save(
    path: Path,
    records: Iterable[Record],
    *,
    now: float,
    stale_ttl: float = math.inf,
    limit: int | None = None,
) -> None:
    """Merge ``records`` into ``path`` and write it atomically. Raises :class:`CacheFileError`.

    Under the lock, the file is read again; per name the record with the newest
    information wins. Records too old to serve (older than TTL + ``stale_ttl``) are
    dropped, and at most ``limit`` names (the newest) are kept.
    """
    mine = list(records)
    path = _target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            theirs = _read_back(path, now)
            merged: dict[str, Record] = {}
            for record in [*theirs, *mine]:  # mine last: a tie goes to this process
                held = merged.get(record.host)
                if held is None or record.news >= held.news:
                    merged[record.host] = record
            keep = [r for r in merged.values() if now - (r.news + r.ttl) <= stale_ttl]
            keep.sort(key=lambda r: r.news, reverse=True)
            if limit is not None:
                keep = keep[:limit]
            _write(path, keep, now)
            _remember(path, keep)
    except OSError as exc:
        raise CacheFileError(f"cannot write {path}: {exc}") from exc


#: What this process last wrote to each file, by the file's signature: a write that
#: finds the file as it left it need not read and parse it again.
_WRITTEN: dict[str, tuple[tuple[int, ...], list[Record]]] = {}
_WRITTEN_LOCK = threading.Lock()


def _new_written_lock_in_child() -> None:
    # A fork taken while another thread held the lock would leave the child's held.
    global _WRITTEN_LOCK
    _WRITTEN_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_new_written_lock_in_child)


def _signature(path: Path) -> tuple[int, ...] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_back(path: Path, now: float) -> list[Record]:
    """The records in ``path`` now (under the lock), from memory if this process wrote it."""
    signature = _signature(path)
    with _WRITTEN_LOCK:
        known = _WRITTEN.get(str(path))
    if known is not None and signature is not None and known[0] == signature:
        return known[1]
    try:
        records, _ = load(path, now=now)
    except CacheFileError as exc:
        if not exc.replaceable:
            raise
        return []
    return records


def _remember(path: Path, records: list[Record]) -> None:
    signature = _signature(path)
    with _WRITTEN_LOCK:
        if signature is None:
            _WRITTEN.pop(str(path), None)
        else:
            _WRITTEN[str(path)] = (signature, records)


def _write(path: Path, records: list[Record], now: float) -> None:
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "written_at": now,
        "names": [
            {
                "host": r.host,
                "addresses": r.addresses,
                "ttl": r.ttl,
                "learned_at": r.learned_at,
                "source": r.source,
                "suspect": r.suspect,
                "suspect_since": r.suspect_since,
            }
            for r in records
        ],
    }
    data = json.dumps(document, separators=(",", ":")).encode()
    try:
        old: os.stat_result | None = path.stat()
    except FileNotFoundError:
        old = None  # a new file: mkstemp's 0600
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if old is not None:
                if (
                    hasattr(os, "fchown")
                    and hasattr(os, "geteuid")
                    and (old.st_uid, old.st_gid)
                    != (
                        os.geteuid(),
                        os.getegid(),
                    )
                ):
                    # Keep the owner: root running `outlast resolve` with a service's
                    # settings must not leave it a 0600 file it can no longer read.
                    with contextlib.suppress(OSError):  # not ours to give: best effort
                        os.fchown(handle.fileno(), old.st_uid, old.st_gid)
                mode = stat.S_IMODE(old.st_mode)
                os.chmod(handle.fileno() if os.chmod in os.supports_fd else temp, mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock for one read-merge-write of ``path``.

    POSIX: ``flock`` on the file's directory (no file is added beside the user's).
    Elsewhere: a ``<file>.lock`` created exclusively and removed afterwards.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        with _exclusive_file(path.with_name(path.name + ".lock")):
            yield
        return
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # a directory that cannot be opened for reading: the lock file
        with _exclusive_file(path.with_name(path.name + ".lock")):
            yield
        return
    try:
        # Never wait without bound: another process (a hung writer, `flock(1)` on the
        # directory) may hold it for ever, and close() writes the file.
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OSError(
                        f"{path.parent} is locked by another process for over {LOCK_TIMEOUT:g}s"
                    ) from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _exclusive_file(lock_path: Path) -> Iterator[None]:
    """The portable fallback: a lock file created exclusively, broken when stale."""
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - lock_path.stat().st_mtime > STALE_LOCK:
                    lock_path.unlink()
                    continue
            if time.monotonic() > deadline:
                raise OSError(f"{lock_path} is held by another writer") from None
            time.sleep(0.01)
    try:
        yield
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            lock_path.unlink()


def _owned(data: bytes) -> bool:
    """True if ``data`` is recognisably an outlast cache file (or empty)."""
    if not data.strip() or data.startswith(_MARKER):
        return True
    try:  # the layout written before the marker: exactly these keys
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(document, dict) and {"version", "written_at", "names"} <= set(document)


def _target(path: Path) -> Path:
    """The file a write must replace: a symbolic link's target, so the link survives."""
    if path.is_symlink():
        return Path(os.path.realpath(path))
    return path


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def load(path: Path, *, now: float | None = None) -> tuple[list[Record], int]:
    """Records read from ``path`` and how many malformed ones were skipped.

    With ``now`` (unix time), a record dated more than :data:`FUTURE_SKEW` after it is
    malformed (written by a clock ahead of this one, its age is unknowable).

    ([], 0) when there is no file, or it is empty. Raises :class:`CacheFileError`: for
    a file that is not outlast's (``foreign``: also anything but a regular file, such
    as ``/dev/null``, a FIFO or a directory, which is neither opened nor replaced), one
    that cannot be read, one of another format version, or one that is outlast's but
    corrupt (``replaceable``).
    """
    try:
        mode = path.stat().st_mode  # follows a link: what a read would open
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise CacheFileError(f"cannot read {path}: {exc}") from exc
    if not stat.S_ISREG(mode):  # reading a FIFO blocks; replacing /dev/null breaks the host
        raise CacheFileError(f"{path} is {_kind(mode)}, not a regular file", foreign=True)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise CacheFileError(f"cannot read {path}: {exc}") from exc
    if not _owned(data):
        raise CacheFileError(f"{path} is not an outlast cache file", foreign=True)
    if not data.strip():
        return [], 0
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CacheFileError(f"{path} is corrupt or truncated: {exc}", replaceable=True) from exc
    if not isinstance(document, dict):
        raise CacheFileError(f"{path} is corrupt: not a JSON object", replaceable=True)
    if document.get("version") != FORMAT_VERSION:
        raise CacheFileError(
            f"{path} is not a version {FORMAT_VERSION} outlast cache file "
            f"(version {str(document.get('version'))[:20]}); it is left as it is"
        )
    names = document.get("names")
    if not isinstance(names, list):
        raise CacheFileError(f"{path} has no list of names", replaceable=True)
    records = []
    skipped = 0
    for item in names:
        record = _record(item)
        if record is not None and now is not None and record.news > now + FUTURE_SKEW:
            record = None
        if record is None:
            skipped += 1
        else:
            records.append(record)
    return records, skipped


def _record(item: Any) -> Record | None:
    """One record, or None for anything malformed (whatever the malformation)."""
    try:
        host = normalize(item["host"])
        raw = item["addresses"]
        if not isinstance(raw, list):
            return None
        addresses = tuple(str(ipaddress.ip_address(a)) for a in raw)
        ttl = _finite(item["ttl"])
        learned_at = _finite(item["learned_at"])
        source = item.get("source", "")
        suspect = item.get("suspect")
        since = item.get("suspect_since")
        suspect_since = None if since is None else _finite(since)
    except Exception:  # KeyError, TypeError, ValueError, OverflowError, ...
        return None
    if ttl < 0 or not isinstance(source, str):
        return None
    if suspect is not None and (suspect not in ("NXDOMAIN", "NODATA") or suspect_since is None):
        return None
    return Record(host, addresses, ttl, learned_at, source, suspect, suspect_since)


def _finite(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {value!r}")
    number = float(value)  # OverflowError for a huge int
    if not math.isfinite(number):
        raise ValueError(f"not finite: {value!r}")
    return number
