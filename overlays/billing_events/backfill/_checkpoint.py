"""Checkpoints of a backfill: the job's timestamp, and the settled rows of each partition.

Layout under the directory the user names (a local path or an fsspec URL)::

    backfill.json                       the provider and the timestamp of rows without one
    partitions/<name>/<uuid>.settled    one file per checkpointed chunk of a partition

Object stores cannot append, so each chunk's outcomes are a file of their own,
written whole: 16-byte row fingerprint + 1 status byte per row, then an
8-byte digest of those bytes. A file cut short by a killed writer fails its
digest and is ignored: its rows are sent again under the same keys, which the
provider drops. Two attempts of one partition (a retried or speculative task)
write files with different names and never overwrite each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from ..cli._text import clip
from ..outcomes import STORED_STATUSES as STATUSES
from ..text import url_authority, without_password

_CODE = {name: code for code, name in enumerate(STATUSES)}
_MAGIC = b"BEC1"
_PRINT = 16
_ENTRY = _PRINT + 1
_DIGEST = 8
JOB_FILE = "backfill.json"
PARTITIONS = "partitions"


class CheckpointError(Exception):
    """The checkpoint directory cannot be used for this backfill."""


def shown(url: str) -> str:
    """``url`` as a message may show it: a password it carries masked, the whole clipped.

    user:password@ in a URL (ftp://, http://, sftp://) is a storage credential, never repeated. The
    password runs to the authority's last ``@``, as urlsplit and fsspec read it (``user:p@ss@host``).
    """
    start = url.find("//") + 2
    if start >= 2:
        userinfo, at, _ = url_authority(url).rpartition("@")
        user, colon, password = userinfo.partition(":")
        if at and colon and password:
            url = f"{url[:start]}{user}:***@{url[start + len(userinfo) + 1 :]}"
    return clip(url, 160)


def _filesystem(url: str, storage_options: Mapping[str, Any]) -> tuple[Any, str]:
    try:
        from fsspec.core import url_to_fs
    except ImportError as exc:
        raise CheckpointError(
            "a backfill checkpoint needs fsspec: pip install 'billing-events[dask]' or '[spark]'"
        ) from exc
    fs, root = url_to_fs(url, **storage_options)
    return fs, str(root).rstrip("/")


# How partitions are named: 1, by a digest of their events' fingerprints; 2, by a digest of their rows;
# 3, the same, with a frame's rows placed by their events (before: by their values, see the adapters);
# 4, the same, with whole-number floats counted as integers in digests and rows placed by the digests of
# their keys.
# 5, the same, with a Togai event's attributes hashed in the order of their names.
# A job keeps the layout it began with, so a re-run with a newer version finds its checkpoints.
LAYOUT = 5
# From this layout on, the adapters place a frame's rows by the events they make.
PLACED_BY_EVENTS = 3
# From this layout on, a whole-number float (pandas' reading of integers with a null) counts as its
# integer in the digests of keys, checkpoints and placement (it is sent as read), an empty key counts as
# none in a row with a timestamp too, a numpy float key is
# made an integer as a float one is, rows are placed by the digest their keys are made from
# (``partition.placing_digest``), and a row that makes no event by its portable form (``row_digest``).
WHOLE_FLOATS = 4
# From this layout on, a Togai event's attributes count in the order of their names (Togai reads them by
# name): a frame whose attr.* columns come in another order on a re-run keeps its keys.
NAMED_ATTRIBUTES = 5


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """A file system's error about the checkpoint directory, which may quote its URL (or the path made of
    it) whole: with a password in the URL, raised as a ``CheckpointError`` with the password masked."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as exc:
        text = str(exc)
        masked = without_password(text, url)
        if masked == text:
            raise  # nothing to hide: the error as the file system raised it
        raise CheckpointError(f"{shown(url)}: {type(exc).__name__}: {clip(masked, 400)}") from None


def job_stamp(
    url: str,
    storage_options: Mapping[str, Any],
    provider: str,
    server: str | None = None,
    *,
    stamp: int | None = None,
) -> tuple[int, int]:
    """The timestamp given to rows without one, and the directory's layout: read, or written now.

    Written once, by the driver before any partition runs, so every attempt of
    every partition stamps a row the same way. ``server`` (the client's resolved
    base URL) is kept with it: a directory whose rows were settled on a sandbox
    must not make a production run skip them. ``stamp`` (the caller's own) is the
    one written; a job already written with another stamp is refused, as its rows
    would go out again with new timestamps (and, on Lago's ClickHouse store, be billed twice).
    """
    with storage_errors(url):
        return _job_stamp(url, storage_options, provider, server, stamp)


def _job_stamp(
    url: str, storage_options: Mapping[str, Any], provider: str, server: str | None, given: int | None
) -> tuple[int, int]:
    fs, root = _filesystem(url, storage_options)
    path = f"{root}/{JOB_FILE}"
    exists = fs.exists(path)
    job = _read_job(fs, root, path, url) if exists else None
    if job is not None:
        return _kept(fs, path, url, job, provider, server, given)
    # Partitions without a job file: a job begun by the previous release with its own stamp, which wrote
    # none and named its partitions by layout 4. It keeps that layout, and so its keys.
    layout = WHOLE_FLOATS if fs.exists(f"{root}/{PARTITIONS}") else LAYOUT
    fs.makedirs(root, exist_ok=True)
    stamp = int(time.time()) if given is None else given
    created: dict[str, Any] = {"version": layout, "provider": provider, "stamp": stamp}
    if server is not None:
        created["server"] = server
    if exists:
        fs.pipe_file(path, orjson.dumps(created))  # damaged before any partition ran: written anew
    elif not _create(fs, path, orjson.dumps(created)):
        # Another driver wrote the job since this one looked: every driver keeps the first stamp.
        job = _read_job(fs, root, path, url)
        if job is None:
            raise CheckpointError(
                f"{shown(url)}: another driver is writing {JOB_FILE}; run one driver at a time"
            )
        return _kept(fs, path, url, job, provider, server, given)
    return stamp, layout


