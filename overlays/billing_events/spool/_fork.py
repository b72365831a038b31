"""Fork safety: no thread of ours is inside SQLite while the process forks.

A child would inherit SQLite's mutexes held, so every live spool's locks are taken before ``fork()``;
the parent then releases them, and the child gives up what it inherited (the parent still owns the files).
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def before_fork(self) -> None: ...

    def after_fork_in_parent(self) -> None: ...

    def after_fork_in_child(self) -> None: ...


live: weakref.WeakSet[ForkAware] = weakref.WeakSet()
# Connections a forked child inherited: never used, never closed (closing could disturb the parent's file).
inherited: list[object] = []
_forking: list[ForkAware] = []


def _before_fork() -> None:
    _forking[:] = list(live)
    for spool in _forking:
        spool.before_fork()


def _after_fork_in_parent() -> None:
    for spool in _forking:
        spool.after_fork_in_parent()
    _forking.clear()


def _after_fork_in_child() -> None:
    for spool in _forking:
        spool.after_fork_in_child()
    _forking.clear()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
