"""One fork hook and one exit hook for the whole package, over weak sets.

Registering per object would pile up a hook for every client ever built; a weak
set forgets objects that are gone.

The exit hook runs once per process: from ``atexit`` in a process that exits
normally, and from multiprocessing's own exit finalizers in a ``multiprocessing``
child, which leaves through ``os._exit`` and so never runs ``atexit``.
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import os
import weakref
from typing import Protocol

# Above multiprocessing's own queues (exit priority 10): an outcome callback may still put to one.
CHILD_EXIT_PRIORITY = 20


class ForkAware(Protocol):
    def _reset_after_fork(self) -> None: ...


class ExitAware(Protocol):
    def _close_at_exit(self, give_up: bool = False) -> None: ...


_after_fork: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_at_exit: weakref.WeakSet[ExitAware] = weakref.WeakSet()
_exited = False
# The process whose multiprocessing exit finalizers run the exit hook, if any.
_finalizer_pid: int | None = None


def reset_after_fork(thing: ForkAware) -> None:
    """Call ``thing._reset_after_fork()`` in every child process forked from now on."""
    _after_fork.add(thing)


def close_at_exit(thing: ExitAware) -> None:
    """Call ``thing._close_at_exit()`` when the process exits, a ``multiprocessing`` child included."""
    _at_exit.add(thing)
    if _finalizer_pid != os.getpid() and multiprocessing.parent_process() is not None:
        _exit_with_multiprocessing()  # a child that imported us only after it started


def _in_child() -> None:
    for thing in list(_after_fork):
        thing._reset_after_fork()


def _on_exit() -> None:
    global _exited
    if _exited:  # a spawned child runs both hooks: multiprocessing's finalizers, then atexit
        return
    _exited = True
    interrupted: BaseException | None = None
    for thing in list(_at_exit):
        try:
            thing._close_at_exit(give_up=interrupted is not None)
        except BaseException as exc:
            # Ctrl-C in one close: the others still account for their events, without waiting to send them.
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted


class _Anchor:
    """multiprocessing keeps after-fork hooks by weak reference to an object: this one lives forever."""


_ANCHOR = _Anchor()


def _exit_with_multiprocessing() -> None:
    global _finalizer_pid
    _finalizer_pid = os.getpid()
    multiprocessing.util.Finalize(None, _on_exit, exitpriority=CHILD_EXIT_PRIORITY)


def _in_multiprocessing_child(_: _Anchor) -> None:
    # Runs in each child multiprocessing starts (any start method), after it cleared the parent's finalizers.
    _exit_with_multiprocessing()


os.register_at_fork(after_in_child=_in_child)
atexit.register(_on_exit)
multiprocessing.util.register_after_fork(_ANCHOR, _in_multiprocessing_child)