def _kept(
    fs: Any, path: str, url: str, job: dict[str, Any], provider: str, server: str | None, given: int | None
) -> tuple[int, int]:
    """The stamp and layout of a job already written, once it is known to be this backfill's."""
    if given is not None and given != job["stamp"]:
        raise CheckpointError(
            f"{shown(url)} holds a backfill stamped {job['stamp']}, not {given}: its rows without a timestamp"
            f" were sent with that one; pass stamp={job['stamp']} (or none), or use a new directory"
        )
    if job.get("provider") != provider:
        raise CheckpointError(
            f"{shown(url)} holds a {clip(str(job.get('provider')), 40)} backfill, not {provider}:"
            " use a directory per provider"
        )
    held = job.get("server")
    if server is not None and held is not None and held != server:
        raise CheckpointError(
            f"{shown(url)} holds a backfill sent to {clip(str(held), 120)}, not {clip(server, 120)}:"
            " use a directory per server"
        )
    if server is not None and held is None:
        fs.pipe_file(path, orjson.dumps({**job, "server": server}))
    return int(job["stamp"]), int(job.get("version", 1))


def _create(fs: Any, path: str, body: bytes) -> bool:
    """Write the file unless it exists: False when another writer created it first.

    On a local disk the file appears whole and only once: a hard link to a file written in full.
    Object stores have no create-if-absent that every fsspec backend shares: there it is written.
    """
    from fsspec.implementations.local import LocalFileSystem

    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, body)
        return True
    local = str(fs._strip_protocol(path))
    written = f"{local}.{uuid.uuid4().hex}.tmp"
    with open(written, "wb") as file:
        file.write(body)
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(written, local)
    except FileExistsError:
        return False
    except OSError:
        fs.pipe_file(path, body)  # a file system without hard links (some network mounts)
    finally:
        os.unlink(written)
    return True


def _read_job(fs: Any, root: str, path: str, url: str) -> dict[str, Any] | None:
    """The job file's content; None when it was cut short before any partition ran (it is written anew)."""
    try:
        job = orjson.loads(fs.cat_file(path))
        if isinstance(job, dict) and isinstance(job.get("stamp"), int):
            return job
    except orjson.JSONDecodeError:
        pass
    if not fs.exists(f"{root}/{PARTITIONS}"):
        return None  # no row was stamped from it: a new stamp changes nothing that was sent
    # Rows were sent with its stamp, which is in their keys: another stamp would send them again.
    raise CheckpointError(
        f"{shown(url)}: {JOB_FILE} is damaged, and partitions were sent with the stamp it held; restore it from a"
        " backup, or give the rows a timestamp column"
    )


class PartitionCheckpoint:
    """The settled rows of one partition, named by its content (see ``partition``)."""

    def __init__(self, url: str, storage_options: Mapping[str, Any], name: str) -> None:
        self._url = url
        with storage_errors(url):
            self._fs, root = _filesystem(url, storage_options)
        self._dir = f"{root}/{PARTITIONS}/{name}"
        # After load(): when each row first ended ``unknown`` (Unix seconds), i.e. may have been stored.
        self.unsure_since: dict[bytes, float] = {}

    def load(self) -> dict[bytes, str]:
        """Each checkpointed row's latest outcome; a settled-for-good one is never downgraded."""
        with storage_errors(self._url):
            return self._load()

    def _load(self) -> dict[bytes, str]:
        self.unsure_since = {}
        if not self._fs.exists(self._dir):
            return {}
        known: dict[bytes, str] = {}
        for path in sorted(self._fs.ls(self._dir, detail=False)):
            if not str(path).endswith(".settled"):
                continue
            written = _written_at(str(path))
            for fingerprint, status in _decode(self._fs.cat_file(path)):
                if known.get(fingerprint) not in ("delivered", "duplicate", "rejected"):
                    known[fingerprint] = status
                if status == "unknown":
                    self.unsure_since.setdefault(fingerprint, written)
        return known

    def save(self, outcomes: Iterable[tuple[bytes, str]]) -> None:
        body = b"".join(fingerprint + bytes([_CODE[status]]) for fingerprint, status in outcomes)
        if not body:
            return
        with storage_errors(self._url):
            self._fs.makedirs(self._dir, exist_ok=True)
            # uuid: attempts of the same partition never write the same file.
            name = f"{self._dir}/{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.settled"
            self._fs.pipe_file(name, _MAGIC + body + hashlib.sha256(body).digest()[:_DIGEST])


def _written_at(path: str) -> float:
    """When a chunk file was written (its name starts with ``time.time_ns()``); now if the name says nothing."""
    stem = path.rsplit("/", 1)[-1][:20]
    return int(stem) / 1e9 if stem.isdigit() else time.time()


def _decode(data: bytes) -> list[tuple[bytes, str]]:
    body = data[len(_MAGIC) : -_DIGEST]
    if (
        not data.startswith(_MAGIC)
        or len(body) % _ENTRY
        or hashlib.sha256(body).digest()[:_DIGEST] != data[-_DIGEST:]
    ):
        return []  # cut short by a killed writer: these rows are sent again
    return [(body[at : at + _PRINT], STATUSES[body[at + _PRINT]]) for at in range(0, len(body), _ENTRY)]
