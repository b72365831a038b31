"""Endpoints, tokens and per-client settings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

import attrs
import httpx

from . import _constants as C
from .errors import ConfigurationError
from .retry import RetryPolicy, finite
from .text import shorten, shown, url_authority

Provider = Literal["togai", "lago"]

ENDPOINTS: Mapping[str, Mapping[str, str]] = {
    "togai": {
        "production": "https://api.togai.com",
        "sandbox": "https://sandbox-api.togai.com",
    },
    "lago": {
        "us": "https://api.getlago.com/api/v1",
        "eu": "https://api.eu.getlago.com/api/v1",
    },
}
DEFAULT_ENDPOINT = {"togai": "production", "lago": "us"}
TOKEN_ENV = {"togai": "TOGAI_API_TOKEN", "lago": "LAGO_API_KEY"}
BASE_URL_ENV = {"togai": "TOGAI_BASE_URL", "lago": "LAGO_API_URL"}


class Secret:
    """A token that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would carry the token into other processes' files and logs.
        raise TypeError("a Secret cannot be pickled")


def positive_seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    # A bool is an int to Python, never a number of seconds to a reader.
    if not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0 and finite(value)):
        raise ConfigurationError(
            f"{attribute.name}: must be a positive, finite number of seconds, got {shown(value)}"
        )


def at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ConfigurationError(f"{attribute.name}: must be an integer >= 1, got {shown(value)}")


@attrs.frozen
class ClientConfig:
    """Everything a client needs to reach one provider account."""

    provider: Provider
    base_url: str
    token: Secret = attrs.field(repr=False)
    timeout: float = attrs.field(default=C.DEFAULT_TIMEOUT, validator=positive_seconds)
    connect_timeout: float = attrs.field(default=C.DEFAULT_CONNECT_TIMEOUT, validator=positive_seconds)
    max_batch_events: int = attrs.field(default=500, validator=at_least_one)
    max_batch_bytes: int = attrs.field(default=C.TOGAI_MAX_BODY_BYTES, validator=at_least_one)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)

    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.connect_timeout, self.timeout))


_ASCII_SPACE = " \t\r\n\v\f"


def resolve_token(provider: Provider, token: str | None) -> Secret:
    value = token if token is not None else os.environ.get(TOKEN_ENV[provider])
    if not value or not value.strip(_ASCII_SPACE):
        raise ConfigurationError(
            f"token: a {provider} API token is required; pass token=... or set {TOKEN_ENV[provider]}"
        )
    # ASCII white space only: a non-breaking space pasted with the token is a stray character, refused below.
    value = value.strip(_ASCII_SPACE)
    stray = next((at for at, char in enumerate(value) if not " " <= char <= "~"), None)
    if stray is not None:
        # httpx and h11 refuse such a header with an error that quotes it whole, token included.
        raise ConfigurationError(
            f"token: character {stray + 1} of the {provider} API token is a control or non-ASCII character,"
            " which no HTTP header can carry; check for a stray character copied with it"
        )
    return Secret(value)


def resolve_base_url(provider: Provider, base_url: str | None, endpoint: str | None) -> str:
    source = "base_url"
    if base_url is None and endpoint is None:
        # Unset or empty: the default endpoint. Only white space is a mistake, named below.
        base_url = os.environ.get(BASE_URL_ENV[provider]) or None
        source = f"{BASE_URL_ENV[provider]} (the environment's base_url)"
    if base_url is None:
        name = endpoint or DEFAULT_ENDPOINT[provider]
        try:
            return ENDPOINTS[provider][name]
        except KeyError:
            known = ", ".join(sorted(ENDPOINTS[provider]))
            raise ConfigurationError(
                f"endpoint: unknown {provider} endpoint {shown(name)}; use one of {known}, or pass base_url "
                "for a self-hosted server"
            ) from None
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError):
        raise ConfigurationError(f"{source}: not a valid URL") from None
    if url.userinfo or "@" in url_authority(str(base_url)):
        # Never repeated: user:password in a URL would show in reprs, errors and httpx's own log.
        raise ConfigurationError(
            f"{source}: must not carry credentials (user:password@host); pass the API token as token=..."
            f" or set {TOKEN_ENV[provider]}"
        )
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"{source}: must be an absolute http(s) URL, got {shorten(base_url, 120)!r}")
    text = str(url).rstrip("/")
    # A self-hosted Lago is usually given by its origin; its API lives under /api/v1.
    if provider == "lago" and not url.path.rstrip("/").endswith("/api/v1"):
        text += "/api/v1"
    return text
