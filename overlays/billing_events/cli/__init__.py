"""The ``billing-events`` command line: ``ingest`` event files, ``replay`` dead letters, serve the ``mock``.

Run ``billing-events --help``; the entry point is :func:`main`.
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
