"""One small module per provider: chunking, the call, and per-event outcomes."""

from __future__ import annotations

from .base import AttemptResult, Pending, ProviderRules, Settled, Verdict
from .lago import LagoRules
from .togai import TogaiRules

__all__ = ["AttemptResult", "LagoRules", "Pending", "ProviderRules", "Settled", "TogaiRules", "Verdict"]
