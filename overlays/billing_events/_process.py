"""One fork hook and one exit hook for the whole package, over weak sets.

Registering per object would pile up a hook for every client ever built; a weak
set forgets objects that are gone.
"""

from __future__ import annotations

import atexit
import os
import weakref
from typing import Protocol


class ForkAware(Protocol):
    def _reset_after_fork(self) -> None: ...


class ExitAware(Protocol):
    def _close_at_exit(self) -> None: ...


_after_fork: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_at_exit: weakref.WeakSet[ExitAware] = weakref.WeakSet()


def reset_after_fork(thing: ForkAware) -> None:
    """Call ``thing._reset_after_fork()`` in every child process forked from now on."""
    _after_fork.add(thing)


def close_at_exit(thing: ExitAware) -> None:
    """Call ``thing._close_at_exit()`` when the interpreter exits."""
    _at_exit.add(thing)


def _in_child() -> None:
    for thing in list(_after_fork):
        thing._reset_after_fork()


def _on_exit() -> None:
    for thing in list(_at_exit):
        thing._close_at_exit()


os.register_at_fork(after_in_child=_in_child)
atexit.register(_on_exit)
