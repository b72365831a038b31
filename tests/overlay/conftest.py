from __future__ import annotations

CANARY = "canary-token-9f8e7d6c5b4a"
