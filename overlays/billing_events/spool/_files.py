"""A sender's files: their names, the ``flock`` that says who owns them, and removing or setting them aside.

Per sender, ``PROVIDER-HASH-HOST-PID-RANDOM`` names a ``.lock`` file (held by ``flock`` for the
owner's life), the SQLite file ``.spool`` and its ``.spool-wal``, the intake ``.spool.intake-N``
and the published ``.status``. A damaged file is renamed ``*.damaged-TIME``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
from pathlib import Path


def file_prefix(provider: str, destination: str) -> str:
    digest = hashlib.sha256(destination.encode()).hexdigest()[:10]
    return f"{provider}-{digest}-"


def owner_pid(name: str) -> int | None:
    """The pid in a spool file's name (provider-destination-host-pid-random.spool)."""
    parts = name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def aside_path(path: Path) -> Path:
    """Where a damaged file is set aside: it is kept, and never sent from again."""
    return path.with_name(f"{path.name}.damaged-{int(time.time())}")


def intake_path(db_path: Path, number: int) -> Path:
    return db_path.with_name(f"{db_path.name}.intake-{number}")


def intake_paths(db_path: Path) -> list[Path]:
    """A file's intake segments, oldest first (``NAME.spool.intake-N``; set-aside ones excluded)."""
    prefix = db_path.name + ".intake-"
    numbered = [
        (int(path.name[len(prefix) :]), path)
        for path in db_path.parent.glob(prefix + "*")
        if path.name[len(prefix) :].isdigit()
    ]
    return [path for _, path in sorted(numbered)]


def remove_files(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Owned:
    """A spool file name and the ``flock`` on its lock file, held for the owner's life."""

    def __init__(self, db_path: Path, fd: int) -> None:
        self.db_path = db_path
        self.fd = fd

    @property
    def lock_path(self) -> Path:
        return self.db_path.with_suffix(".lock")

    @property
    def status_path(self) -> Path:
        return self.db_path.with_suffix(".status")

    @classmethod
    def create(cls, directory: Path, prefix: str, sync_name: bool) -> Owned:
        """A new name for this process's file, locked; with ``sync_name``, the name survives a power loss."""
        host = socket.gethostname().replace("-", "_")[:32] or "host"
        while True:
            name = f"{prefix}{host}-{os.getpid()}-{os.urandom(4).hex()}"
            lock_path = directory / f"{name}.lock"
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # an adopter scanning the directory took it first: pick another name
                continue
            if sync_name:
                fsync_directory(directory)
            return cls(lock_path.with_suffix(".spool"), fd)

    @classmethod
    def try_lock(cls, lock_path: Path) -> Owned | None:
        """The lock of ``lock_path`` if its owner is gone; None if it is alive (or the file went away).

        OSError when the lock file cannot be opened (PermissionError: another user's sender's).
        """
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Another adopter may have removed the file between our open and our lock: then it is not ours.
            if os.fstat(fd).st_ino != os.stat(lock_path).st_ino:
                raise FileNotFoundError(lock_path)
        except OSError:
            os.close(fd)
            return None
        return cls(lock_path.with_suffix(".spool"), fd)

    def release(self, remove: bool) -> None:
        if remove:
            remove_files(*intake_paths(self.db_path))
            remove_files(self.db_path, wal_path(self.db_path), self.status_path, self.lock_path)
        os.close(self.fd)
