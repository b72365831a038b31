"""Which key a request presents, read the way each provider reads its `Authorization` header."""

from __future__ import annotations

import hmac
import re

from starlette.requests import Request

from billing_events.mock.errors import Provider

# Ruby's `split(" ")`: runs of ASCII whitespace, leading ones ignored.
_WORDS = re.compile(r"[^ \t\n\v\f\r]+")


def presented_key(request: Request, provider: Provider) -> str | None:
    """The key a request carries in `Authorization`, as the provider reads it, or None."""
    header = request.headers.get("authorization", "")
    if provider is Provider.LAGO:
        # lago-api reads the key as the header's second word and never looks at the first
        # (Api::BaseController#auth_token): `Token <key>` and `Bearer <key> more` pass too.
        words = _WORDS.findall(header)
        return words[1] if len(words) >= 2 else None
    scheme, _, credentials = header.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def is_authorized(request: Request, token: str, provider: Provider) -> bool:
    key = presented_key(request, provider)
    return key is not None and hmac.compare_digest(key.encode(), token.encode())
