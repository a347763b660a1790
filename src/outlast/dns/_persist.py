"""The cache file: last-known-good answers that outlive the process.

Format (JSON, version 1)::

    {"version": 1, "written_at": <unix time>,
     "names": [{"host": "...", "addresses": ["..."], "ttl": 5.0,
                "learned_at": <unix time>, "source": "udp://..."}]}

Written atomically: a temporary file in the same directory, flushed and fsynced, then
renamed over the old one, so a reader sees the old file or the new one, never half of
one. A file that cannot be read or parsed is reported and ignored; it never stops a
resolver from starting.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from outlast._names import normalize

__all__ = ["FORMAT_VERSION", "CacheFileError", "Record", "load", "save"]

FORMAT_VERSION: Final = 1


class CacheFileError(Exception):
    """The cache file could not be read, parsed or written.

    ``replaceable`` is True when the file is corrupt or truncated, so writing a good one
    over it loses nothing; False when it is unreadable or of another format version,
    which a later write must leave alone.
    """

    def __init__(self, message: str, *, replaceable: bool = False) -> None:
        super().__init__(message)
        self.replaceable = replaceable


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    host: str
    addresses: tuple[str, ...]
    ttl: float
    learned_at: float  # unix time
    source: str


def save(path: Path, records: Iterable[Record], *, now: float) -> None:
    """Write ``records`` to ``path`` atomically. Raises :class:`CacheFileError`."""
    document = {
        "version": FORMAT_VERSION,
        "written_at": now,
        "names": [dataclasses.asdict(record) for record in records],
    }
    data = json.dumps(document, separators=(",", ":")).encode()
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise CacheFileError(f"cannot write {path}: {exc}") from exc


def load(path: Path) -> list[Record]:
    """Records read from ``path``; [] when there is no file. Raises :class:`CacheFileError`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CacheFileError(f"cannot read {path}: {exc}") from exc
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CacheFileError(f"{path} is corrupt or truncated: {exc}", replaceable=True) from exc
    if not isinstance(document, dict):
        raise CacheFileError(f"{path} is not an outlast cache file", replaceable=True)
    if document.get("version") != FORMAT_VERSION:
        raise CacheFileError(
            f"{path} is not a version {FORMAT_VERSION} outlast cache file "
            f"(version {document.get('version')!r}); it is left as it is"
        )
    names = document.get("names")
    if not isinstance(names, list):
        raise CacheFileError(f"{path} has no list of names", replaceable=True)
    records = []
    for item in names:
        record = _record(item)
        if record is None:
            raise CacheFileError(
                f"{path} holds a malformed entry: {str(item)[:80]}", replaceable=True
            )
        records.append(record)
    return records


def _record(item: Any) -> Record | None:
    try:
        host = normalize(item["host"])
        addresses = tuple(str(ipaddress.ip_address(a)) for a in item["addresses"])
        ttl = float(item["ttl"])
        learned_at = float(item["learned_at"])
        source = str(item.get("source", ""))
    except (KeyError, TypeError, ValueError):
        return None
    if not addresses or not ttl >= 0 or learned_at != learned_at:
        return None
    return Record(host, addresses, ttl, learned_at, source)
