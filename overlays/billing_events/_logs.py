"""Log records that cannot cost an event anything, whatever the application's handlers do.

``logging`` runs a record's filters and each handler's ``emit`` unguarded. The standard handlers catch
their own errors and report them through ``Handler.handleError`` (a traceback on stderr while
``logging.raiseExceptions`` is true, the default; nothing otherwise). A handler the application adds,
a log shipper whose endpoint is down, say, or a filter, may raise instead: out of ``log.warning()``
and into the sending path, where it would cost events their dead letters or outcomes, or end a
sender's worker thread. Every log call on that path goes through ``log_safely``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any


def log_safely(log_call: Callable[..., None], message: str, *args: object, **kwargs: Any) -> None:
    """``log_call(message, *args, **kwargs)``, a logger's method; an exception it raises is reported as
    ``Handler.handleError`` reports a standard handler's, never raised.

    ``log.exception`` keeps working: the exception being handled is still the current one in here. The
    record names the caller's file, function and line, not this helper's (``stacklevel``).
    """
    stacklevel = kwargs.pop("stacklevel", 1) + 1
    try:
        log_call(message, *args, stacklevel=stacklevel, **kwargs)
    except Exception:
        if logging.raiseExceptions and sys.stderr:
            # A broken stderr too: as in handleError, nothing more to do.
            with contextlib.suppress(Exception):
                sys.stderr.write(
                    "--- Logging error: a handler or filter raised on a billing_events record ---\n"
                )
                traceback.print_exc(file=sys.stderr)
